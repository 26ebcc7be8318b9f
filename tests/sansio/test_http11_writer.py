"""The response writer: default fields, framing, the keep-alive decision and its state table."""

from __future__ import annotations

import pytest

from asgisock.exceptions import BrokenFraming, InvalidResponse
from asgisock.http11.events import Request
from asgisock.http11.writer import (
    LAST_CHUNK,
    WRITER_TRANSITIONS,
    DefaultHeaders,
    ResponseWriter,
    WriterEvent,
    WriterState,
    WriterStateError,
    encode_head,
)


class FakeClock:
    """A wall clock that moves only when told to, counting how often it is read."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def test_date_comes_from_the_given_clock() -> None:
    clock = FakeClock(784111777.5)  # RFC 9110 §5.6.7's example date
    defaults = DefaultHeaders(server=True, clock=clock)
    assert defaults.encoded() == b"server: asgisock\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"


def test_date_is_encoded_again_only_when_the_second_changes() -> None:
    clock = FakeClock(784111777.0)
    defaults = DefaultHeaders(server=False, clock=clock)
    first = defaults.ending(True, True)
    clock.now = 784111777.999
    assert defaults.ending(True, True) is first  # same second: the cached bytes
    clock.now = 784111778.0
    assert defaults.ending(True, True) == b"date: Sun, 06 Nov 1994 08:49:38 GMT\r\n\r\n"
    assert clock.reads == 3


def test_no_clock_no_date() -> None:
    defaults = DefaultHeaders(server=True, clock=None)
    head = encode_head(204, [], defaults, head_request=False, http11=True, keep_alive=True, body_length=None)
    assert head.data == b"HTTP/1.1 204 No Content\r\nserver: asgisock\r\n\r\n"
    assert b"date" not in defaults.names


def test_the_apps_date_wins() -> None:
    defaults = DefaultHeaders(server=False, clock=FakeClock(0.0))
    head = encode_head(200, [(b"Date", b"x")], defaults, head_request=False, http11=True, keep_alive=True,
                       body_length=0)
    assert head.data == b"HTTP/1.1 200 OK\r\nDate: x\r\ncontent-length: 0\r\n\r\n"


# -- the response writer's state table ----------------------------------------------------------

def request(method: bytes = b"GET", version: str = "1.1", *, keep_alive: bool = True,
            expect_continue: bool = False) -> Request:
    return Request(method, b"/", version, [(b"host", b"x")], keep_alive, expect_continue, False, b"/", b"")


def writer_in(state: WriterState, *, framing: str = "chunked") -> ResponseWriter:
    """A writer brought to ``state`` through its public methods."""
    writer = ResponseWriter(DefaultHeaders(server=False, clock=None))
    writer.begin(request(expect_continue=True), state is not WriterState.EXPECT_CONTINUE)
    headers = [(b"content-length", b"4")] if framing == "length" else []
    if state is WriterState.BODY:
        writer.start(200, headers, b"ab", True)
    elif state is WriterState.TRAILERS:
        writer.start(200, headers, b"abcd", True)
        writer.trailers([], True)
    elif state is WriterState.DONE:
        writer.start(200, headers, b"abcd", False)
    elif state is WriterState.FAILED:
        writer.fail()
    assert writer.state is state
    return writer


def fire(writer: ResponseWriter, event: WriterEvent) -> bytes:
    if event is WriterEvent.CONTINUE:
        return writer.continue_()
    if event is WriterEvent.REQUEST_COMPLETE:
        writer.request_complete()
        return b""
    if event is WriterEvent.START:
        return writer.start(200, [], b"ab", True)
    if event is WriterEvent.START_FINAL:
        return writer.start(200, [], b"ab", False)
    if event is WriterEvent.BODY:
        return writer.body(b"cd", True)
    if event is WriterEvent.BODY_FINAL:
        return writer.body(b"cd", False)
    if event is WriterEvent.EARLY_HINT:
        return writer.early_hint([b"</style.css>; rel=preload"])
    if event is WriterEvent.TRAILERS:
        return writer.trailers([(b"x-checksum", b"1")], True)
    if event is WriterEvent.TRAILERS_FINAL:
        return writer.trailers([(b"x-checksum", b"1")], False)
    assert event is WriterEvent.FAIL
    return writer.fail()


@pytest.mark.parametrize("event", list(WriterEvent))
@pytest.mark.parametrize("state", list(WriterState))
def test_every_transition_is_allowed_or_refused_as_the_table_says(state: WriterState, event: WriterEvent) -> None:
    writer = writer_in(state)
    expected = WRITER_TRANSITIONS[event].get(state)
    if expected is None:
        with pytest.raises((WriterStateError, KeyError)):
            fire(writer, event)
        assert writer.state is state
    else:
        fire(writer, event)
        assert writer.state is expected


def test_done_and_failed_are_final() -> None:
    final = {WriterState.DONE, WriterState.FAILED}
    assert all(not final & set(moves) for moves in WRITER_TRANSITIONS.values())


def test_continue_is_sent_once_and_only_before_the_response() -> None:
    writer = writer_in(WriterState.EXPECT_CONTINUE)
    assert writer.continue_() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert writer.continue_() == b""
    assert writer_in(WriterState.BODY).continue_() == b""


FRAMING_CASES = [
    # method, version, status, headers, body, more, expected tail of the head, expected body bytes
    (b"GET", "1.1", 200, [], b"abc", False, b"content-length: 3\r\n\r\n", b"abc"),
    (b"GET", "1.1", 200, [], b"abc", True, b"transfer-encoding: chunked\r\n\r\n", b"3\r\nabc\r\n"),
    (b"GET", "1.1", 200, [(b"content-length", b"5")], b"abc", True, b"content-length: 5\r\n\r\n", b"abc"),
    (b"HEAD", "1.1", 200, [], b"abc", False, b"HTTP/1.1 200 OK\r\n\r\n", b""),
    (b"GET", "1.1", 204, [], b"", False, b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    (b"GET", "1.1", 304, [], b"", True, b"HTTP/1.1 304 Not Modified\r\n\r\n", b""),
    (b"GET", "1.0", 200, [], b"abc", True, b"connection: close\r\n\r\n", b"abc"),
]


@pytest.mark.parametrize(("method", "version", "status", "headers", "body", "more", "head_end", "sent"),
                         FRAMING_CASES)
def test_framing(method: bytes, version: str, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                 more: bool, head_end: bytes, sent: bytes) -> None:
    writer = ResponseWriter(DefaultHeaders(server=False, clock=None))
    writer.begin(request(method, version, keep_alive=version == "1.1"), True)
    data = writer.start(status, headers, body, more)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert (head + b"\r\n\r\n").endswith(head_end)
    assert rest == sent


def test_chunked_body_ends_with_the_last_chunk() -> None:
    writer = writer_in(WriterState.BODY)
    assert writer.body(b"", True) == b""
    assert writer.body(b"xy", False) == b"2\r\nxy\r\n" + LAST_CHUNK
    assert writer.state is WriterState.DONE and writer.keep_alive


@pytest.mark.parametrize(("sent", "more"), [(b"abcde", True), (b"a", False)])
def test_a_body_that_breaks_its_content_length_fails_the_response(sent: bytes, more: bool) -> None:
    writer = writer_in(WriterState.BODY, framing="length")  # "ab" of 4 sent
    with pytest.raises(BrokenFraming):
        writer.body(sent, more)
    assert writer.state is WriterState.FAILED and not writer.keep_alive


def test_an_invalid_head_sends_nothing_and_keeps_the_state() -> None:
    writer = writer_in(WriterState.IDLE)
    with pytest.raises(InvalidResponse):
        writer.start(200, [(b"bad name", b"x")], b"", False)
    assert writer.state is WriterState.IDLE
    assert writer.fail().startswith(b"HTTP/1.1 500 ")


def test_after_a_started_response_an_error_sends_nothing() -> None:
    writer = writer_in(WriterState.BODY)
    assert writer.fail() == b"" and not writer.keep_alive


KEEP_ALIVE_CASES = [
    # request keeps alive, response headers, 100 still owed, server closing, more body, result
    (True, [], False, False, False, True),
    (False, [], False, False, False, False),
    (True, [(b"connection", b"close")], False, False, False, False),
    (True, [(b"Connection", b"keep-alive")], False, False, False, True),
    (True, [], True, False, False, False),
    (True, [], False, True, False, False),
    (True, [], False, False, True, True),
]


@pytest.mark.parametrize(("request_keep_alive", "headers", "continue_owed", "closing", "more", "keep_alive"),
                         KEEP_ALIVE_CASES)
def test_the_keep_alive_decision(request_keep_alive: bool, headers: list[tuple[bytes, bytes]],
                                 continue_owed: bool, closing: bool, more: bool, keep_alive: bool) -> None:
    writer = ResponseWriter(DefaultHeaders(server=False, clock=None))
    writer.begin(request(keep_alive=request_keep_alive, expect_continue=True), not continue_owed)
    if closing:
        writer.close_after_response()
    data = writer.start(200, headers, b"x", more)
    if more:
        data += writer.body(b"", False)
    assert writer.keep_alive is keep_alive
    assert (b"connection: close\r\n" in data) is not keep_alive


def test_http10_keep_alive_is_announced_and_streaming_closes() -> None:
    writer = ResponseWriter(DefaultHeaders(server=False, clock=None))
    writer.begin(request(version="1.0"), True)
    assert b"connection: keep-alive\r\n" in writer.start(200, [], b"x", False) and writer.keep_alive
    writer.begin(request(version="1.0"), True)
    writer.start(200, [], b"x", True)
    assert not writer.keep_alive
