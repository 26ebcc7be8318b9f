"""One HTTP request/response cycle as the app sees it: ``receive()``, ``send()`` and their rules.

The rules of the ASGI HTTP spec (message order, field types, ``http.disconnect``, an ``OSError``
from ``send()`` after the client left) live here and nowhere else. How the response is framed
and whether the connection is reused belong to the wire protocol, reached through
:class:`ResponseWire`; the transport feeds the request body in and writes the bytes out through
:class:`CycleOwner`. Nothing here is specific to HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import enum
import time
from typing import Any, Final, NoReturn, Protocol

from asgisock.exceptions import BrokenFraming, ClientDisconnected, InvalidResponse
from asgisock.logging import AccessLog, error_logger
from asgisock.types import ASGIApp, Message

BODY_BUFFER_HIGH: Final = 256 * 1024
"""Request body bytes buffered for an app that does not ``receive()``; then reading pauses."""

_DISCONNECT: Final = {"type": "http.disconnect"}


class ResponseWire(Protocol):
    """How a response reaches the wire: HTTP/1.1's ``ResponseWriter``, or an HTTP/2 stream.

    Each method returns the bytes to write. The wire decides the framing and whether the
    connection carries another response (``keep_alive``, read once the response is complete);
    the cycle only keeps the ASGI order.
    """

    keep_alive: bool
    sent: int
    """Body bytes sent so far, for the access log."""

    def start(self, status: int, headers: Any, body: bytes, more: bool) -> bytes:
        """The head with the first body message; InvalidResponse or BrokenFraming when refused."""
    def body(self, body: bytes, more: bool) -> bytes:
        """A later body message; BrokenFraming when it overruns the announced length."""
    def continue_(self) -> bytes:
        """The app waits for the request body: the interim answer the client may wait for."""
    def request_complete(self) -> None: ...
    def close_after_response(self) -> None: ...
    def fail(self) -> bytes:
        """The response will not complete: an error response if nothing was sent, else nothing."""


class CycleOwner(Protocol):
    """What the cycle needs from the connection that carries it."""

    write_paused: bool

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def body_consumed(self) -> None: ...
    def response_complete(self, keep_alive: bool) -> None: ...
    def app_finished(self, cycle: HTTPCycle) -> None: ...


class ResponseState(enum.Enum):
    """The ASGI order of the response messages; see :data:`RESPONSE_TRANSITIONS`."""

    # Identity hashes: the members key the transition tables, and ``Enum.__hash__`` is a
    # Python-level function that would cost more than the rest of a transition.
    __hash__ = object.__hash__

    NOT_STARTED = enum.auto()
    STARTED = enum.auto()
    """``http.response.start`` received; its head waits for the first body message."""
    STREAMING = enum.auto()
    COMPLETE = enum.auto()


class RequestState(enum.Enum):
    """The request body on its way to the app; see :data:`REQUEST_TRANSITIONS`."""

    __hash__ = object.__hash__

    RECEIVING = enum.auto()
    """More of the body is to come from the client."""
    RECEIVED = enum.auto()
    """All of the body is read; some of it may not have reached the app yet."""
    DELIVERED = enum.auto()
    """The app has had the whole body (``more_body`` False)."""
    DISCONNECTED = enum.auto()
    """The client left, or its body was malformed: ``receive()`` says ``http.disconnect``."""


# Module-level names for the members: on Python 3.11 ``ResponseState.X`` is a descriptor lookup,
# several of which each response would otherwise pay for.
NOT_STARTED: Final = ResponseState.NOT_STARTED
STARTED: Final = ResponseState.STARTED
STREAMING: Final = ResponseState.STREAMING
COMPLETE: Final = ResponseState.COMPLETE
RECEIVING: Final = RequestState.RECEIVING
RECEIVED: Final = RequestState.RECEIVED
DELIVERED: Final = RequestState.DELIVERED
DISCONNECTED: Final = RequestState.DISCONNECTED

RESPONSE_TRANSITIONS: Final[dict[str, dict[ResponseState, ResponseState]]] = {
    "http.response.start": {NOT_STARTED: STARTED},
    "http.response.body": {STARTED: STREAMING, STREAMING: STREAMING},
    "http.response.body (final)": {STARTED: COMPLETE, STREAMING: COMPLETE},
    "end": {NOT_STARTED: COMPLETE, STARTED: COMPLETE, STREAMING: COMPLETE},
}
"""The allowed transitions, as data: a message (a body with ``more_body`` False is the final
one) or the end of the cycle (the app failed, the framing broke) maps a state to the next; a
message refused in a state is an ASGI order error."""

REQUEST_TRANSITIONS: Final[dict[str, dict[RequestState, RequestState]]] = {
    "body read": {RECEIVING: RECEIVED, DISCONNECTED: DISCONNECTED},
    "body delivered": {RECEIVED: DELIVERED},
    "disconnect": {RECEIVING: DISCONNECTED, RECEIVED: DISCONNECTED, DELIVERED: DISCONNECTED,
                   DISCONNECTED: DISCONNECTED},
}

_ON_START: Final = RESPONSE_TRANSITIONS["http.response.start"]
_ON_BODY: Final = RESPONSE_TRANSITIONS["http.response.body"]
_ON_FINAL_BODY: Final = RESPONSE_TRANSITIONS["http.response.body (final)"]
_ON_END: Final = RESPONSE_TRANSITIONS["end"]
_ON_BODY_READ: Final = REQUEST_TRANSITIONS["body read"]
_ON_BODY_DELIVERED: Final = REQUEST_TRANSITIONS["body delivered"]
_ON_DISCONNECT: Final = REQUEST_TRANSITIONS["disconnect"]


class HTTPCycle:
    """Carries one request to the app and its response back."""

    __slots__ = (
        "access_log",
        "body",
        "body_size",
        "owner",
        "request_state",
        "response_headers",
        "scope",
        "start_time",
        "state",
        "status",
        "task",
        "waiter",
        "wire",
    )

    def __init__(self, owner: CycleOwner, wire: ResponseWire, scope: dict[str, Any], access_log: AccessLog | None,
                 body_complete: bool) -> None:
        self.owner = owner
        self.wire = wire
        self.scope = scope
        self.access_log = access_log
        """None when access logging is off."""
        self.state = NOT_STARTED
        self.request_state = RECEIVED if body_complete else RECEIVING
        self.body: list[bytes] = []
        self.body_size = 0
        self.waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.response_headers: Any = ()
        self.start_time = time.monotonic() if access_log is not None else 0.0
        self.task: asyncio.Task[None] | None = None
        """The task running the app; it leaves the server's task set when the app returns."""

    # -- told by the transport -------------------------------------------------------------
    def feed_body(self, data: bytes) -> bool:
        """Buffer a body chunk; True when the buffer is full and reading should pause."""
        if self.state is COMPLETE:
            return False  # the app answered without reading the body: what is left is dropped
        self.body.append(data)
        self.body_size += len(data)
        self._wake()
        return self.body_size > BODY_BUFFER_HIGH

    def request_complete(self) -> None:
        """The whole request body is read."""
        self.request_state = _ON_BODY_READ[self.request_state]
        if self.state is not COMPLETE:
            self.wire.request_complete()
        if self.waiter is not None:
            self._wake()

    def disconnect(self) -> None:
        self.request_state = _ON_DISCONNECT[self.request_state]
        self._wake()

    def close_after_response(self) -> None:
        """The server is closing: the connection carries no other response."""
        if self.state is not COMPLETE:
            self.wire.close_after_response()

    @property
    def body_pending(self) -> bool:
        return self.body_size > BODY_BUFFER_HIGH

    @property
    def response_started(self) -> bool:
        """The app sent ``http.response.start`` (its head may not be on the wire yet)."""
        return self.state is not NOT_STARTED

    @property
    def response_on_wire(self) -> bool:
        """Some of the response was written: no other answer can be given to this request."""
        return self.state is STREAMING or self.state is COMPLETE

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- receive() -----------------------------------------------------------------------
    async def receive(self) -> Message:
        while True:
            request_state = self.request_state
            if request_state is DISCONNECTED or self.state is COMPLETE:
                return _DISCONNECT.copy()
            if request_state is RECEIVED or (request_state is RECEIVING and self.body):
                return self._request_message()
            if request_state is RECEIVING:
                data = self.wire.continue_()
                if data:
                    self.owner.write(data)
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
        more = self.request_state is RECEIVING
        if not more:
            self.request_state = _ON_BODY_DELIVERED[self.request_state]
        return {"type": "http.request", "body": body, "more_body": more}

    # -- send() --------------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        if self.request_state is DISCONNECTED:
            raise ClientDisconnected("the client disconnected")
        try:
            kind = message["type"]
        except (KeyError, TypeError):
            raise RuntimeError(f"ASGI message without a 'type': {message!r}") from None
        state = self.state
        if kind == "http.response.body":
            more = message.get("more_body", False)
            try:
                new = (_ON_BODY if more else _ON_FINAL_BODY)[state]
            except KeyError:
                raise RuntimeError(_order_error(kind, state)) from None
            body = message.get("body", b"")
            if type(body) is not bytes:
                body = _body_of(message)
            try:
                if state is STARTED:
                    data = self.wire.start(self.status, self.response_headers, body, more)
                else:
                    data = self.wire.body(body, more)
            except InvalidResponse as exc:
                raise RuntimeError(f"invalid http.response.start: {exc}") from None
            except BrokenFraming as exc:
                self._framing_broken(exc)
            self.state = new
            owner = self.owner
            if data:
                owner.write(data)
            if not more:
                # Complete (inlined: one call less on every response).
                if self.body_size:
                    self._drop_body()
                if self.access_log is not None:
                    self.access_log.log(self.scope, self.status, self.response_headers, self.wire.sent,
                                        time.monotonic() - self.start_time)
                if self.waiter is not None:
                    self._wake()
                owner.response_complete(self.wire.keep_alive)
        elif kind == "http.response.start" and state is NOT_STARTED:
            status = message.get("status")
            if type(status) is not int or not 100 <= status <= 599:
                raise RuntimeError(f"invalid status in http.response.start: {status!r}")
            self.status = status
            self.response_headers = message.get("headers", ())
            self.state = _ON_START[state]
            return  # the head waits for the first body message (ASGI allows it)
        else:
            raise RuntimeError(_order_error(kind, state))
        if self.owner.write_paused:
            await self.owner.drain()

    def _framing_broken(self, exc: BrokenFraming) -> NoReturn:
        self.state = _ON_END[self.state]
        self.owner.response_complete(self.wire.keep_alive)
        raise RuntimeError(str(exc)) from None

    def _drop_body(self) -> None:
        """The app answered without reading all of the body; receive() now only reports
        http.disconnect, so drop what is buffered: a full buffer would keep reading paused and
        the rest of the body, and every request pipelined after it, would never be read."""
        self.body.clear()
        self.body_size = 0

    # -- running the app -----------------------------------------------------------------
    async def run(self, app: ASGIApp) -> None:
        try:
            # Not typing.cast(): a call on every request, for the type checker only.
            result: object = await app(self.scope, self.receive, self.send)  # type: ignore[func-returns-value]
        except ClientDisconnected:
            # ASGI: servers "should not log it as an error in their server logs".
            error_logger.debug("Client disconnected before the response was sent")
            self._fail(log=False)
        except asyncio.CancelledError:
            self._fail(log=False)  # shutdown timed out: nothing more to say
            raise
        except Exception as exc:
            if self.request_state is DISCONNECTED or _caused_by_disconnect(exc):
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
        self.state = _ON_END[state]
        self._wake()
        data = self.wire.fail()
        if self.request_state is DISCONNECTED:
            self.owner.response_complete(self.wire.keep_alive)
            return
        if state is STREAMING:
            if log:
                error_logger.error("ASGI callable returned without completing the response")
        else:
            if log:
                error_logger.error("ASGI callable returned without sending a response")
            self.status = 500
            self.owner.write(data)
        self.owner.response_complete(self.wire.keep_alive)


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
