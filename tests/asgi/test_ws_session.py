"""The ``websocket.*`` rules of :class:`WebSocketSession`, with a fake connection and no socket.

The owner records what the session asks of the connection; the app is a coroutine driven by
``asyncio.run``, so each test reads as the app's side of one connection.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from asgisock.asgi.ws_session import SessionState, WebSocketSession
from asgisock.exceptions import ClientDisconnected
from asgisock.http11.writer import DefaultHeaders
from asgisock.types import Message
from asgisock.ws.deflate import DeflateSettings, PerMessageDeflate
from asgisock.ws.handshake import ExtensionOffer, Handshake

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT_KEY = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


class FakeOwner:
    """A connection that records the session's calls instead of writing to a socket."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def __init__(self) -> None:
        self.write_paused = False
        self.calls: list[tuple[Any, ...]] = []
        self.deflate: PerMessageDeflate | None = None

    def accept(self, head: bytes, deflate: PerMessageDeflate | None) -> None:
        self.deflate = deflate
        self.calls.append(("accept", head))

    def send_response(self, data: bytes, *, last: bool) -> None:
        self.calls.append(("response", data, last))

    def send_data(self, data: str | bytes) -> Awaitable[None] | None:
        self.calls.append(("data", data))
        return None

    def close(self, code: int, reason: str) -> None:
        if not 1000 <= code <= 4999:
            raise ValueError(f"invalid close code {code}")
        self.calls.append(("close", code, reason))

    def message_consumed(self) -> None:
        self.calls.append(("consumed",))

    def disconnect_delivered(self) -> None:
        self.calls.append(("disconnect_delivered",))

    async def drain(self) -> None:
        self.calls.append(("drain",))


def session(owner: FakeOwner, *, max_queue: int = 4, subprotocols: tuple[str, ...] = (),
            extensions: tuple[ExtensionOffer, ...] = (), deflate: DeflateSettings | None = None) -> WebSocketSession:
    scope = {"type": "websocket", "subprotocols": list(subprotocols)}
    return WebSocketSession(owner, scope, max_queue, handshake=Handshake(KEY, list(subprotocols), list(extensions)),
                            defaults=DefaultHeaders(server=False, clock=None), deflate=deflate)


def run(coroutine: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        await coroutine()

    asyncio.run(main())


def accepted(owner: FakeOwner, **kwargs: Any) -> WebSocketSession:
    """A session whose app has received ``websocket.connect`` and accepted."""
    ws = session(owner, **kwargs)

    async def handshake() -> None:
        assert await ws.receive() == {"type": "websocket.connect"}
        await ws.send({"type": "websocket.accept"})

    run(handshake)
    owner.calls.clear()
    return ws


# -- the handshake -------------------------------------------------------------------------


def test_connect_comes_first_then_accept_writes_the_101_head() -> None:
    owner = FakeOwner()
    ws = session(owner, subprotocols=("chat",))

    async def app() -> None:
        assert await ws.receive() == {"type": "websocket.connect"}
        await ws.send({"type": "websocket.accept", "subprotocol": "chat", "headers": [(b"x-a", b"1")]})

    run(app)
    assert ws.state is SessionState.CONNECTED
    assert owner.calls == [("accept", b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                            b"connection: Upgrade\r\nsec-websocket-accept: " + ACCEPT_KEY + b"\r\n"
                            b"sec-websocket-protocol: chat\r\nx-a: 1\r\n\r\n")]
    assert owner.deflate is None


def test_accept_negotiates_permessage_deflate() -> None:
    owner = FakeOwner()
    ws = session(owner, extensions=(ExtensionOffer("permessage-deflate"),), deflate=DeflateSettings())
    run(lambda: ws.send({"type": "websocket.accept"}))
    assert b"\r\nsec-websocket-extensions: permessage-deflate" in owner.calls[0][1]
    assert isinstance(owner.deflate, PerMessageDeflate)


def test_no_deflate_unless_configured() -> None:
    owner = FakeOwner()
    ws = session(owner, extensions=(ExtensionOffer("permessage-deflate"),), deflate=None)
    run(lambda: ws.send({"type": "websocket.accept"}))
    assert b"sec-websocket-extensions" not in owner.calls[0][1]
    assert owner.deflate is None


@pytest.mark.parametrize(("message", "error"), [
    ({"type": "websocket.accept", "subprotocol": 1}, "'subprotocol' must be a string"),
    ({"type": "websocket.accept", "subprotocol": "other"}, "was not offered"),
    ({"type": "websocket.accept", "headers": [(b"sec-websocket-protocol", b"chat")]}, "use 'subprotocol'"),
    ({"type": "websocket.accept", "headers": [(b"bad name", b"1")]}, "invalid websocket.accept"),
    ({"type": "websocket.accept", "headers": [(b"x", b"\r\n")]}, "invalid websocket.accept"),
    ({"type": "websocket.send", "text": "early"}, "unexpected ASGI message 'websocket.send'"),
    ({"type": "websocket.http.response.body"}, "unexpected ASGI message"),
    ({"type": "websocket.http.response.start", "status": 99}, "invalid status"),
    ({}, "without a 'type'"),
])
def test_invalid_messages_before_accept(message: Message, error: str) -> None:
    owner = FakeOwner()
    ws = session(owner, subprotocols=("chat",))

    async def app() -> None:
        with pytest.raises(RuntimeError, match=re.escape(error)):
            await ws.send(message)

    run(app)
    assert owner.calls == []
    assert ws.state is SessionState.CONNECTING


def test_close_before_accept_answers_403() -> None:
    owner = FakeOwner()
    ws = session(owner)
    run(lambda: ws.send({"type": "websocket.close"}))
    assert owner.calls == [("response", owner.calls[0][1], True)]
    assert owner.calls[0][1].startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert ws.state is SessionState.CLOSED


# -- the Denial Response -------------------------------------------------------------------


def test_denial_response_in_one_message_has_a_content_length() -> None:
    owner = FakeOwner()
    ws = session(owner)

    async def app() -> None:
        await ws.send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"x-a", b"1")]})
        assert owner.calls == []  # the head waits for the body
        await ws.send({"type": "websocket.http.response.body", "body": b"no"})

    run(app)
    assert owner.calls == [("response", b"HTTP/1.1 401 Unauthorized\r\nx-a: 1\r\ncontent-length: 2\r\n"
                            b"connection: close\r\n\r\nno", True)]
    assert ws.state is SessionState.CLOSED


def test_denial_response_in_pieces_is_chunked() -> None:
    owner = FakeOwner()
    ws = session(owner)

    async def app() -> None:
        await ws.send({"type": "websocket.http.response.start", "status": 403})
        await ws.send({"type": "websocket.http.response.body", "body": b"ab", "more_body": True})
        await ws.send({"type": "websocket.http.response.body", "body": b"", "more_body": True})
        await ws.send({"type": "websocket.http.response.body", "body": b"c"})

    run(app)
    assert owner.calls == [
        ("response", b"HTTP/1.1 403 Forbidden\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n2\r\nab\r\n",
         False),
        ("response", b"", False),
        ("response", b"1\r\nc\r\n0\r\n\r\n", True),
    ]


def test_denial_response_with_the_apps_content_length() -> None:
    owner = FakeOwner()
    ws = session(owner)

    async def app() -> None:
        await ws.send({"type": "websocket.http.response.start", "status": 403, "headers": [(b"content-length", b"3")]})
        await ws.send({"type": "websocket.http.response.body", "body": b"ab", "more_body": True})
        await ws.send({"type": "websocket.http.response.body", "body": b"c"})

    run(app)
    assert [call[1][-2:] for call in owner.calls] == [b"ab", b"c"]


def test_denial_response_invalid_header() -> None:
    owner = FakeOwner()
    ws = session(owner)

    async def app() -> None:
        await ws.send({"type": "websocket.http.response.start", "status": 403, "headers": [(b"x", b"\n")]})
        with pytest.raises(RuntimeError, match=re.escape("invalid websocket.http.response.start")):
            await ws.send({"type": "websocket.http.response.body", "body": b""})
        with pytest.raises(RuntimeError, match=re.escape("unexpected ASGI message 'websocket.close'")):
            await ws.send({"type": "websocket.close"})
        with pytest.raises(RuntimeError, match="'body' must be bytes"):
            await ws.send({"type": "websocket.http.response.body", "body": "text"})

    run(app)
    assert owner.calls == []


def test_app_failing_mid_denial_only_closes() -> None:
    owner = FakeOwner()
    ws = session(owner)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "websocket.http.response.start", "status": 403})
        await send({"type": "websocket.http.response.body", "body": b"x", "more_body": True})
        raise ValueError("boom")

    asyncio.run(ws.run(app))
    assert owner.calls[-1] == ("response", b"", True)


def test_app_returning_without_answering_gets_500() -> None:
    owner = FakeOwner()
    ws = session(owner)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    asyncio.run(ws.run(app))
    assert owner.calls[0][1].startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert owner.calls[0][2] is True


# -- messages --------------------------------------------------------------------------------


def test_delivered_messages_become_websocket_receive_in_order() -> None:
    owner = FakeOwner()
    ws = accepted(owner)
    assert ws.deliver_message("text") is False
    assert ws.deliver_message(b"bytes") is False

    async def app() -> None:
        assert await ws.receive() == {"type": "websocket.receive", "text": "text"}
        assert await ws.receive() == {"type": "websocket.receive", "bytes": b"bytes"}

    run(app)


def test_deliver_to_a_waiting_receive_takes_no_place_in_the_queue() -> None:
    owner = FakeOwner()
    ws = accepted(owner, max_queue=1)

    async def app() -> None:
        waiting = asyncio.ensure_future(ws.receive())
        await asyncio.sleep(0)
        assert ws.deliver_message("one") is False
        assert await waiting == {"type": "websocket.receive", "text": "one"}
        assert not ws.queue

    run(app)


def test_deliver_reports_a_full_queue_and_consuming_frees_it() -> None:
    owner = FakeOwner()
    ws = accepted(owner, max_queue=2)
    assert ws.deliver_message("a") is False
    assert ws.deliver_message("b") is True
    assert ws.queue_full

    async def app() -> None:
        await ws.receive()
        assert owner.calls == [("consumed",)]
        await ws.receive()

    run(app)
    assert owner.calls == [("consumed",)]  # only the first frees room below the limit


def test_disconnect_comes_after_the_messages_before_it() -> None:
    owner = FakeOwner()
    ws = accepted(owner)
    ws.deliver_message("last words")
    ws.disconnected(1001, "going away")
    ws.disconnected(1006, "")  # only the first counts

    async def app() -> None:
        assert await ws.receive() == {"type": "websocket.receive", "text": "last words"}
        assert owner.calls == []  # the app may still answer the message
        await ws.send({"type": "websocket.send", "text": "answer"})
        assert await ws.receive() == {"type": "websocket.disconnect", "code": 1001, "reason": "going away"}
        assert owner.calls == [("data", "answer"), ("disconnect_delivered",)]
        with pytest.raises(ClientDisconnected):
            await ws.send({"type": "websocket.send", "text": "too late"})

    run(app)


def test_disconnect_wakes_a_waiting_receive() -> None:
    owner = FakeOwner()
    ws = accepted(owner)

    async def app() -> None:
        waiting = asyncio.ensure_future(ws.receive())
        await asyncio.sleep(0)
        ws.disconnected(1000, "")
        assert await waiting == {"type": "websocket.disconnect", "code": 1000, "reason": ""}
        assert ws.state is SessionState.CLOSED

    run(app)


def test_concurrent_receive() -> None:
    owner = FakeOwner()
    ws = accepted(owner)

    async def app() -> None:
        waiting = asyncio.ensure_future(ws.receive())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="concurrently"):
            await ws.receive()
        ws.deliver_message(b"x")
        await waiting

    run(app)


def test_disconnect_before_accept_makes_send_raise() -> None:
    owner = FakeOwner()
    ws = session(owner)
    ws.disconnected(1006, "")

    async def app() -> None:
        await ws.receive()
        with pytest.raises(ClientDisconnected):
            await ws.send({"type": "websocket.accept"})
        assert await ws.receive() == {"type": "websocket.disconnect", "code": 1006, "reason": ""}

    run(app)
    assert owner.calls == []


# -- send() ----------------------------------------------------------------------------------


def test_send_hands_plain_data_and_waits_for_drain() -> None:
    owner = FakeOwner()
    ws = accepted(owner)

    async def app() -> None:
        await ws.send({"type": "websocket.send", "text": "t"})
        await ws.send({"type": "websocket.send", "bytes": bytearray(b"b")})
        owner.write_paused = True
        await ws.send({"type": "websocket.send", "bytes": b"c"})

    run(app)
    assert owner.calls == [("data", "t"), ("data", b"b"), ("data", b"c"), ("drain",)]


@pytest.mark.parametrize(("message", "error"), [
    ({"type": "websocket.send"}, "exactly one of 'text' and 'bytes'"),
    ({"type": "websocket.send", "text": "a", "bytes": b"b"}, "not both"),
    ({"type": "websocket.send", "text": b"a"}, "'text' must be a string"),
    ({"type": "websocket.send", "bytes": "a"}, "'bytes' must be bytes"),
    ({"type": "websocket.accept"}, "unexpected ASGI message 'websocket.accept' in WebSocket state CONNECTED"),
    ({"type": "websocket.close", "code": "1000"}, "invalid websocket.close"),
    ({"type": "websocket.close", "code": 999}, "invalid websocket.close: invalid close code 999"),
])
def test_invalid_messages_after_accept(message: Message, error: str) -> None:
    owner = FakeOwner()
    ws = accepted(owner)

    async def app() -> None:
        with pytest.raises(RuntimeError, match=re.escape(error)):
            await ws.send(message)

    run(app)
    assert owner.calls == []
    assert ws.state is SessionState.CONNECTED


def test_close_then_send_raises() -> None:
    owner = FakeOwner()
    ws = accepted(owner)

    async def app() -> None:
        await ws.send({"type": "websocket.close", "code": 4000, "reason": "bye"})
        with pytest.raises(ClientDisconnected):
            await ws.send({"type": "websocket.send", "text": "x"})

    run(app)
    assert owner.calls == [("close", 4000, "bye")]


@pytest.mark.parametrize(("failure", "code"), [(None, 1000), (ValueError, 1011)])
def test_app_leaving_an_open_connection_closes_it(failure: type[Exception] | None, code: int) -> None:
    owner = FakeOwner()
    ws = session(owner)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept"})
        if failure is not None:
            raise failure

    asyncio.run(ws.run(app))
    assert owner.calls[1:] == [("close", code, "")]
