"""One WebSocket connection as the app sees it: the ``websocket.*`` messages and their rules.

The ASGI HTTP & WebSocket spec (2.5) is enforced here and nowhere else: ``websocket.connect``
first; the app answers with ``websocket.accept``, ``websocket.close`` (403) or a Denial
Response (``websocket.http.response.*``); then ``websocket.receive``/``websocket.send`` with
exactly one of ``text``/``bytes``; ``websocket.disconnect`` with ``code`` and ``reason``; and
an ``OSError`` from ``send()`` once the connection is closed.

The session also answers the handshake for the app: it turns ``websocket.accept`` into the 101
head (with the negotiated extension), and a Denial Response into HTTP/1.1 bytes framed by the
same writer as any other response. The connection that carries it only writes what it is given,
and hands it each message read as a plain ``str`` or ``bytes``.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Awaitable
from typing import Any, Final, Protocol, cast

from asgisock.exceptions import ClientDisconnected
from asgisock.http11.writer import (
    CHUNKED,
    LAST_CHUNK,
    NO_BODY,
    DefaultHeaders,
    InvalidResponse,
    ResponseHead,
    encode_chunk,
    encode_head,
    error_response,
)
from asgisock.logging import error_logger
from asgisock.types import ASGIApp, Message
from asgisock.ws.deflate import DeflateSettings, PerMessageDeflate, negotiate
from asgisock.ws.handshake import Handshake, accept_response

_CONNECT: Final = {"type": "websocket.connect"}


class SessionOwner(Protocol):
    """What the session needs from the connection that carries it."""

    write_paused: bool

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def accept(self, head: bytes, deflate: PerMessageDeflate | None) -> None:
        """Write the 101 ``head`` and start the WebSocket connection, compressed with
        ``deflate`` if an extension was negotiated."""
    def send_response(self, data: bytes, *, last: bool) -> None:
        """Write part of an HTTP response that refuses the handshake; close after the ``last``."""
    def send_data(self, data: str | bytes) -> Awaitable[None] | None: ...
    def close(self, code: int, reason: str) -> None: ...
    def message_consumed(self) -> None: ...
    def disconnect_delivered(self) -> None: ...
    async def drain(self) -> None: ...


class SessionState(enum.Enum):
    CONNECTING = enum.auto()
    """Handshake received, the app has not answered yet."""
    CONNECTED = enum.auto()
    DENYING = enum.auto()
    """A Denial Response is being sent (``websocket.http.response.*``)."""
    CLOSED = enum.auto()
    """The app closed, or the connection is gone: ``send()`` raises."""


# CPython 3.11 looks an enum member up on its class slowly: send() compares with this name.
_CONNECTED: Final = SessionState.CONNECTED


class WebSocketSession:
    """Carries messages between one WebSocket connection and the app."""

    __slots__ = ("connect_delivered", "defaults", "deflate", "deny_head", "deny_start", "disconnect", "handshake",
                 "max_queue", "owner", "queue", "scope", "state", "waiter")

    def __init__(self, owner: SessionOwner, scope: dict[str, Any], max_queue: int, *, handshake: Handshake,
                 defaults: DefaultHeaders, deflate: DeflateSettings | None) -> None:
        self.owner = owner
        self.scope = scope
        self.max_queue = max_queue
        self.handshake = handshake
        self.defaults = defaults
        self.deflate = deflate
        """permessage-deflate as configured, or None when it is off."""
        self.deny_start: tuple[int, Any] = (500, ())
        self.deny_head: ResponseHead | None = None
        """The Denial Response's head, once it went out with its first body message."""
        self.state = SessionState.CONNECTING
        self.connect_delivered = False
        self.queue: deque[Message] = deque()
        self.waiter: asyncio.Future[Message] | None = None
        self.disconnect: Message | None = None
        """The ``websocket.disconnect`` message, once the connection is gone."""

    # -- fed by the transport --------------------------------------------------------------
    def deliver_message(self, data: str | bytes) -> bool:
        """Hand the app a message read (``str`` for text), as ``websocket.receive``; True when
        the queue is full and reading should pause."""
        if type(data) is str:
            message: Message = {"type": "websocket.receive", "text": data}
        else:
            message = {"type": "websocket.receive", "bytes": data}
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            self.waiter = None
            waiter.set_result(message)
            return False
        self.queue.append(message)
        return len(self.queue) >= self.max_queue

    def disconnected(self, code: int, reason: str) -> None:
        """The connection stopped receiving. The app learns it after the messages before it;
        until then it may still answer them (``send()`` raises once nothing can be sent)."""
        if self.disconnect is not None:
            return
        self.disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
        if self.state is SessionState.CONNECTING:
            self.state = SessionState.CLOSED
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            self.waiter = None
            waiter.set_result(self._deliver_disconnect())

    def _deliver_disconnect(self) -> Message:
        assert self.disconnect is not None
        if self.state is not SessionState.CLOSED:
            self.state = SessionState.CLOSED
            self.owner.disconnect_delivered()
        return self.disconnect.copy()

    @property
    def queue_full(self) -> bool:
        return len(self.queue) >= self.max_queue

    # -- receive() -----------------------------------------------------------------------
    async def receive(self) -> Message:
        if not self.connect_delivered:
            self.connect_delivered = True
            return _CONNECT.copy()
        queue = self.queue
        if queue:
            message = queue.popleft()
            if len(queue) == self.max_queue - 1:
                self.owner.message_consumed()
            return message
        if self.disconnect is not None:
            return self._deliver_disconnect()
        if self.waiter is not None:
            raise RuntimeError("receive() called concurrently on one WebSocket")
        # The owner's loop: asyncio.get_running_loop() makes a getpid() system call on 3.11.
        waiter: asyncio.Future[Message] = self.owner.loop.create_future()
        self.waiter = waiter
        try:
            return await waiter
        finally:
            if self.waiter is waiter:
                self.waiter = None

    # -- send() --------------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        try:
            kind = message["type"]
        except (KeyError, TypeError):
            raise RuntimeError(f"ASGI message without a 'type': {message!r}") from None
        state = self.state
        if kind == "websocket.send" and state is _CONNECTED:
            pending = self.owner.send_data(_data_of(message))
            if pending is not None:
                await pending
            if self.owner.write_paused:
                await self.owner.drain()
        elif state is SessionState.CLOSED:
            raise ClientDisconnected("the WebSocket connection is closed")
        elif kind == "websocket.close" and state is not SessionState.DENYING:
            self._close(message)
        elif kind == "websocket.accept" and state is SessionState.CONNECTING:
            self._accept(message)
        elif kind == "websocket.http.response.start" and state is SessionState.CONNECTING:
            self._deny(message)
        elif kind == "websocket.http.response.body" and state is SessionState.DENYING:
            self._deny_body(message)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in WebSocket state {state.name}")

    def _accept(self, message: Message) -> None:
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and not isinstance(subprotocol, str):
            raise RuntimeError(f"websocket.accept 'subprotocol' must be a string, got {subprotocol!r}")
        if subprotocol is not None and subprotocol not in self.scope["subprotocols"]:
            raise RuntimeError(f"websocket.accept subprotocol {subprotocol!r} was not offered by the client")
        headers = list(message.get("headers") or ())
        for name, _ in headers:
            if isinstance(name, bytes) and name.lower() == b"sec-websocket-protocol":
                raise RuntimeError("use 'subprotocol' in websocket.accept, not a sec-websocket-protocol header")
        extension, deflate = self._negotiate()
        try:
            head = accept_response(self.handshake, subprotocol, extension, headers, self.defaults)
        except (ValueError, InvalidResponse) as exc:
            raise RuntimeError(f"invalid websocket.accept: {exc}") from None
        self.owner.accept(head, deflate)
        self.state = SessionState.CONNECTED

    def _negotiate(self) -> tuple[str | None, PerMessageDeflate | None]:
        """The ``Sec-WebSocket-Extensions`` answer and compression state (RFC 7692 §5)."""
        if self.deflate is None or not self.handshake.extensions:
            return None, None
        result = negotiate(self.handshake.extensions, self.deflate)
        return (None, None) if result is None else result

    def _close(self, message: Message) -> None:
        code = message.get("code", 1000)
        reason = message.get("reason") or ""
        if type(code) is not int or not isinstance(reason, str):
            raise RuntimeError(f"invalid websocket.close: {message!r}")
        if self.state is SessionState.CONNECTING:
            # ASGI: "returning HTTP status code 403 if the connection is denied".
            self.state = SessionState.CLOSED
            self._abort_handshake(403, "Forbidden")
            return
        try:
            self.owner.close(code, reason)
        except ValueError as exc:
            raise RuntimeError(f"invalid websocket.close: {exc}") from None
        self.state = SessionState.CLOSED

    def _deny(self, message: Message) -> None:
        status = message.get("status")
        if type(status) is not int or not 100 <= status <= 599:
            raise RuntimeError(f"invalid status in websocket.http.response.start: {status!r}")
        # The head waits for the first body message, so that a whole body gets a Content-Length.
        self.deny_start = (status, message.get("headers") or ())
        self.state = SessionState.DENYING

    def _deny_body(self, message: Message) -> None:
        body = message.get("body", b"")
        if not isinstance(body, bytes | bytearray | memoryview):
            raise RuntimeError("websocket.http.response.body 'body' must be bytes")
        more = bool(message.get("more_body", False))
        self.owner.send_response(self._denial_bytes(bytes(body), more), last=not more)
        if not more:
            self.state = SessionState.CLOSED

    def _denial_bytes(self, body: bytes, more: bool) -> bytes:
        """One body message of the Denial Response on the wire, its head before the first; the
        connection closes after the response (RFC 9112 §9.6), since it was never upgraded."""
        head = self.deny_head
        if head is None:
            status, headers = self.deny_start
            try:
                head = encode_head(status, headers, self.defaults, head_request=False, http11=True,
                                   keep_alive=False, body_length=None if more else len(body))
            except InvalidResponse as exc:
                raise RuntimeError(f"invalid websocket.http.response.start: {exc}") from None
            self.deny_head = head
            data = head.data
        else:
            data = b""
        if head.framing is CHUNKED:
            return data + (encode_chunk(body) if body else b"") + (b"" if more else LAST_CHUNK)
        return data if head.framing is NO_BODY else data + body

    def _abort_handshake(self, status: int, reason: str) -> None:
        """Refuse the handshake with ``status``, or just close if a Denial Response started."""
        self.owner.send_response(b"" if self.deny_head is not None else error_response(status, reason), last=True)

    # -- running the app -----------------------------------------------------------------
    async def run(self, app: ASGIApp) -> None:
        try:
            await cast("Awaitable[object]", app(self.scope, self.receive, self.send))
        except ClientDisconnected:
            error_logger.debug("WebSocket client disconnected")
        except asyncio.CancelledError:
            self._finish(1012, "server shutting down")
            raise
        except Exception as exc:
            error_logger.error("Exception in ASGI application", exc_info=exc)
            self._finish(1011, "")
        else:
            if self.state is SessionState.CONNECTING:
                error_logger.error("ASGI callable returned without accepting or closing the WebSocket")
            self._finish(1000, "")

    def _finish(self, code: int, reason: str) -> None:
        """Close whatever the app left open: 500 before accept, ``code`` after."""
        state = self.state
        self.state = SessionState.CLOSED
        if state is SessionState.CONNECTING or state is SessionState.DENYING:
            self._abort_handshake(500, "Internal Server Error")
        elif state is SessionState.CONNECTED:
            if self.disconnect is None:
                self.owner.close(code, reason)
            else:
                self.owner.disconnect_delivered()


def _data_of(message: Message) -> str | bytes:
    text = message.get("text")
    data = message.get("bytes")
    if text is not None:
        if data is not None:
            raise RuntimeError("websocket.send must have exactly one of 'text' and 'bytes', not both")
        if not isinstance(text, str):
            raise RuntimeError(f"websocket.send 'text' must be a string, got {type(text).__name__}")
        return text
    if data is None:
        raise RuntimeError("websocket.send must have exactly one of 'text' and 'bytes'")
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise RuntimeError(f"websocket.send 'bytes' must be bytes, got {type(data).__name__}")
