"""One HTTP request/response cycle as the app sees it: ``receive()``, ``send()`` and their rules.

The rules of the ASGI HTTP spec (message order, field types, ``http.disconnect``, an ``OSError``
from ``send()`` after the client left) live here and nowhere else. The transport below feeds
the request body in and takes encoded bytes out through :class:`CycleOwner`.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable
from typing import Any, Final, Protocol, cast

from asgisock.exceptions import ClientDisconnected
from asgisock.http11.events import Request
from asgisock.http11.writer import (
    CHUNKED,
    CONTENT_LENGTH,
    CONTINUE_RESPONSE,
    LAST_CHUNK,
    NO_BODY,
    DefaultHeaders,
    InvalidResponse,
    ResponseHead,
    encode_chunk,
    encode_head,
    error_response,
)
from asgisock.logging import access_logger, error_logger, log_access
from asgisock.types import ASGIApp, Message

BODY_BUFFER_HIGH: Final = 256 * 1024
"""Request body bytes buffered for an app that does not ``receive()``; then reading pauses."""

_DISCONNECT: Final = {"type": "http.disconnect"}


class CycleOwner(Protocol):
    """What the cycle needs from the connection that carries it."""

    defaults: DefaultHeaders
    write_paused: bool

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def body_consumed(self) -> None: ...
    def response_complete(self, keep_alive: bool) -> None: ...
    def app_finished(self, cycle: HTTPCycle) -> None: ...


class ResponseState(enum.Enum):
    NOT_STARTED = enum.auto()
    STARTED = enum.auto()
    """``http.response.start`` received; its head waits for the first body message."""
    STREAMING = enum.auto()
    COMPLETE = enum.auto()


# Module-level names for the members: on Python 3.11 ``ResponseState.X`` is a descriptor lookup,
# several of which each response would otherwise pay for.
NOT_STARTED: Final = ResponseState.NOT_STARTED
STARTED: Final = ResponseState.STARTED
STREAMING: Final = ResponseState.STREAMING
COMPLETE: Final = ResponseState.COMPLETE


class HTTPCycle:
    """Carries one request to the app and its response back."""

    __slots__ = (
        "access_format",
        "body",
        "body_size",
        "bytes_sent",
        "continue_pending",
        "disconnected",
        "head",
        "keep_alive",
        "more_body",
        "owner",
        "request",
        "request_delivered",
        "response_headers",
        "scope",
        "start_time",
        "state",
        "status",
        "task",
        "waiter",
    )

    def __init__(self, owner: CycleOwner, request: Request, scope: dict[str, Any], access_format: str | None) -> None:
        self.owner = owner
        self.request = request
        self.scope = scope
        self.access_format = access_format
        """The access log format, or None when access logging is off."""
        self.state = NOT_STARTED
        self.body: list[bytes] = []
        self.body_size = 0
        self.more_body = True
        self.request_delivered = False
        self.disconnected = False
        self.waiter: asyncio.Future[None] | None = None
        self.continue_pending = request.expect_continue
        self.keep_alive = request.keep_alive
        self.status = 0
        self.response_headers: Any = ()
        self.head: ResponseHead | None = None
        self.bytes_sent = 0
        self.start_time = time.monotonic() if access_format is not None else 0.0
        self.task: asyncio.Task[None] | None = None
        """The task running the app; it leaves the server's task set when the app returns."""

    # -- fed by the transport --------------------------------------------------------------
    def feed_body(self, data: bytes) -> bool:
        """Buffer a body chunk; True when the buffer is full and reading should pause."""
        self.body.append(data)
        self.body_size += len(data)
        self._wake()
        return self.body_size > BODY_BUFFER_HIGH

    def end_body(self) -> None:
        self.more_body = False
        if self.waiter is not None:
            self._wake()

    def disconnect(self) -> None:
        self.disconnected = True
        self._wake()

    @property
    def body_pending(self) -> bool:
        return self.body_size > BODY_BUFFER_HIGH

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- receive() -----------------------------------------------------------------------
    async def receive(self) -> Message:
        while True:
            if self.disconnected or self.state is COMPLETE:
                return _DISCONNECT.copy()
            if not self.request_delivered and (self.body or not self.more_body):
                return self._request_message()
            if self.continue_pending:
                self._send_continue()
            if self.waiter is None:
                self.waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self.waiter)

    def _request_message(self) -> Message:
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body.clear()
        was_full = self.body_size > BODY_BUFFER_HIGH
        self.body_size = 0
        if was_full:
            self.owner.body_consumed()
        more = self.more_body
        if not more:
            self.request_delivered = True
        return {"type": "http.request", "body": body, "more_body": more}

    def _send_continue(self) -> None:
        """RFC 9110 §10.1.1: answer 100 only once the app wants the body, never after a response."""
        self.continue_pending = False
        if self.state is NOT_STARTED and self.more_body:
            self.owner.write(CONTINUE_RESPONSE)

    # -- send() --------------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        if self.disconnected:
            raise ClientDisconnected("the client disconnected")
        try:
            kind = message["type"]
        except (KeyError, TypeError):
            raise RuntimeError(f"ASGI message without a 'type': {message!r}") from None
        state = self.state
        if kind == "http.response.body":
            if state is STARTED:
                self._first_body(message)
            elif state is STREAMING:
                self._more_body(message)
            else:
                raise RuntimeError(_order_error(kind, state))
        elif kind == "http.response.start" and state is NOT_STARTED:
            status = message.get("status")
            if type(status) is not int or not 100 <= status <= 599:
                raise RuntimeError(f"invalid status in http.response.start: {status!r}")
            self.status = status
            self.response_headers = message.get("headers", ())
            self.state = STARTED
            return  # the head waits for the first body message (ASGI allows it)
        else:
            raise RuntimeError(_order_error(kind, state))
        if self.owner.write_paused:
            await self.owner.drain()

    def _first_body(self, message: Message) -> None:
        body = message.get("body", b"")
        if type(body) is not bytes:
            body = _body_of(message)
        more = message.get("more_body", False)
        request = self.request
        try:
            head = encode_head(
                self.status, self.response_headers, self.owner.defaults,
                head_request=request.method == b"HEAD",
                http11=request.http_version == "1.1",
                keep_alive=self.keep_alive,
                body_length=None if more else len(body),
            )
        except InvalidResponse as exc:
            raise RuntimeError(f"invalid http.response.start: {exc}") from None
        if self.continue_pending:
            self.continue_pending = False
            if self.more_body:
                # The client still waits for 100 before sending its body: the connection cannot be reused.
                head = _without_keep_alive(self, head)
        self.head = head
        self.keep_alive = head.keep_alive
        self.state = STREAMING
        framing = head.framing
        if framing is CONTENT_LENGTH:
            if more or head.content_length != len(body):  # else the length is the body's own
                self._check_length(head, len(body), more)
            data = head.data + body
        elif framing is CHUNKED:
            data = head.data + encode_chunk(body) if body else head.data
            if not more:
                data += LAST_CHUNK
        elif framing is NO_BODY:
            data = head.data
        else:
            data = head.data + body
        self.bytes_sent = len(body)
        self.owner.write(data)
        if not more:
            self._complete()

    def _more_body(self, message: Message) -> None:
        body = message.get("body", b"")
        if type(body) is not bytes:
            body = _body_of(message)
        more = message.get("more_body", False)
        head = self.head
        assert head is not None
        framing = head.framing
        self.bytes_sent += len(body)
        if framing is CHUNKED:
            if body:
                self.owner.write(encode_chunk(body) + LAST_CHUNK if not more else encode_chunk(body))
            elif not more:
                self.owner.write(LAST_CHUNK)
        elif framing is not NO_BODY:
            self._check_length(head, self.bytes_sent, more)
            if body:
                self.owner.write(body)
        if not more:
            self._complete()

    def _check_length(self, head: ResponseHead, sent: int, more: bool) -> None:
        expected = head.content_length
        if expected is None:
            return
        if sent > expected or (not more and sent < expected):
            self.keep_alive = False  # the framing is broken: the connection cannot carry another response
            self.state = COMPLETE
            self.owner.response_complete(False)
            raise RuntimeError(f"response body is {sent} bytes, content-length says {expected}")

    def _complete(self) -> None:
        self.state = COMPLETE
        if self.body_size:
            # The app answered without reading all of the body; receive() now only reports
            # http.disconnect, so drop what is buffered: a full buffer would keep reading paused
            # and the rest of the body, and every request pipelined after it, would never be read.
            self.body.clear()
            self.body_size = 0
        if self.access_format is not None and access_logger.isEnabledFor(20):
            log_access(self.access_format, self.scope, self.status, list(self.response_headers),
                       self.bytes_sent, time.monotonic() - self.start_time)
        if self.waiter is not None:
            self._wake()
        self.owner.response_complete(self.keep_alive)

    # -- running the app -----------------------------------------------------------------
    async def run(self, app: ASGIApp) -> None:
        try:
            result = await cast("Awaitable[object]", app(self.scope, self.receive, self.send))
        except ClientDisconnected:
            # ASGI: servers "should not log it as an error in their server logs".
            error_logger.debug("Client disconnected before the response was sent")
            self._fail(log=False)
        except asyncio.CancelledError:
            self._fail(log=False)  # shutdown timed out: nothing more to say
            raise
        except Exception as exc:
            if self.disconnected or _caused_by_disconnect(exc):
                # A framework's own "client disconnected" error, raised from ours.
                error_logger.debug("Client disconnected: %r", exc)
                self._fail(log=False)
                return
            if self.state is COMPLETE:
                error_logger.error("Exception in ASGI application after the response was sent", exc_info=exc)
            else:
                error_logger.error("Exception in ASGI application", exc_info=exc)
            self._fail(log=False)
        else:
            if result is not None:
                error_logger.error("ASGI callable should return None, but returned %r", result)
            if self.state is not COMPLETE:
                self._fail(log=True)
        finally:
            self.owner.app_finished(self)

    def _fail(self, *, log: bool) -> None:
        """End a cycle whose app did not finish its response: 500 if nothing was sent, else close."""
        state = self.state
        if state is COMPLETE:
            return
        self.state = COMPLETE
        self._wake()
        if self.disconnected:
            self.owner.response_complete(False)
            return
        if state is STREAMING:
            if log:
                error_logger.error("ASGI callable returned without completing the response")
            self.owner.response_complete(False)
            return
        if log:
            error_logger.error("ASGI callable returned without sending a response")
        self.status = 500
        self.owner.write(error_response(500, "Internal Server Error"))
        self.owner.response_complete(False)


def _caused_by_disconnect(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ClientDisconnected):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _body_of(message: Message) -> bytes:
    body = message.get("body", b"")
    if type(body) is bytes:
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    raise RuntimeError(f"http.response.body 'body' must be bytes, got {type(body).__name__}")


def _order_error(kind: Any, state: ResponseState) -> str:
    if state is COMPLETE:
        return f"ASGI message {kind!r} sent after the response was complete"
    expected = "http.response.start" if state is NOT_STARTED else "http.response.body"
    return f"unexpected ASGI message {kind!r}; expected {expected!r}"


def _without_keep_alive(cycle: HTTPCycle, head: ResponseHead) -> ResponseHead:
    if not head.keep_alive:
        return head
    return encode_head(
        cycle.status, cycle.response_headers, cycle.owner.defaults,
        head_request=cycle.request.method == b"HEAD", http11=cycle.request.http_version == "1.1",
        keep_alive=False, body_length=head.content_length if head.framing is CONTENT_LENGTH else None,
    )
