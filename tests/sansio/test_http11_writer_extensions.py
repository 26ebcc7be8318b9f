"""The response writer's framing for the ASGI extensions: bodies read from files, early hints
and trailers, as properties over any mix of messages and as the bytes a client parses."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from asgisock.exceptions import BrokenFraming, InvalidResponse
from asgisock.http11.events import Request
from asgisock.http11.writer import (
    EARLY_HINTS_LINE,
    DefaultHeaders,
    FileFraming,
    ResponseWriter,
    WriterState,
    WriterStateError,
)
from tests.responses import ResponseParser

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
FORBIDDEN = {"content-length", "transfer-encoding", "trailer", "host", "te", "connection", "keep-alive", "upgrade"}
names = st.text(TCHAR, min_size=1, max_size=10).filter(lambda n: n not in FORBIDDEN).map(str.encode)
VCHAR = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
values = st.lists(st.sampled_from([*VCHAR, 0x20, 0x09]), max_size=12).map(lambda v: bytes(v).strip(b" \t"))
fields = st.lists(st.tuples(names, values), max_size=3)


def request(method: bytes = b"GET", version: str = "1.1", headers: list[tuple[bytes, bytes]] | None = None
            ) -> Request:
    return Request(method, b"/", version, [(b"host", b"x"), *(headers or [])], True, False, False, b"/", b"")


def writer_for(req: Request) -> ResponseWriter:
    writer = ResponseWriter(DefaultHeaders(server=False, clock=None))
    writer.begin(req, True)
    return writer


# -- a body read from a file is framed as the same bytes would be ---------------------------------

@dataclass(frozen=True)
class Part:
    data: bytes
    from_file: bool


@dataclass(frozen=True)
class Case:
    method: bytes
    version: str
    status: int
    length: int | None
    """The Content-Length the app sets, as an offset from the body's real length; None: none."""
    parts: tuple[Part, ...]


cases = st.builds(
    Case,
    method=st.sampled_from([b"GET", b"HEAD"]),
    version=st.sampled_from(["1.1", "1.0"]),
    status=st.sampled_from([200, 204, 304, 404]),
    length=st.one_of(st.none(), st.sampled_from([0, 0, -1, 1])),
    parts=st.lists(st.builds(Part, st.binary(max_size=40), st.booleans()), min_size=1, max_size=6).map(tuple),
)


def respond(case: Case, *, files: bool) -> tuple[list[bytes | type[Exception]], WriterState, bool, int]:
    """What the writer writes for each part (a file's bytes put in where it says they go), or the
    exception it raised; then its state, keep-alive decision and count of body bytes."""
    writer = writer_for(request(case.method, case.version))
    total = sum(len(part.data) for part in case.parts)
    headers = [] if case.length is None else [(b"content-length", b"%d" % max(total + case.length, 0))]
    out: list[bytes | type[Exception]] = []
    for index, part in enumerate(case.parts):
        more = index < len(case.parts) - 1
        try:
            if files and part.from_file:
                if index == 0:
                    framing = writer.file_start(case.status, headers, len(part.data), more)
                else:
                    framing = writer.file_body(len(part.data), more)
                assert isinstance(framing, FileFraming)
                assert framing.send or not part.data or writer.framing.name == "NO_BODY"
                out.append(framing.before + (part.data if framing.send else b"") + framing.after)
            elif index == 0:
                out.append(writer.start(case.status, headers, part.data, more))
            else:
                out.append(writer.body(part.data, more))
        except BrokenFraming:
            out.append(BrokenFraming)
            break
    return out, writer.state, writer.keep_alive, writer.sent


@settings(max_examples=400, deadline=None)
@given(cases)
@example(Case(b"GET", "1.1", 200, None, (Part(b"", True), Part(b"ab", True), Part(b"", True))))
@example(Case(b"GET", "1.1", 200, 1, (Part(b"ab", True), Part(b"c", False))))
def test_a_file_part_is_framed_as_its_bytes_would_be(case: Case) -> None:
    assert respond(case, files=True) == respond(case, files=False)


def test_a_file_part_of_a_chunked_body_is_one_chunk() -> None:
    writer = writer_for(request())
    framing = writer.file_start(200, [], 300, True)
    assert framing.before.endswith(b"transfer-encoding: chunked\r\n\r\n12c\r\n") and framing.send
    assert framing.after == b"\r\n"
    assert writer.file_body(0, True) == FileFraming(b"", False, b"")
    assert writer.file_body(2, False) == FileFraming(b"2\r\n", True, b"\r\n0\r\n\r\n")
    assert writer.state is WriterState.DONE and writer.sent == 302


def test_a_whole_file_gets_a_content_length_and_head_gets_none_of_it() -> None:
    framing = writer_for(request()).file_start(200, [], 1 << 20, False)
    assert framing.before.endswith(b"content-length: 1048576\r\n\r\n") and framing.send and framing.after == b""
    framing = writer_for(request(b"HEAD")).file_start(200, [(b"content-length", b"5")], 5, False)
    assert framing.before.endswith(b"content-length: 5\r\n\r\n") and not framing.send


def test_a_file_that_overruns_the_content_length_fails_before_anything_is_sent() -> None:
    writer = writer_for(request())
    with pytest.raises(BrokenFraming):
        writer.file_start(200, [(b"content-length", b"3")], 4, True)
    assert writer.state is WriterState.FAILED and not writer.keep_alive


def test_file_parts_keep_the_order_of_a_response() -> None:
    writer = writer_for(request())
    with pytest.raises(WriterStateError):
        writer.file_body(1, False)
    writer.file_start(200, [], 1, False)
    with pytest.raises(WriterStateError):
        writer.file_start(200, [], 1, False)


# -- trailers --------------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.binary(max_size=30), min_size=1, max_size=4), sections=st.lists(fields, min_size=1, max_size=3),
       te=st.sampled_from([None, b"trailers", b"deflate, trailers", b"gzip"]), length=st.booleans(),
       pipelined=st.booleans())
def test_trailers_reach_a_client_that_accepts_them_and_only_it(parts: list[bytes], sections: list[list[tuple[bytes, bytes]]],
                                                               te: bytes | None, length: bool, pipelined: bool) -> None:
    writer = writer_for(request(headers=[] if te is None else [(b"te", te)]))
    body = b"".join(parts)
    headers = [(b"content-length", b"%d" % len(body))] if length else []
    # With trailers announced, the app's last body message is passed on as not final.
    out = writer.start(200, headers, parts[0], True)
    out += b"".join(writer.body(part, True) for part in parts[1:])
    for index, section in enumerate(sections):
        assert writer.state is not WriterState.DONE
        out += writer.trailers(section, index < len(sections) - 1)
    assert writer.state is WriterState.DONE and writer.keep_alive
    if pipelined:  # the next response on the connection must parse right after this one
        writer.begin(request(), True)
        out += writer.start(200, [], b"next", False)
    parser = ResponseParser()
    parser.feed(out)
    assert len(parser.responses) == 1 + pipelined
    response = parser.responses[0]
    assert response.body == body
    assert (response.header(b"content-length") is not None) is length
    carried = te is not None and b"trailers" in te and not length
    assert response.trailers == ([(name.lower(), value) for section in sections for name, value in section]
                                 if carried else [])
    if pipelined:
        assert parser.responses[1].body == b"next"


def test_the_trailer_section_ends_a_chunked_body() -> None:
    writer = writer_for(request(headers=[(b"te", b"trailers")]))
    assert writer.start(200, [], b"abc", True).endswith(b"\r\n\r\n3\r\nabc\r\n")
    assert writer.trailers([(b"X-Sum", b"1")], True) == b"0\r\nX-Sum: 1\r\n"
    assert writer.state is WriterState.TRAILERS
    assert writer.trailers([], True) == b""
    assert writer.trailers([(b"x-more", b"2")], False) == b"x-more: 2\r\n\r\n"
    assert writer.state.name == "DONE"


def test_without_te_trailers_the_body_ends_without_fields() -> None:
    writer = writer_for(request())
    writer.start(200, [], b"abc", True)
    assert writer.trailers([(b"x-sum", b"1")], False) == b"0\r\n\r\n"


def test_a_short_body_is_found_when_trailers_end_it() -> None:
    writer = writer_for(request(headers=[(b"te", b"trailers")]))
    writer.start(200, [(b"content-length", b"4")], b"abc", True)
    with pytest.raises(BrokenFraming):
        writer.trailers([], False)
    assert writer.state is WriterState.FAILED and not writer.keep_alive


@pytest.mark.parametrize("trailers", [
    [(b"content-length", b"1")], [(b"Transfer-Encoding", b"chunked")], [(b"bad name", b"x")], [(b"x", b"a\r\nb")],
    [(b"x", "text")], [b"x"], None,
])
def test_invalid_trailers_are_refused_before_anything_is_written(trailers: object) -> None:
    writer = writer_for(request(headers=[(b"te", b"trailers")]))
    writer.start(200, [], b"abc", True)
    with pytest.raises(InvalidResponse):
        writer.trailers(trailers, False)  # type: ignore[arg-type]
    assert writer.state is WriterState.BODY
    assert writer.fail() == b""


def test_trailers_of_a_head_response_are_dropped() -> None:
    writer = writer_for(request(b"HEAD", headers=[(b"te", b"trailers")]))
    writer.start(200, [], b"", True)
    assert writer.trailers([(b"x-sum", b"1")], False) == b""
    assert writer.state is WriterState.DONE and writer.keep_alive


# -- early hints -----------------------------------------------------------------------------------

links = st.lists(st.from_regex(rb"<[!-;=?-~]{1,20}>(; rel=preload)?", fullmatch=True), max_size=4)


@settings(max_examples=200, deadline=None)
@given(links=links, version=st.sampled_from(["1.1", "1.0"]), after_start=st.booleans())
def test_a_hint_is_a_103_before_the_head_of_an_http11_response(links: list[bytes], version: str,
                                                                after_start: bool) -> None:
    writer = writer_for(request(version=version))
    out = b""
    if after_start:
        out += writer.start(200, [(b"content-length", b"2")], b"ab", True)
    out += writer.early_hint(links)
    out += writer.start(200, [], b"", False) if not after_start else writer.body(b"", False)
    parser = ResponseParser()
    parser.feed(out)
    statuses = [response.status for response in parser.responses]
    hinted = version == "1.1" and not after_start and bool(links)
    assert statuses == ([103, 200] if hinted else [200])
    if hinted:
        assert parser.responses[0].headers == [(b"link", link) for link in links]


def test_a_hint_is_sent_while_the_client_waits_for_100_and_it_still_gets_its_100() -> None:
    writer = ResponseWriter(DefaultHeaders(server=False, clock=None))
    writer.begin(Request(b"POST", b"/", "1.1", [(b"host", b"x")], True, True, False, b"/", b""), False)
    assert writer.early_hint([b"</a>; rel=preload"]) == EARLY_HINTS_LINE + b"link: </a>; rel=preload\r\n\r\n"
    assert writer.continue_() == b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.mark.parametrize("links", [None, b"</a>", ["</a>"], [b"</a>\r\nx-injected: 1"], [1]])
def test_invalid_links_are_refused_whether_or_not_a_hint_would_go_out(links: object) -> None:
    for version in ("1.1", "1.0"):
        writer = writer_for(request(version=version))
        with pytest.raises(InvalidResponse):
            writer.early_hint(links)
        assert writer.state is WriterState.IDLE


def test_no_hint_after_the_response() -> None:
    writer = writer_for(request())
    writer.start(200, [], b"", False)
    with pytest.raises(WriterStateError):
        writer.early_hint([b"</a>"])
