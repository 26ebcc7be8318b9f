"""One HTTP request/response cycle as the app sees it: ``receive()``, ``send()`` and their rules.

The rules of the ASGI HTTP spec (message order, field types, ``http.disconnect``, an ``OSError``
from ``send()`` after the client left) and of its response extensions (``zerocopysend``,
``pathsend``, ``early_hint``, ``trailers``) live here and nowhere else. How the response is framed
and whether the connection is reused belong to the wire protocol, reached through
:class:`ResponseWire`; the transport feeds the request body in and writes the bytes out through
:class:`CycleOwner`. Nothing here is specific to HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable, Sequence
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
    def file_start(self, status: int, headers: Any, size: int, more: bool) -> tuple[bytes, bool, bytes]:
        """:meth:`start` with ``size`` bytes of a file as the first body part: the bytes to write
        before the file, whether to send the file at all, the bytes to write after it."""
    def file_body(self, size: int, more: bool) -> tuple[bytes, bool, bytes]:
        """:meth:`body` with a part of ``size`` bytes that the caller writes itself (a file's,
        or a large part written uncopied), framed as :meth:`file_start` says."""
    def early_hint(self, links: Any) -> bytes:
        """An interim response with the links, or nothing where none can be sent; InvalidResponse."""
    def trailers(self, headers: Any, more: bool) -> bytes:
        """Trailer fields after a body whose last message was passed as not final; the last
        (not ``more``) completes the response. InvalidResponse or BrokenFraming when refused."""
    def continue_(self) -> bytes:
        """The app waits for the request body: the interim answer the client may wait for."""
    def request_complete(self) -> None: ...
    def close_after_response(self) -> None: ...
    def fail(self) -> bytes:
        """The response will not complete: an error response if nothing was sent, else nothing."""


class CycleOwner(Protocol):
    """What the cycle needs from the connection that carries it."""

    write_paused: bool

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def write(self, data: bytes) -> None: ...
    def writelines(self, parts: Sequence[bytes]) -> None:
        """Write the parts in order, without joining them where the transport need not."""
    async def drain(self) -> None: ...
    def open_file(self, path: Any) -> tuple[int, int]:
        """Open the regular file at the absolute ``path``: its descriptor and size; OSError or
        ValueError."""
    def file_span(self, file: Any, offset: int | None, count: int | None) -> tuple[int, int, int]:
        """The descriptor of ``file`` (an object with ``fileno()``, or a descriptor) and the part
        of it to send: ``offset`` (None: the file's position) and ``count`` (None: to the end),
        within the file; OSError or ValueError."""
    async def send_file(self, fd: int, offset: int, count: int) -> None:
        """Send ``count`` bytes of ``fd`` from ``offset``, after what was written; the file's
        position ends after them. ClientDisconnected, or OSError when the file fails or is short."""
    def close_file(self, fd: int) -> None: ...
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
    STARTED_WITH_TRAILERS = enum.auto()
    """As ``STARTED``, with ``trailers: True``: ``http.response.trailers`` follow the body."""
    STREAMING_WITH_TRAILERS = enum.auto()
    TRAILERS = enum.auto()
    """The body is complete; ``http.response.trailers`` messages follow."""
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
STARTED_WITH_TRAILERS: Final = ResponseState.STARTED_WITH_TRAILERS
STREAMING_WITH_TRAILERS: Final = ResponseState.STREAMING_WITH_TRAILERS
TRAILERS: Final = ResponseState.TRAILERS
COMPLETE: Final = ResponseState.COMPLETE
RECEIVING: Final = RequestState.RECEIVING
RECEIVED: Final = RequestState.RECEIVED
DELIVERED: Final = RequestState.DELIVERED
DISCONNECTED: Final = RequestState.DISCONNECTED

SEPARATE_BODY: Final = 16384
"""Later body parts from this size go out after their framing rather than copied into one
string with it (as WebSocket payloads do, :data:`asgisock.ws.connection.SEPARATE_PAYLOAD`)."""

RESPONSE_TRANSITIONS: Final[dict[str, dict[ResponseState, ResponseState]]] = {
    "http.response.start": {NOT_STARTED: STARTED},
    "http.response.start (trailers)": {NOT_STARTED: STARTED_WITH_TRAILERS},
    "http.response.body": {STARTED: STREAMING, STREAMING: STREAMING},
    "http.response.body (final)": {STARTED: COMPLETE, STREAMING: COMPLETE},
    "http.response.body (trailers follow)": {STARTED_WITH_TRAILERS: STREAMING_WITH_TRAILERS,
                                             STREAMING_WITH_TRAILERS: STREAMING_WITH_TRAILERS},
    "http.response.body (final, trailers follow)": {STARTED_WITH_TRAILERS: TRAILERS,
                                                    STREAMING_WITH_TRAILERS: TRAILERS},
    # ASGI: a path-send "cannot be mixed with http.response.body": the file is the whole body.
    "http.response.pathsend": {STARTED: COMPLETE, STARTED_WITH_TRAILERS: TRAILERS},
    "http.response.trailers": {TRAILERS: TRAILERS},
    "http.response.trailers (final)": {TRAILERS: COMPLETE},
    # ASGI allows hints "after the Response Start message but before the final Response Body";
    # before the start too, as Starlette's send_early_hints() sends them.
    "http.response.early_hint": {NOT_STARTED: NOT_STARTED, STARTED: STARTED, STREAMING: STREAMING,
                                 STARTED_WITH_TRAILERS: STARTED_WITH_TRAILERS,
                                 STREAMING_WITH_TRAILERS: STREAMING_WITH_TRAILERS},
    "end": {NOT_STARTED: COMPLETE, STARTED: COMPLETE, STREAMING: COMPLETE, STARTED_WITH_TRAILERS: COMPLETE,
            STREAMING_WITH_TRAILERS: COMPLETE, TRAILERS: COMPLETE},
}
"""The allowed transitions, as data: a message (a body with ``more_body`` False is the final
one) or the end of the cycle (the app failed, the framing broke) maps a state to the next; a
message refused in a state is an ASGI order error. ``http.response.zerocopysend`` moves as a
body does."""

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
_ON_START_TRAILERS: Final = RESPONSE_TRANSITIONS["http.response.start (trailers)"]
_ON_BODY_TRAILERS: Final = RESPONSE_TRANSITIONS["http.response.body (trailers follow)"]
_ON_FINAL_BODY_TRAILERS: Final = RESPONSE_TRANSITIONS["http.response.body (final, trailers follow)"]
_ON_TRAILERS: Final = RESPONSE_TRANSITIONS["http.response.trailers"]
_ON_FINAL_TRAILERS: Final = RESPONSE_TRANSITIONS["http.response.trailers (final)"]
_ON_EARLY_HINT: Final = RESPONSE_TRANSITIONS["http.response.early_hint"]
_ON_PATHSEND: Final = RESPONSE_TRANSITIONS["http.response.pathsend"]
_NOTHING_ON_WIRE: Final = frozenset({NOT_STARTED, STARTED, STARTED_WITH_TRAILERS})
"""States in which no byte of the response has been written (a 103 is no part of it)."""
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
                 body_complete: bool, timed: bool = False) -> None:
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
        self.start_time = time.monotonic() if access_log is not None or timed else 0.0
        """When the cycle began, for the access log and, when ``timed``, the owner's metrics."""
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
        return self.state not in _NOTHING_ON_WIRE

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
                self.waiter = self.owner.loop.create_future()  # not get_running_loop(): getpid() on 3.11
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
                await self._send_other(kind, message)  # trailers announced, or out of order
                return
            body = message.get("body", b"")
            if type(body) is not bytes:
                body = _body_of(message)
            try:
                if state is STARTED:
                    data = self.wire.start(self.status, self.response_headers, body, more)
                elif len(body) < SEPARATE_BODY:
                    data = self.wire.body(body, more)
                else:
                    data = self._body_uncopied(body, more)
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
            self.state = (_ON_START_TRAILERS if message.get("trailers") else _ON_START)[state]
            return  # the head waits for the first body message (ASGI allows it)
        else:
            await self._send_other(kind, message)
            return
        if self.owner.write_paused:
            await self.owner.drain()

    def _body_uncopied(self, body: bytes, more: bool) -> bytes:
        """A large later body part: written after its framing (a chunk-size line) without being
        copied into one string with it; what is left to write."""
        before, send, after = self.wire.file_body(len(body), more)
        if not send:
            return before + after
        if not before:
            return body + after if after else body
        self.owner.writelines((before, body, after))
        return b""

    # -- send(): the extensions, and bodies followed by trailers ---------------------------
    async def _send_other(self, kind: Any, message: Message) -> None:
        """Every message but a plain body and the start: the path :meth:`send` leaves to this
        one, so that the common response pays nothing for the rest."""
        handler = _HANDLERS.get(kind) if type(kind) is str else None
        if handler is None:
            raise RuntimeError(_order_error(kind, self.state))
        await handler(self, message)

    def _body_state(self, kind: str, more: bool) -> ResponseState:
        """The state after a body part (bytes, or a file), or the order error."""
        state = self.state
        new = (_ON_BODY if more else _ON_FINAL_BODY).get(state)
        if new is None:
            new = (_ON_BODY_TRAILERS if more else _ON_FINAL_BODY_TRAILERS).get(state)
            if new is None:
                raise RuntimeError(_order_error(kind, state))
        return new

    async def _send_body(self, message: Message) -> None:
        """``http.response.body`` when trailers follow: the final one is not final on the wire."""
        more = bool(message.get("more_body", False))
        new = self._body_state("http.response.body", more)
        body = _body_of(message)
        wire_more = more or new is TRAILERS
        try:
            if self.state is STARTED_WITH_TRAILERS:
                data = self.wire.start(self.status, self.response_headers, body, wire_more)
            else:
                data = self.wire.body(body, wire_more)
        except InvalidResponse as exc:
            raise RuntimeError(f"invalid http.response.start: {exc}") from None
        except BrokenFraming as exc:
            self._framing_broken(exc)
        self.state = new
        if data:
            self.owner.write(data)
        await self._after_part(new)

    async def _send_zerocopy(self, message: Message) -> None:
        """``http.response.zerocopysend``: a body part read from the app's file, which the app
        keeps and closes (ASGI: "servers are not responsible for closing descriptors")."""
        more = bool(message.get("more_body", False))
        new = self._body_state("http.response.zerocopysend", more)
        offset, count = message.get("offset"), message.get("count")
        for name, value in (("offset", offset), ("count", count)):
            if value is not None and (type(value) is not int or value < 0):
                raise RuntimeError(f"http.response.zerocopysend {name!r} must be a non-negative int, got {value!r}")
        if "file" not in message:
            raise RuntimeError("http.response.zerocopysend without a 'file'")
        try:
            fd, offset, count = self.owner.file_span(message["file"], offset, count)
        except (OSError, ValueError, TypeError) as exc:
            raise RuntimeError(f"http.response.zerocopysend cannot send {message['file']!r}: {_reason(exc)}") from None
        await self._send_file(fd, offset, count, more, new)

    async def _send_path(self, message: Message) -> None:
        """``http.response.pathsend``: the server opens the file at the absolute ``path``, sends
        it as the whole body and closes it. A path it cannot send (relative, missing, not a
        regular file) makes ``send()`` raise before anything is written, so the app's failure
        still becomes a 500."""
        new = _ON_PATHSEND.get(self.state)
        if new is None:
            raise RuntimeError(_order_error("http.response.pathsend", self.state))
        path = message.get("path")
        try:
            fd, size = self.owner.open_file(path)
        except (OSError, ValueError, TypeError) as exc:
            raise RuntimeError(f"http.response.pathsend cannot send {path!r}: {_reason(exc)}") from None
        try:
            await self._send_file(fd, 0, size, False, new)
        finally:
            self.owner.close_file(fd)

    async def _send_file(self, fd: int, offset: int, count: int, more: bool, new: ResponseState) -> None:
        wire_more = more or new is TRAILERS
        try:
            if self.state is STARTED or self.state is STARTED_WITH_TRAILERS:
                before, send, after = self.wire.file_start(self.status, self.response_headers, count, wire_more)
            else:
                before, send, after = self.wire.file_body(count, wire_more)
        except InvalidResponse as exc:
            raise RuntimeError(f"invalid http.response.start: {exc}") from None
        except BrokenFraming as exc:
            self._framing_broken(exc)
        self.state = new
        owner = self.owner
        if before:
            owner.write(before)
        if send:
            try:
                await owner.send_file(fd, offset, count)
            except OSError as exc:
                self._broken_off()
                if isinstance(exc, ClientDisconnected):
                    raise
                raise RuntimeError(f"sending a file failed: {exc}") from exc
        if after:
            owner.write(after)
        await self._after_part(new)

    async def _send_early_hint(self, message: Message) -> None:
        """``http.response.early_hint``: a 103 with the links, where the wire can send one."""
        state = self.state
        if state not in _ON_EARLY_HINT:
            raise RuntimeError(_order_error("http.response.early_hint", state))
        try:
            data = self.wire.early_hint(message.get("links"))
        except InvalidResponse as exc:
            raise RuntimeError(f"invalid http.response.early_hint: {exc}") from None
        if data:
            self.owner.write(data)
            await self._after_part(state)

    async def _send_trailers(self, message: Message) -> None:
        """``http.response.trailers``: the last one (``more_trailers`` False) completes the response."""
        more = bool(message.get("more_trailers", False))
        state = self.state
        new = (_ON_TRAILERS if more else _ON_FINAL_TRAILERS).get(state)
        if new is None:
            raise RuntimeError(_order_error("http.response.trailers", state))
        try:
            data = self.wire.trailers(message.get("headers", ()), more)
        except InvalidResponse as exc:
            raise RuntimeError(f"invalid http.response.trailers: {exc}") from None
        except BrokenFraming as exc:
            self._framing_broken(exc)
        self.state = new
        if data:
            self.owner.write(data)
        await self._after_part(new)

    async def _after_part(self, new: ResponseState) -> None:
        """Complete the response if ``new`` says so, then wait while the client is slow."""
        if new is COMPLETE:
            self._complete()
        if self.owner.write_paused:
            await self.owner.drain()

    def _complete(self) -> None:
        """The response is whole on the wire (the plain body path inlines this)."""
        if self.body_size:
            self._drop_body()
        if self.access_log is not None:
            self.access_log.log(self.scope, self.status, self.response_headers, self.wire.sent,
                                time.monotonic() - self.start_time)
        if self.waiter is not None:
            self._wake()
        self.owner.response_complete(self.wire.keep_alive)

    def _broken_off(self) -> None:
        """A file stopped before its end (the client left, or the file failed): the response
        cannot be completed and the connection closes."""
        if self.state is not COMPLETE:
            self.state = _ON_END[self.state]
        self.owner.response_complete(False)

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
        if state not in _NOTHING_ON_WIRE:
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


def _reason(exc: Exception) -> str:
    """Why a file cannot be sent: the system's words for an OSError, without the path again."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _order_error(kind: Any, state: ResponseState) -> str:
    if state is COMPLETE:
        return f"ASGI message {kind!r} sent after the response was complete"
    if state is NOT_STARTED:
        expected = "http.response.start"
    elif state is TRAILERS:
        expected = "http.response.trailers"
    else:
        expected = "http.response.body"
    return f"unexpected ASGI message {kind!r}; expected {expected!r}"


_HANDLERS: Final[dict[str, Callable[[HTTPCycle, Message], Awaitable[None]]]] = {
    "http.response.body": HTTPCycle._send_body,
    "http.response.zerocopysend": HTTPCycle._send_zerocopy,
    "http.response.pathsend": HTTPCycle._send_path,
    "http.response.early_hint": HTTPCycle._send_early_hint,
    "http.response.trailers": HTTPCycle._send_trailers,
}
"""What :meth:`HTTPCycle._send_other` does with each message type; an unknown type, or one
out of order, is the app's error."""
