"""Tests of the sans-I/O HTTP/1.1 request side: bytes in, request events out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgisock.http11.connection import (
    KNOWN_HOST_SIZE,
    MAX_HEADER_COUNT,
    HTTP11Connection,
    ParserState,
)
from asgisock.http11.events import END_OF_MESSAGE, Event, Request, RequestError
from asgisock.http11.headers import HOST_RE
from tests.corpus.http_cases import CASES, LIMIT, Case
from tests.corpus.sansio import check, feed


def events(data: bytes, **kwargs: object) -> list[Event]:
    conn = HTTP11Connection(max_header_size=LIMIT, **kwargs)  # type: ignore[arg-type]
    conn.receive_data(data)
    return conn.events_received()


def only_request(data: bytes) -> Request:
    request = events(data)[0]
    assert isinstance(request, Request), request
    return request


def error(data: bytes) -> RequestError:
    last = events(data)[-1]
    assert isinstance(last, RequestError), last
    return last


def body_of(evs: list[Event]) -> bytes:
    return b"".join(e for e in evs if isinstance(e, bytes))


# -- the corpus, in one read and one byte at a time ------------------------------------------


def test_corpus_is_large_and_named_uniquely() -> None:
    assert len(CASES) >= 80
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_in_one_read(case: Case) -> None:
    assert check(case, feed([case.data])) == []


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_byte_by_byte(case: Case) -> None:
    assert check(case, feed(case.data[i : i + 1] for i in range(len(case.data)))) == []


# -- requests and bodies --------------------------------------------------------------------


def test_request_head() -> None:
    request = only_request(b"GET /p?q=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
    assert (request.method, request.target, request.http_version) == (b"GET", b"/p?q=1", "1.1")
    assert request.headers == [(b"host", b"x"), (b"x-a", b"1"), (b"x-a", b"2")]
    assert request.keep_alive and not request.expect_continue and not request.upgrade
    assert repr(request) == "<Request GET b'/p?q=1' HTTP/1.1>"


def test_content_length_body() -> None:
    evs = events(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    assert evs[1:] == [b"hello", END_OF_MESSAGE]


def test_chunked_body() -> None:
    evs = events(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n")
    assert evs[1:] == [b"he", b"llo", END_OF_MESSAGE]


def test_a_content_length_body_in_a_large_read_is_fed_whole() -> None:
    """It holds no framing to bound, so it is not sliced; the head before it is cut off first."""
    body = bytes(range(256)) * 4096  # 1 MiB
    conn = HTTP11Connection()
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    conn.receive_data(head + body + head + body[:100])
    evs = conn.events_received()
    assert [type(e) for e in evs] == [Request, bytes, type(END_OF_MESSAGE), Request, bytes]
    assert evs[1] == body
    assert evs[4] == body[:100]
    assert conn.state.name == "BODY"  # (by name: mypy would keep the narrowing past the next call)
    conn.receive_data(body[100:])
    assert conn.events_received() == [body[100:], END_OF_MESSAGE]
    assert conn.state is ParserState.IDLE


def test_a_chunked_body_in_a_large_read_is_fed_in_slices() -> None:
    """Chunk framing is bounded between feeds: no feed may hide more than a slice of it."""
    body = bytes(range(256)) * 4096
    conn = HTTP11Connection()
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    evs = conn.events_received()
    assert body_of(evs) == body
    assert evs[-1] is END_OF_MESSAGE
    assert max(len(e) for e in evs if isinstance(e, bytes)) <= 65536


def test_memoryview_input() -> None:
    conn = HTTP11Connection()
    conn.receive_data(memoryview(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert conn.events_received()[1] is END_OF_MESSAGE


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n", True),
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n", False),
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive, Close\r\n", False),
        (b"GET / HTTP/1.0\r\n", False),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n", True),
        (b"GET / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n", False),
        (b"GET / HTTP/1.2\r\nHost: x\r\n", True),
    ],
)
def test_keep_alive(head: bytes, keep_alive: bool) -> None:
    assert only_request(head + b"\r\n").keep_alive is keep_alive


def test_higher_minor_version_is_served_as_1_1() -> None:
    assert only_request(b"GET / HTTP/1.9\r\nHost: x\r\n\r\n").http_version == "1.1"


@pytest.mark.parametrize(
    ("head", "expect"),
    [
        (b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n", True),
        (b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-CONTINUE\r\nExpect: 100-continue\r\n", True),
        (b"POST / HTTP/1.1\r\nHost: x\r\nExpect: ,\r\n", False),
        (b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n", False),
    ],
)
def test_expect_continue(head: bytes, expect: bool) -> None:
    assert only_request(head + b"Content-Length: 1\r\n\r\n").expect_continue is expect


def test_values_lose_surrounding_whitespace_only() -> None:
    request = only_request(b"GET / HTTP/1.1\r\nHost: x \r\nX-A:\t a \t b\t \r\n\r\n")
    assert request.headers == [(b"host", b"x"), (b"x-a", b"a \t b")]


def test_trailers_never_become_headers() -> None:
    evs = events(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n\r\n")
    request = evs[0]
    assert isinstance(request, Request)
    assert (b"x-t", b"1") not in request.headers
    assert evs[1:] == [END_OF_MESSAGE]


def test_empty_lines_between_requests_are_skipped() -> None:
    evs = events(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n" + b"\r\n" * 50_000 + b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [e.target for e in evs if isinstance(e, Request)] == [b"/1", b"/2"]


# -- the request head -----------------------------------------------------------------------


def test_absolute_form_authority_replaces_host() -> None:
    request = only_request(b"GET http://a.example:81/p HTTP/1.1\r\nX-A: 1\r\nHost: b.example\r\n\r\n")
    assert request.headers == [(b"x-a", b"1"), (b"host", b"a.example:81")]


def test_absolute_form_authority_added_in_http10() -> None:
    request = only_request(b"GET HTTP://[::1]/p HTTP/1.0\r\n\r\n")
    assert request.headers == [(b"host", b"[::1]")]


def test_absolute_form_authority_counts_against_the_head_limit() -> None:
    authority = b"a" * (LIMIT // 2)
    assert error(b"GET http://" + authority + b"/ HTTP/1.1\r\nHost: x\r\n\r\n") == RequestError(
        431, "Request header fields too large")
    assert error(b"GET http://" + authority + b"/ HTTP/1.0\r\n\r\n").status == 431
    shorter = only_request(b"GET http://" + authority[:100] + b"/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert shorter.headers == [(b"host", authority[:100])]


def test_absolute_form_authority_counts_as_a_field() -> None:
    fields = b"".join(b"X-%03d: 1\r\n" % i for i in range(MAX_HEADER_COUNT))
    assert error(b"GET http://a.example/ HTTP/1.0\r\n" + fields + b"\r\n") == RequestError(431, "Too many header fields")
    request = only_request(b"GET http://a.example/ HTTP/1.0\r\n" + fields[: -len(b"X-099: 1\r\n")] + b"\r\n")
    assert len(request.headers) == MAX_HEADER_COUNT


@pytest.mark.parametrize("host", [b"example.com", b"EXAMPLE.com:80", b"127.0.0.1:8000", b"[::1]", b"[v1.x]",
                                  b"a-b_c~d.e", b"%41.example", b"x:", b""])
def test_valid_hosts(host: bytes) -> None:
    assert only_request(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n").headers == [(b"host", host)]


@pytest.mark.parametrize("host", [b"a b", b"a,b c", b"a/b", b"a@b", b"a:b", b"[::1", b"%zz", b"a\\b", b'"a"'])
def test_invalid_hosts(host: bytes) -> None:
    assert error(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n") == RequestError(400, "Invalid Host header")


def test_host_checked_on_every_request_of_a_connection() -> None:
    conn = HTTP11Connection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2 + b"GET / HTTP/1.1\r\nHost: x y\r\n\r\n")
    assert conn.events_received()[-1] == RequestError(400, "Invalid Host header")


HOST_PARTS = st.sampled_from([b"a", b"Z", b"0", b"-", b".", b"~", b"%41", b"%z", b":", b"80", b"[", b"]", b"::1",
                              b" ", b"/", b"@", b","])


@given(st.lists(st.lists(HOST_PARTS, max_size=12).map(b"".join)
                | st.integers(KNOWN_HOST_SIZE - 2, KNOWN_HOST_SIZE + 2).map(lambda n: b"a" * n)
                | st.integers(KNOWN_HOST_SIZE - 2, KNOWN_HOST_SIZE + 2).map(lambda n: b"a" * (n - 2) + b" a"),
                min_size=1, max_size=8))
def test_host_verdict_is_the_patterns_on_every_new_connection(hosts: list[bytes]) -> None:
    # Checked values are remembered across connections: a remembered verdict, valid or not,
    # must be the one the pattern gives, each time the value comes again.
    for host in hosts + hosts:
        evs = events(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        rejected = evs[-1] == RequestError(400, "Invalid Host header")
        assert rejected is (HOST_RE.fullmatch(host.strip(b" ")) is None), host  # around it: OWS


def test_target_of_the_limit_size() -> None:
    target = b"/" + b"a" * (LIMIT - 100)
    assert only_request(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n").target == target


def test_field_count_limit() -> None:
    fields = b"".join(b"X-%03d: 1\r\n" % i for i in range(MAX_HEADER_COUNT - 1))
    assert len(only_request(b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n").headers) == MAX_HEADER_COUNT
    assert error(b"GET / HTTP/1.1\r\nHost: x\r\nX-Last: 1\r\n" + fields + b"\r\n").status == 431


def test_field_count_limit_applies_before_the_head_is_complete() -> None:
    """A head of many tiny fields is refused as they arrive, not once it ends: the objects held
    for an unfinished head stay few however close to the size limit its bytes are."""
    conn = HTTP11Connection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"a:\r\n" * (MAX_HEADER_COUNT + 50))
    assert conn.events_received() == [RequestError(431, "Too many header fields")]


@pytest.mark.parametrize("size", [1, 7, 1000, 65536])
def test_oversized_target_is_414_however_it_arrives(size: int) -> None:
    data = b"GET /" + b"a" * (2 * LIMIT) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    conn = HTTP11Connection(max_header_size=LIMIT)
    for start in range(0, len(data), size):
        conn.receive_data(data[start : start + size])
    assert conn.events_received() == [RequestError(414, "URI too long")]


@pytest.mark.parametrize("size", [1, 7, 1000, 65536])
def test_oversized_field_is_431_however_it_arrives(size: int) -> None:
    data = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * (2 * LIMIT) + b"\r\n\r\n"
    conn = HTTP11Connection(max_header_size=LIMIT)
    for start in range(0, len(data), size):
        conn.receive_data(data[start : start + size])
    assert conn.events_received() == [RequestError(431, "Request header fields too large")]


def test_unfinished_head_of_a_pipelined_request_is_bounded() -> None:
    conn = HTTP11Connection(max_header_size=LIMIT)
    conn.receive_data(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nX-A: " + b"a" * (LIMIT // 2))
    assert conn.events_received()[-1] is END_OF_MESSAGE
    conn.receive_data(b"a" * LIMIT)
    assert conn.events_received() == [RequestError(431, "Request header fields too large")]


# -- chunk extensions and trailers ------------------------------------------------------------

CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_long_chunk_extension_within_the_limit() -> None:
    conn = HTTP11Connection(max_header_size=LIMIT)
    conn.receive_data(CHUNKED_HEAD)
    for _ in range(LIMIT // 1000 - 1):
        conn.receive_data(b"3;x=" if _ == 0 else b"a" * 1000)
    conn.receive_data(b"\r\nabc\r\n0\r\n\r\n")
    assert conn.events_received()[1:] == [b"abc", END_OF_MESSAGE]


def test_chunk_extension_over_the_limit_in_small_reads() -> None:
    conn = HTTP11Connection(max_header_size=LIMIT)
    conn.receive_data(CHUNKED_HEAD + b"3;x=")
    for _ in range(LIMIT // 1000 + 1):
        conn.receive_data(b"a" * 1000)
    assert conn.events_received()[1:] == [RequestError(400, "Chunk extension too long")]


def test_trailer_over_the_limit_in_small_reads() -> None:
    conn = HTTP11Connection(max_header_size=LIMIT)
    conn.receive_data(CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nX-T: ")
    for _ in range(LIMIT // 1000 + 1):
        conn.receive_data(b"a" * 1000)
    assert conn.events_received()[1:] == [b"abc", RequestError(431, "Trailer fields too large")]


def test_chunk_framing_limit_restarts_with_each_chunk() -> None:
    conn = HTTP11Connection(max_header_size=LIMIT)
    conn.receive_data(CHUNKED_HEAD)
    for _ in range(3 * LIMIT // 100):
        conn.receive_data(b"1;" + b"e" * 90 + b"\r\n")
        conn.receive_data(b"x\r\n")
    conn.receive_data(b"0\r\n\r\n")
    evs = conn.events_received()
    assert body_of(evs) == b"x" * (3 * LIMIT // 100)
    assert evs[-1] is END_OF_MESSAGE


# -- upgrades -----------------------------------------------------------------------------

WS_HEAD = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def test_websocket_upgrade_keeps_what_follows() -> None:
    conn = HTTP11Connection()
    conn.receive_data(WS_HEAD + b"\x81\x85frame")
    request = conn.events_received()[0]
    assert isinstance(request, Request) and request.upgrade
    assert conn.upgrade_data == b"\x81\x85frame"
    conn.receive_data(b"GET / HTTP/1.1\r\n\r\n")  # no longer HTTP: kept for the new protocol
    assert conn.events_received() == []
    assert conn.upgrade_data == b"\x81\x85frameGET / HTTP/1.1\r\n\r\n"


def test_websocket_upgrade_split_in_reads() -> None:
    conn = HTTP11Connection()
    for byte in range(len(WS_HEAD)):
        conn.receive_data(WS_HEAD[byte : byte + 1])
    assert isinstance(conn.events_received()[0], Request)
    assert conn.upgrade_data == b""


def test_websocket_disabled_serves_the_handshake_as_http() -> None:
    conn = HTTP11Connection(websocket=False)
    conn.receive_data(WS_HEAD + b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    evs = conn.events_received()
    assert [e.upgrade for e in evs if isinstance(e, Request)] == [False, False]
    assert conn.upgrade_data is None


def test_websocket_disabled_reads_an_upgrade_body() -> None:
    conn = HTTP11Connection(websocket=False)
    head = WS_HEAD.replace(b"\r\n\r\n", b"\r\nContent-Length: 5\r\n\r\n")
    conn.receive_data(head + b"helloGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    evs = conn.events_received()
    assert evs[1:3] == [b"hello", END_OF_MESSAGE]
    assert isinstance(evs[3], Request) and evs[3].target == b"/2"


H2C = b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"


def test_h2c_body_larger_than_a_read() -> None:
    body = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n" * 10_000
    conn = HTTP11Connection()
    conn.receive_data(H2C + b"Content-Length: %d\r\n\r\n" % len(body) + body[:1000])
    conn.receive_data(body[1000:] + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    evs = conn.events_received()
    assert body_of(evs) == body
    assert [e.target for e in evs if isinstance(e, Request)] == [b"/", b"/next"]
    assert evs.count(END_OF_MESSAGE) == 2


def test_h2c_body_byte_by_byte() -> None:
    data = H2C + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    conn = HTTP11Connection()
    evs: list[Event] = []
    for byte in range(len(data)):
        conn.receive_data(data[byte : byte + 1])
        evs += conn.events_received()
    assert body_of(evs) == b"hello"
    assert [e.target for e in evs if isinstance(e, Request)] == [b"/", b"/next"]


def test_h2c_with_connection_close_parses_nothing_after_the_body() -> None:
    conn = HTTP11Connection()
    conn.receive_data(H2C + b"Connection: close\r\nContent-Length: 2\r\n\r\nhiGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    evs = conn.events_received()
    request = evs[0]
    assert isinstance(request, Request) and not request.keep_alive
    assert evs[1:3] == [b"hi", END_OF_MESSAGE]
    assert not any(isinstance(e, Request) for e in evs[3:])


def test_h2c_bounds_apply_to_the_body_after_the_upgrade() -> None:
    conn = HTTP11Connection(max_header_size=LIMIT)
    conn.receive_data(H2C + b"Transfer-Encoding: chunked\r\n\r\n")
    for _ in range(LIMIT // 1000 + 2):
        conn.receive_data(b"1;" if _ == 0 else b"e" * 1000)
    assert conn.events_received()[-1] == RequestError(400, "Chunk extension too long")


# -- after an error ---------------------------------------------------------------------------


def test_nothing_after_an_error() -> None:
    conn = HTTP11Connection()
    conn.receive_data(b"GET / HTTP/1.1\r\nBad\r\n\r\n")
    assert conn.errored
    assert conn.events_received() == [RequestError(400, "Malformed request: Invalid header token")]
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert conn.events_received() == []


def test_request_error_value_semantics() -> None:
    assert RequestError(400, "a") == RequestError(400, "a") != RequestError(400, "b")
    assert RequestError(400, "a") != (400, "a")
    assert len({RequestError(400, "a"), RequestError(400, "a")}) == 1
    assert repr(RequestError(431, "x")) == "<RequestError 431 'x'>"


def test_parser_states_follow_the_table() -> None:
    from asgisock.http11.connection import PARSER_TRANSITIONS, ParserEvent, ParserState

    conn = HTTP11Connection()
    states = [conn.state]
    for data in (b"POST / HTTP/1.1\r\nHost: x\r\n", b"Transfer-Encoding: chunked\r\n\r\n", b"5\r\nab",
                 b"cde\r\n", b"0\r\n\r\n", b"\x00"):
        conn.receive_data(data)
        states.append(conn.state)
    assert states == [ParserState.IDLE, ParserState.HEAD, ParserState.CHUNKED, ParserState.IN_CHUNK,
                      ParserState.CHUNKED, ParserState.IDLE, ParserState.ERRORED]
    assert conn.errored
    # Every state but the two final ones can fail; nothing leaves a final one.
    final = {ParserState.SWITCHED, ParserState.ERRORED}
    assert set(PARSER_TRANSITIONS[ParserEvent.FAIL]) == set(ParserState) - final
    assert all(not final & set(moves) for moves in PARSER_TRANSITIONS.values())


def test_a_websocket_upgrade_switches_the_parser() -> None:
    from asgisock.http11.connection import ParserState

    conn = HTTP11Connection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nrest")
    assert conn.state is ParserState.SWITCHED and conn.upgrade_data == b"rest"


@pytest.mark.parametrize("data", [
    b"GET / HTTP/0.0\r\nHos",  # found by fuzzing: a split at the CRLF used to answer early
    b"GET /HTTP/1.1\r\nHos",
    b"GET /\r\nHos",
    b"GET /\r\n",
    b"GET / HTTP/0.0\r\n",
    b"POST / HTTP/0.0\r\nExpect: 100ntinue\r\nlo",  # found by fuzzing: a field line's CRLF
    b"GET /a HTTP/0.0\r\nX: GET /a\r\nY",  # a field line that ends like a versionless line
    b"\r\n\r\nGET /\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /a HTTP/0.0\r\nX: GET /a\r\nY",
])
def test_versionless_line_answered_the_same_however_split(data: bytes) -> None:
    def outcome(chunks: list[bytes]) -> list[object]:
        conn = HTTP11Connection()
        events: list[object] = []
        for chunk in chunks:
            conn.receive_data(chunk)
            events += conn.events_received()
        return events

    whole = outcome([data])
    for cut in range(1, len(data)):
        assert outcome([data[:cut], data[cut:]]) == whole, cut
    for cut in range(1, len(data)):
        for other in range(cut, len(data)):
            assert outcome([data[:cut], data[cut:other], data[other:]]) == whole, (cut, other)
    assert outcome([data[i : i + 1] for i in range(len(data))]) == whole
