"""The ASGI rules of one HTTP cycle, with a fake wire and owner: no sockets, no HTTP/1.1."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from asgisock.asgi.http_cycle import (
    REQUEST_TRANSITIONS,
    RESPONSE_TRANSITIONS,
    HTTPCycle,
    RequestState,
    ResponseState,
)
from asgisock.exceptions import BrokenFraming, ClientDisconnected, InvalidResponse
from asgisock.types import Message


class FakeWire:
    """Records what the cycle asks of the wire, and answers with recognisable bytes."""

    def __init__(self) -> None:
        self.keep_alive = True
        self.sent = 0
        self.calls: list[tuple[Any, ...]] = []
        self.refuse: Exception | None = None

    def start(self, status: int, headers: Any, body: bytes, more: bool) -> bytes:
        self.calls.append(("start", status, body, more))
        if self.refuse is not None:
            raise self.refuse
        self.sent = len(body)
        return b"head:" + body

    def body(self, body: bytes, more: bool) -> bytes:
        self.calls.append(("body", body, more))
        if self.refuse is not None:
            self.keep_alive = False
            raise self.refuse
        self.sent += len(body)
        return body

    def file_start(self, status: int, headers: Any, size: int, more: bool) -> tuple[bytes, bool, bytes]:
        self.calls.append(("file_start", status, size, more))
        if self.refuse is not None:
            raise self.refuse
        self.sent = size
        return b"head:<", size > 0, b">"

    def file_body(self, size: int, more: bool) -> tuple[bytes, bool, bytes]:
        self.calls.append(("file_body", size, more))
        if self.refuse is not None:
            self.keep_alive = False
            raise self.refuse
        self.sent += size
        return b"<", size > 0, b">"

    def early_hint(self, links: Any) -> bytes:
        self.calls.append(("early_hint", links))
        if not isinstance(links, list):
            raise InvalidResponse("links")
        return b"103;"

    def trailers(self, headers: Any, more: bool) -> bytes:
        self.calls.append(("trailers", headers, more))
        if self.refuse is not None:
            self.keep_alive = False
            raise self.refuse
        return b"trailers;"

    def continue_(self) -> bytes:
        self.calls.append(("continue",))
        return b"100;"

    def request_complete(self) -> None:
        self.calls.append(("request_complete",))

    def close_after_response(self) -> None:
        self.calls.append(("close_after_response",))
        self.keep_alive = False

    def fail(self) -> bytes:
        self.calls.append(("fail",))
        self.keep_alive = False
        return b"500;"


class FakeOwner:
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def __init__(self) -> None:
        self.write_paused = False
        self.written = b""
        self.completed: list[bool] = []
        self.finished = 0
        self.files: dict[Any, int] = {"/data": 10}
        """What open_file and file_span find: a name (a path, or a file) and its size."""
        self.opened: list[Any] = []
        self.closed_files: list[int] = []
        self.file_error: OSError | None = None

    def write(self, data: bytes) -> None:
        self.written += data

    def writelines(self, parts: Sequence[bytes]) -> None:
        self.written += b"".join(parts)

    async def drain(self) -> None:
        pass

    def open_file(self, path: Any) -> tuple[int, int]:
        if path not in self.files:
            raise FileNotFoundError(path)
        self.opened.append(path)
        return 1000 + len(self.opened), self.files[path]

    def file_span(self, file: Any, offset: int | None, count: int | None) -> tuple[int, int, int]:
        if file not in self.files:
            raise FileNotFoundError(file)
        size = self.files[file]
        start = offset or 0
        return 7, start, size - start if count is None else min(count, size - start)

    async def send_file(self, fd: int, offset: int, count: int) -> None:
        if self.file_error is not None:
            raise self.file_error
        self.written += b"file(%d,%d,%d)" % (fd, offset, count)

    def close_file(self, fd: int) -> None:
        self.closed_files.append(fd)

    def body_consumed(self) -> None:
        pass

    def response_complete(self, keep_alive: bool) -> None:
        self.completed.append(keep_alive)

    def app_finished(self, cycle: HTTPCycle) -> None:
        self.finished += 1


def make(body_complete: bool = True) -> tuple[HTTPCycle, FakeOwner, FakeWire]:
    owner, wire = FakeOwner(), FakeWire()
    return HTTPCycle(owner, wire, {"type": "http"}, None, body_complete), owner, wire


START: Message = {"type": "http.response.start", "status": 200, "headers": []}


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_a_response_goes_through_the_wire() -> None:
    cycle, owner, wire = make()

    async def go() -> None:
        await cycle.send(START)
        assert owner.written == b""  # the head waits for the body
        await cycle.send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await cycle.send({"type": "http.response.body", "body": b"cd"})

    run(go())
    assert owner.written == b"head:abcd"
    assert wire.calls == [("start", 200, b"ab", True), ("body", b"cd", False)]
    assert owner.completed == [True] and cycle.state is ResponseState.COMPLETE


BODY_TABLES = ("http.response.body", "http.response.body (trailers follow)")
FINAL_BODY_TABLES = ("http.response.body (final)", "http.response.body (final, trailers follow)")
MESSAGES: dict[str, tuple[Message, tuple[str, ...]]] = {
    # a message, and the tables that say where it may go
    "start": (START, ("http.response.start",)),
    "start with trailers": ({**START, "trailers": True}, ("http.response.start (trailers)",)),
    "body": ({"type": "http.response.body", "body": b"", "more_body": True}, BODY_TABLES),
    "final body": ({"type": "http.response.body", "body": b""}, FINAL_BODY_TABLES),
    "zerocopysend": ({"type": "http.response.zerocopysend", "file": "/data", "more_body": True}, BODY_TABLES),
    "final zerocopysend": ({"type": "http.response.zerocopysend", "file": "/data"}, FINAL_BODY_TABLES),
    "pathsend": ({"type": "http.response.pathsend", "path": "/data"}, ("http.response.pathsend",)),
    "early hint": ({"type": "http.response.early_hint", "links": [b"</a>"]}, ("http.response.early_hint",)),
    "trailers": ({"type": "http.response.trailers", "headers": [], "more_trailers": True},
                 ("http.response.trailers",)),
    "final trailers": ({"type": "http.response.trailers", "headers": []}, ("http.response.trailers (final)",)),
}


def test_every_table_has_its_messages() -> None:
    assert {table for _, tables in MESSAGES.values() for table in tables} == set(RESPONSE_TRANSITIONS) - {"end"}


@pytest.mark.parametrize("name", list(MESSAGES))
@pytest.mark.parametrize("state", list(ResponseState))
def test_each_message_is_allowed_or_refused_as_the_table_says(state: ResponseState, name: str) -> None:
    cycle, _, _ = make()
    cycle.state = state
    message, tables = MESSAGES[name]
    allowed = [RESPONSE_TRANSITIONS[table][state] for table in tables if state in RESPONSE_TRANSITIONS[table]]
    assert len(allowed) <= 1
    if not allowed:
        with pytest.raises(RuntimeError):
            run(cycle.send(message))
        assert cycle.state is state
    else:
        run(cycle.send(message))
        assert cycle.state is allowed[0]


def test_an_invalid_head_leaves_the_response_to_fail_with_500() -> None:
    cycle, owner, wire = make()
    wire.refuse = InvalidResponse("bad header")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send({"type": "http.response.body", "body": b""})

    run(cycle.run(app))
    assert owner.written == b"500;" and owner.completed == [False] and owner.finished == 1


def test_broken_framing_ends_the_response_and_the_connection() -> None:
    cycle, owner, wire = make()

    async def go() -> None:
        await cycle.send(START)
        await cycle.send({"type": "http.response.body", "body": b"ab", "more_body": True})
        wire.refuse = BrokenFraming("too long")
        with pytest.raises(RuntimeError, match="too long"):
            await cycle.send({"type": "http.response.body", "body": b"cd"})

    run(go())
    assert cycle.state is ResponseState.COMPLETE and owner.completed == [False]


def test_a_streaming_response_that_stops_closes_without_500() -> None:
    cycle, owner, _ = make()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})

    run(cycle.run(app))
    assert owner.written == b"head:ab" and owner.completed == [False]


def test_the_body_arrives_and_continue_is_asked_for_while_waiting() -> None:
    cycle, owner, wire = make(body_complete=False)

    async def go() -> list[Message]:
        receiving = asyncio.ensure_future(cycle.receive())
        await asyncio.sleep(0)
        assert owner.written == b"100;"
        cycle.feed_body(b"ab")
        first = await receiving
        cycle.request_complete()
        return [first, await cycle.receive()]

    first, last = run(go())
    assert first == {"type": "http.request", "body": b"ab", "more_body": True}
    assert last == {"type": "http.request", "body": b"", "more_body": False}
    assert cycle.request_state is RequestState.DELIVERED
    assert ("request_complete",) in wire.calls


def test_disconnect_is_reported_and_send_raises() -> None:
    cycle, _, _ = make(body_complete=False)
    cycle.disconnect()
    assert run(cycle.receive()) == {"type": "http.disconnect"}
    with pytest.raises(ClientDisconnected):
        run(cycle.send(START))


def test_closing_goes_to_the_wire() -> None:
    cycle, _, wire = make()
    cycle.close_after_response()
    assert ("close_after_response",) in wire.calls and not wire.keep_alive


def test_the_request_table_has_disconnect_from_everywhere() -> None:
    assert set(REQUEST_TRANSITIONS["disconnect"]) == set(RequestState)
    assert set(RESPONSE_TRANSITIONS["end"]) == set(ResponseState) - {ResponseState.COMPLETE}


def test_continue_is_asked_for_after_the_start_while_the_head_waits() -> None:
    cycle, owner, _ = make(body_complete=False)

    async def go() -> Message:
        await cycle.send(START)
        receiving = asyncio.ensure_future(cycle.receive())
        await asyncio.sleep(0)
        cycle.feed_body(b"x")
        return await receiving

    assert run(go())["body"] == b"x"
    assert owner.written == b"100;"


# -- the response extensions ---------------------------------------------------------------------

def test_a_body_announced_with_trailers_stays_open_on_the_wire_until_the_last_trailers() -> None:
    cycle, owner, wire = make()

    async def go() -> None:
        await cycle.send({**START, "trailers": True})
        await cycle.send({"type": "http.response.body", "body": b"ab"})
        assert cycle.state is ResponseState.TRAILERS and owner.completed == []
        await cycle.send({"type": "http.response.trailers", "headers": [(b"x", b"1")], "more_trailers": True})
        assert owner.completed == []
        await cycle.send({"type": "http.response.trailers", "headers": []})

    run(go())
    assert wire.calls == [("start", 200, b"ab", True), ("trailers", [(b"x", b"1")], True), ("trailers", [], False)]
    assert owner.completed == [True] and cycle.state is ResponseState.COMPLETE


def test_an_app_that_stops_before_its_trailers_closes_without_500(caplog: pytest.LogCaptureFixture) -> None:
    cycle, owner, _ = make()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({**START, "trailers": True})
        await send({"type": "http.response.body", "body": b"ab"})

    run(cycle.run(app))
    assert owner.written == b"head:ab" and owner.completed == [False]
    assert "without completing the response" in caplog.text


def test_invalid_trailers_raise_and_keep_the_state() -> None:
    cycle, _, wire = make()

    async def go() -> None:
        await cycle.send({**START, "trailers": True})
        await cycle.send({"type": "http.response.body", "body": b"ab"})
        wire.refuse = InvalidResponse("bad field")
        with pytest.raises(RuntimeError, match=r"invalid http\.response\.trailers: bad field"):
            await cycle.send({"type": "http.response.trailers", "headers": [(b"bad name", b"1")]})

    run(go())
    assert cycle.state is ResponseState.TRAILERS


def test_files_and_bytes_mix_in_one_body() -> None:
    cycle, owner, wire = make()
    owner.files["f"] = 10

    async def go() -> None:
        await cycle.send(START)
        await cycle.send({"type": "http.response.zerocopysend", "file": "f", "offset": 2, "count": 3, "more_body": True})
        await cycle.send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await cycle.send({"type": "http.response.zerocopysend", "file": "f"})

    run(go())
    assert owner.written == b"head:<file(7,2,3)>ab<file(7,0,10)>"
    assert wire.calls == [("file_start", 200, 3, True), ("body", b"ab", True), ("file_body", 10, False)]
    assert owner.completed == [True] and owner.closed_files == []  # the app's file is the app's to close


@pytest.mark.parametrize(("message", "error"), [
    ({"type": "http.response.zerocopysend"}, "without a 'file'"),
    ({"type": "http.response.zerocopysend", "file": "f", "offset": -1}, "'offset' must be a non-negative int"),
    ({"type": "http.response.zerocopysend", "file": "f", "count": True}, "'count' must be a non-negative int"),
    ({"type": "http.response.zerocopysend", "file": "missing"}, "cannot send 'missing'"),
    ({"type": "http.response.pathsend", "path": "/missing"}, "cannot send '/missing'"),
])
def test_a_file_that_cannot_be_sent_leaves_the_response_to_fail_with_500(message: Message, error: str) -> None:
    cycle, owner, _ = make()
    owner.files["f"] = 10
    raised: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(START)
        try:
            await send(message)
        except RuntimeError as exc:
            raised.append(str(exc))
            raise

    run(cycle.run(app))
    assert error in raised[0]
    assert owner.written == b"500;" and owner.completed == [False]


def test_pathsend_sends_the_whole_file_closes_it_and_completes() -> None:
    cycle, owner, wire = make()

    async def go() -> None:
        await cycle.send(START)
        await cycle.send({"type": "http.response.pathsend", "path": "/data"})

    run(go())
    assert owner.written == b"head:<file(1001,0,10)>" and wire.calls == [("file_start", 200, 10, False)]
    assert owner.closed_files == [1001] and owner.completed == [True]


@pytest.mark.parametrize("error", [ClientDisconnected("gone"), OSError("the file ended 3 bytes short")])
def test_a_file_that_breaks_off_ends_the_response_and_the_connection(error: OSError) -> None:
    cycle, owner, _ = make()
    owner.file_error = error

    async def go() -> None:
        await cycle.send(START)
        with pytest.raises(type(error) if isinstance(error, ClientDisconnected) else RuntimeError,
                           match=r"gone|sending a file failed"):
            await cycle.send({"type": "http.response.pathsend", "path": "/data"})

    run(go())
    assert owner.completed == [False] and owner.closed_files == [1001]
    assert cycle.state is ResponseState.COMPLETE


def test_early_hints_go_out_before_and_after_the_start() -> None:
    cycle, owner, wire = make()

    async def go() -> None:
        await cycle.send({"type": "http.response.early_hint", "links": [b"</a>"]})
        await cycle.send(START)
        await cycle.send({"type": "http.response.early_hint", "links": [b"</b>"]})
        with pytest.raises(RuntimeError, match=r"invalid http\.response\.early_hint"):
            await cycle.send({"type": "http.response.early_hint", "links": b"</c>"})
        await cycle.send({"type": "http.response.body", "body": b""})
        with pytest.raises(RuntimeError, match="after the response was complete"):
            await cycle.send({"type": "http.response.early_hint", "links": [b"</d>"]})

    run(go())
    assert owner.written == b"103;103;head:"
    assert [call for call in wire.calls if call[0] == "early_hint"] == [
        ("early_hint", [b"</a>"]), ("early_hint", [b"</b>"]), ("early_hint", b"</c>")]


def test_an_unknown_message_type_is_an_error() -> None:
    cycle, _, _ = make()
    for message in ({"type": "http.response.push", "path": "/"}, {"type": ["not", "hashable"]}):
        with pytest.raises(RuntimeError, match="unexpected ASGI message"):
            run(cycle.send(message))


@pytest.mark.parametrize("first", [
    {"type": "http.response.body", "body": b"ab"},
    {"type": "http.response.zerocopysend", "file": "f"},
    {"type": "http.response.pathsend", "path": "/data"},
])
@pytest.mark.parametrize("trailers", [False, True])
def test_a_head_refused_with_a_file_or_trailers_announced_is_still_a_500(first: Message, trailers: bool) -> None:
    cycle, owner, wire = make()
    owner.files["f"] = 3
    wire.refuse = InvalidResponse("bad header")
    errors: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({**START, "trailers": trailers})
        try:
            await send(first)
        except RuntimeError as exc:
            errors.append(str(exc))
            raise

    run(cycle.run(app))
    assert errors == ["invalid http.response.start: bad header"]
    assert owner.written == b"500;" and owner.completed == [False]


@pytest.mark.parametrize("last", [
    {"type": "http.response.zerocopysend", "file": "f"},
    {"type": "http.response.trailers", "headers": []},
])
def test_a_body_that_breaks_its_framing_at_a_file_or_at_the_trailers_closes(last: Message) -> None:
    cycle, owner, wire = make()
    owner.files["f"] = 3

    async def go() -> None:
        await cycle.send({**START, "trailers": last["type"] == "http.response.trailers"})
        await cycle.send({"type": "http.response.body", "body": b"ab", "more_body": last["type"] != "http.response.trailers"})
        wire.refuse = BrokenFraming("content-length says 5")
        with pytest.raises(RuntimeError, match="content-length says 5"):
            await cycle.send(last)

    run(go())
    assert cycle.state is ResponseState.COMPLETE and owner.completed == [False]
