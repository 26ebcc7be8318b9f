"""The asyncio protocol for one HTTP/1.1 connection: socket bytes in, cycles out.

This is the only layer that touches the transport. It feeds bytes to the sans-I/O
:class:`~asgisock.http11.connection.HTTP11Connection`, runs one
:class:`~asgisock.asgi.http_cycle.HTTPCycle` at a time (pipelined requests wait their turn, so
responses go out in request order), and applies flow control both ways: reading pauses while
the app has not consumed the buffered body or while pipelined requests wait, and ``send()``
waits while the write buffer is above its high-water mark. Bodies read from files are sent by
:class:`~asgisock.transport.files.FileBodies`.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, cast

from asgisock.asgi.http_cycle import HTTPCycle
from asgisock.asgi.scope import http_scope
from asgisock.http11.connection import HTTP11Connection, ParserState
from asgisock.http11.events import END_OF_MESSAGE, EndOfMessage, Event, Request, RequestError
from asgisock.http11.writer import ResponseWriter, error_response
from asgisock.logging import TRACE, error_logger
from asgisock.proxy.forwarded import TrustedProxies, resolve
from asgisock.proxy.protocol import ProxyHeader
from asgisock.transport.addresses import client_address, format_address, server_address
from asgisock.transport.files import FileBodies
from asgisock.transport.flow import WriteFlow
from asgisock.transport.state import Upgrade
from asgisock.transport.tls import connection_tls

if TYPE_CHECKING:
    from asgisock.metrics import Metrics
    from asgisock.transport.state import ServerState


_TASK_NAME: Final = "asgisock: HTTP request"
HOLD_LIMIT: Final = 64 * 1024
"""Held responses to pipelined requests are written once they add up to this many bytes."""
_NO_HEAD_OR_CHUNKS: Final = frozenset({ParserState.IDLE, ParserState.BODY})
"""The parser reads no request head or chunked body: it is between requests, or in a
Content-Length body (one that its app answered without reading, when no request is in hand)."""


class HTTPProtocol(WriteFlow, FileBodies, asyncio.Protocol):
    """One client connection; a new instance per accepted socket."""

    kind: Final = "http"
    """What the metrics count this connection as (``ServerState.metrics_snapshot``)."""

    # Slots: no instance dict for each connection's 30 attributes (2.4% fewer instructions per
    # keep-alive request, 4.5% per connection that carries one request: bench/instructions.py).
    __slots__ = (
        "access_log", "app", "body_clock", "body_cycle", "client", "closed", "closing", "conn", "cycle",
        "held", "idle_since", "idle_timer", "limit_concurrency", "loop", "origin", "pending",
        "read_paused", "reset_contextvars", "root_path", "scheme", "server", "state", "tasks",
        "timeout_keep_alive", "tls", "transport", "trusted", "writer",
    )

    def __init__(self, state: ServerState, origin: ProxyHeader | None = None, *,
                 local: tuple[str, int | None] | None = None) -> None:
        self.state = state
        self.origin = origin
        """What a PROXY protocol header said of the connection's two ends."""
        self.server = local
        """The server address: the listener's when it gives one (:func:`listening_address`),
        else the connection's own, asked for when it is made."""
        config = state.config
        self.loop = state.loop
        self.app = state.app
        self.tasks = state.tasks
        self.access_log = state.access_log
        self.timeout_keep_alive = config.timeout_keep_alive
        self.limit_concurrency = config.limit_concurrency
        self.root_path = config.root_path
        self.reset_contextvars = config.reset_contextvars
        self.write_paused = False
        self.read_paused = False
        self.closed = False
        self.closing = False
        """Close once the current response is complete (shutdown, EOF from the client)."""

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        state = self.state
        config = state.config
        self.conn = HTTP11Connection(max_header_size=config.max_header_size, websocket=config.ws != "none")
        self.writer = ResponseWriter(state.defaults)
        """Frames each response in turn, and decides whether the connection carries another."""
        self.client = client_address(transport)
        if self.server is None:
            self.server = server_address(transport)
        origin = self.origin
        if origin is not None and origin.client is not None:
            self.client, self.server = origin.client, origin.server
        ssl_object = transport.get_extra_info("ssl_object") if config.ssl_certfile else None
        self.scheme = "http" if ssl_object is None else "https"
        self.tls = None if ssl_object is None else connection_tls(ssl_object, transport.get_extra_info("sslcontext"))
        """The ASGI ``tls`` extension, the same for every request of the connection."""
        trusted = state.trusted
        self.trusted: TrustedProxies | None = (
            trusted if trusted is not None and trusted.trusts(None if self.client is None else self.client[0])
            else None)
        """The trusted proxies, when the peer is one of them; else None, and forwarding fields are
        passed to the app untouched and ignored."""
        self.cycle: HTTPCycle | None = None
        self.body_cycle: HTTPCycle | None = None
        self.pending: deque[Event] = deque()
        self.drain_waiters: list[asyncio.Future[None]] = []
        self.idle_timer: asyncio.TimerHandle | None = None
        self.body_clock: BodyClock | None = None
        self.held: Held | None = None
        """Responses to a pipelined batch, written together (see :meth:`_hold`); None when
        each response is written as it comes."""
        self.state.connections.add(self)
        if state.draining:  # accepted just before the server stopped listening
            self.closing = True
        self.idle_since = now = self.loop.time()
        state.arrivals.add(self, now)  # the connection's own timer waits for its first response
        if error_logger.isEnabledFor(TRACE):
            error_logger.log(TRACE, "%s - HTTP connection made", self.client)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        events = conn.events_received()
        count = len(events)
        if (1 < count < 4 and events[-1] is END_OF_MESSAGE and type(events[0]) is Request
                and (count == 2 or type(events[1]) is bytes) and self.cycle is None and not self.pending):
            # The one fast path of HTTP input: a read holding one whole request, without a body
            # (the usual read on a keep-alive connection) or with it. It does what
            # _receive_events would do, in fewer steps (3% of the instructions of a request
            # without a body, 4% with one); test_http_fast_path pins that.
            self._start_cycle(events[0], True, events[1] if count == 3 else None)  # type: ignore[arg-type]
        else:
            self._receive_events(events)

    def _receive_events(self, events: list[Event]) -> None:
        """The general path of :meth:`data_received`: queue what the parser gave, and act on it
        unless earlier events still wait (reading then pauses until they are done)."""
        pending = self.pending
        if pending:
            pending.extend(events)
            self._update_reading()
        else:
            pending.extend(events)
            self._dispatch()

    def eof_received(self) -> bool | None:
        # The client is gone (or half-closed, which HTTP/1.1 gives no meaning): close, so an app
        # waiting for http.disconnect (long polling, streaming) learns it at once.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.held = None
        state = self.state
        state.connections.discard(self)
        state.arrivals.discard(self)
        current = self.cycle
        if current is not None and state.metrics is not None:  # the request ends with its connection
            state.metrics.response(current.scope["method"], current.status, current.start_time)
        for cycle in (self.cycle, self.body_cycle):
            if cycle is not None:
                cycle.disconnect()
        self.cycle = self.body_cycle = None
        self.pending.clear()
        self._wake_drain_waiters()
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        if error_logger.isEnabledFor(TRACE):
            error_logger.log(TRACE, "%s - HTTP connection lost", self.client)

    # -- events from the parser ------------------------------------------------------------
    def _dispatch(self) -> None:
        """Act on the parser's events in :attr:`pending`, in order, taking each out as it is
        done: a request that finds the one before it still answering stops there, and it and
        what follows wait in place (no copy per response of a pipelined batch)."""
        pending = self.pending
        while pending:
            event = pending[0]
            kind = type(event)
            if kind is bytes:
                pending.popleft()
                cycle = self.body_cycle
                self.idle_since = self.loop.time()  # the body makes progress
                if self.body_clock is not None:
                    self.body_clock.received += len(event)  # type: ignore[arg-type]
                if cycle is not None and cycle.feed_body(event):  # type: ignore[arg-type]
                    self._update_reading()
            elif kind is Request:
                if self.cycle is not None:
                    if self.held is None or not self.read_paused:  # else deferred already
                        self._defer()
                    return
                pending.popleft()
                # A request whose end is already read (no body, the usual keep-alive read, or a
                # body whole in the same read) starts complete: no body clock, nothing to wait
                # for from the client.
                body = None
                complete = False
                if pending:
                    following = pending[0]
                    if following is END_OF_MESSAGE:
                        complete = True
                    elif type(following) is bytes and len(pending) > 1 and pending[1] is END_OF_MESSAGE:
                        body = following
                        complete = True
                        pending.popleft()
                self._start_cycle(event, complete, body)  # type: ignore[arg-type]
            elif kind is EndOfMessage:
                pending.popleft()
                if self.body_cycle is not None:
                    self.body_cycle.request_complete()
                    self.body_cycle = None
            elif self.body_cycle is not None:
                pending.clear()  # after an error in the framing, what follows cannot be trusted
                self._body_failed(self.body_cycle, event)  # type: ignore[arg-type]
                return
            elif self.cycle is not None:
                self._defer()
                return
            else:
                pending.clear()
                self._reject(event)  # type: ignore[arg-type]
                return

    def _defer(self) -> None:
        """Keep the pipelined events left in :attr:`pending` until the current response is complete."""
        if self.held is None:
            self._hold()
        self._update_reading()

    # -- the responses to a pipelined batch --------------------------------------------------
    def _hold(self) -> None:
        """Requests are pipelined: hold their responses, to write them in one go once the last
        is complete, rather than one write (and one system call) each.

        A response is never held for long: the responses go out as soon as none is queued, as
        soon as they add up to ``HOLD_LIMIT`` bytes, before a file is sent or the connection
        closes, and whenever a turn of the event loop passes in which no response was written
        to (an app that waits, for a database say, does not keep the ones before it back).
        """
        self.held = Held()
        self.loop.call_soon(self._flush_if_stalled)

    def _flush_if_stalled(self) -> None:
        held = self.held
        if held is None:
            return
        if held.progress and self.cycle is not None:
            held.progress = False
            self.loop.call_soon(self._flush_if_stalled)
        else:
            self._flush()

    def _flush(self) -> None:
        held = self.held
        self.held = None
        if held is not None and held.parts and not self.closed:
            self.transport.write(b"".join(held.parts))

    def _start_cycle(self, request: Request, complete: bool = False, body: bytes | None = None) -> None:
        """Hand a request to the app; ``complete`` when its end is already read, with ``body``
        (None when there is none)."""
        state = self.state
        state.requests += 1
        if not complete:
            # From here the clock runs only while the request body is awaited from the client.
            self.idle_since = now = self.loop.time()
            rate = state.config.min_request_body_rate
            if rate:
                self.body_clock = BodyClock(now, rate)
        if request.forwarded and self.trusted is not None:
            request, client, server, scheme = self._forwarded(request, self.trusted)
        else:
            client, server, scheme = self.client, self.server, self.scheme
        if request.upgrade and state.upgrade is not None:
            self.detach()
            state.upgrade(Upgrade(self.transport, request, client, server, scheme, self.conn.upgrade_data or b"",
                                       self.tls))
            return
        scope = http_scope(request, scheme=scheme, client=client, server=server, root_path=self.root_path,
                           state=state.app_state)
        if self.tls is not None:
            scope["extensions"]["tls"] = self.tls
        writer = self.writer
        writer.begin(request, complete)
        self.cycle = cycle = HTTPCycle(self, writer, scope, self.access_log, complete,
                                       state.metrics is not None)
        if not complete:
            self.body_cycle = cycle
        elif body is not None:
            cycle.feed_body(body)  # read whole already: reading need not pause, however large
        if self.closing:
            cycle.close_after_response()
        limit = self.limit_concurrency
        if limit is not None and (len(state.connections) > limit or len(state.tasks) >= limit):
            error_logger.warning("Exceeded concurrency limit: answering 503")
            self._reject(RequestError(503, "Service Unavailable"))
            return
        loop = self.loop
        if self.reset_contextvars:
            # An empty context, rather than a copy of this callback's own, which holds what was
            # set before the server listened (at the app's import, say).
            task = loop.create_task(cycle.run(self.app), name=_TASK_NAME, context=contextvars.Context())
        elif loop.get_task_factory() is None:
            # What loop.create_task() does, less a unique "Task-<n>" name formatted for each request.
            task = asyncio.Task(cycle.run(self.app), loop=loop, name=_TASK_NAME)
        else:
            task = loop.create_task(cycle.run(self.app))
        cycle.task = task
        self.tasks.add(task)

    def _forwarded(self, request: Request, trusted: TrustedProxies) -> tuple[
            Request, tuple[str, int] | None, tuple[str, int | None] | None, str]:
        """The request as the trusted proxies describe it: client, server port, scheme, host."""
        client, server, scheme = self.client, self.server, self.scheme
        forwarding = resolve(None if client is None else client[0], request.headers, trusted,
                             use_host=self.state.config.forwarded_host)
        if forwarding is None:
            return request, client, server, scheme
        if forwarding.client is not None or forwarding.client_unknown:
            client = forwarding.client
        if forwarding.scheme is not None:
            scheme = forwarding.scheme[0]
        if forwarding.port is not None and server is not None:
            server = (server[0], forwarding.port)
        if forwarding.host is not None:
            host = forwarding.host
            headers = [(name, host if name == b"host" else value) for name, value in request.headers]
            request = request._replace(headers=headers)
        return request, client, server, scheme

    def _reject(self, error: RequestError) -> None:
        """Answer a request that must not reach the app, then close: its framing is in doubt."""
        if self.state.metrics is not None:
            self.state.metrics.reject(error.status)
        client = format_address(self.client)
        if error.status >= 500:
            error_logger.warning("%s - %s %s", client, error.status, error.reason)
        else:
            error_logger.info("%s - Invalid request: %s %s", client, error.status, error.reason)
        self.cycle = self.body_cycle = None
        self.pending.clear()
        if not self.closed:
            self.write(error_response(error.status, error.reason))
            self._close()

    def _body_failed(self, cycle: HTTPCycle, error: RequestError) -> None:
        """The body of a request already handed to the app is malformed.

        The app learns it through ``http.disconnect``. The client gets the error answer if no
        response has gone out yet; otherwise (a response cannot be followed by another for the
        same request) the connection just closes.
        """
        error_logger.info("%s - Invalid request body: %s %s", format_address(self.client), error.status,
                          error.reason)
        if self.state.metrics is not None:
            self.state.metrics.reject(error.status)
        self.pending.clear()
        self.body_cycle = None
        answer = cycle is self.cycle and not cycle.response_on_wire
        cycle.disconnect()
        if not self.closed:
            if answer:
                self.write(error_response(error.status, error.reason))
            self._close()

    # -- CycleOwner ------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.closed:
            return
        held = self.held
        if held is None:
            self.transport.write(data)
            return
        held.parts.append(data)
        held.progress = True
        held.size += len(data)
        if held.size >= HOLD_LIMIT:
            self._flush()

    def writelines(self, parts: Sequence[bytes]) -> None:
        if self.closed:
            return
        if self.held is None:
            self.write_uncopied(parts)
            return
        for data in parts:  # held back: joined with the responses around it
            self.write(data)

    async def send_file(self, fd: int, offset: int, count: int) -> None:
        if self.held is not None:
            self._flush()  # the kernel sends the file straight to the socket, after what is held
        await super().send_file(fd, offset, count)

    def app_finished(self, cycle: HTTPCycle) -> None:
        self.tasks.discard(cycle.task)  # None when never started: a no-op

    def body_consumed(self) -> None:
        self._update_reading()

    def response_complete(self, keep_alive: bool) -> None:
        metrics = self.state.metrics
        if metrics is not None and (cycle := self.cycle) is not None:  # where every way a response ends leads
            metrics.response(cycle.scope["method"], cycle.status, cycle.start_time)
        self.cycle = None
        if self.closed:
            return
        if not keep_alive or self.closing:
            self.pending.clear()
            self._close()
            return
        if self.pending:
            self._dispatch()
        if self.cycle is None:
            if self.held is not None:
                self._flush()  # the last of a pipelined batch
            self.idle_since = self.loop.time()
            if self.idle_timer is None:
                self._became_idle()
        if self.read_paused:
            self._update_reading()

    def _close(self) -> None:
        """Close once: asyncio's TLS transport forgets its protocol when closed a second time,
        and fails on the next call."""
        if self.held is not None:
            self._flush()
        if not self.transport.is_closing():
            self.transport.close()

    # -- flow control and timers -----------------------------------------------------------
    def _update_reading(self) -> None:
        body = self.body_cycle
        pause = bool(self.pending) or (body is not None and body.body_pending)
        if pause == self.read_paused or self.closed:
            return
        self.read_paused = pause
        if pause:
            self.transport.pause_reading()
            if self.body_clock is not None:
                self.body_clock.paused_at = self.loop.time()
        else:
            self.transport.resume_reading()
            if body is not None:
                # Waiting on the client's body again: restart its clock, and leave the time the
                # server held reading back out of the body's rate.
                self._became_idle()
                if self.body_clock is not None:
                    self.body_clock.resumed(self.idle_since)

    def _hold_reading(self) -> None:
        """Stop reading for a while (a file sent by the kernel), as the protocol's own decision:
        the body clock and the idle timer then know it, and :meth:`_update_reading` undoes it."""
        if not self.read_paused and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()
            if self.body_clock is not None:
                self.body_clock.paused_at = self.loop.time()

    def _became_idle(self) -> None:
        """Start the clock on the client: the next request head, or the rest of a request body,
        must arrive within the keep-alive timeout. A trickle of head bytes does not restart it
        (slowloris); body bytes do, and the clock stops while the server itself holds reading
        back or the app is working."""
        self.idle_since = self.loop.time()
        if self.idle_timer is None:
            self.idle_timer = self.loop.call_at(self.idle_since + self.timeout_keep_alive, self._idle_check)

    def arrival_due(self) -> None:
        if self.idle_timer is None:  # else the connection's own timer has taken over
            self._idle_check()

    def _idle_check(self) -> None:
        """One timer per connection, re-armed rather than recreated for every request (and
        before the first response, :class:`Arrivals` in its place)."""
        self.idle_timer = None
        if self.closed:
            return
        body = self.body_cycle
        if self.cycle is not None and (body is None or self.read_paused):
            return  # the app's turn; the clock restarts when the server waits on the client again
        now = self.loop.time()
        deadline = self.idle_since + self.timeout_keep_alive
        clock = self.body_clock
        if body is not None and clock is not None:
            too_slow_at = clock.too_slow_at(self.timeout_keep_alive)
            if now >= too_slow_at:
                self._body_too_slow(body, clock, now)
                return
            deadline = min(deadline, too_slow_at)
        if now < deadline:
            self.idle_timer = self.loop.call_at(deadline, self._idle_check)
            return
        if body is not None:
            error_logger.info("%s - Request body stalled for %.1f s: closing", format_address(self.client),
                              self.timeout_keep_alive)
            body.disconnect()
        if self.state.metrics is not None:
            self._count_timeout(self.state.metrics, body is None and self.conn.state in _NO_HEAD_OR_CHUNKS)
        self._close()

    def _count_timeout(self, metrics: Metrics, idle: bool) -> None:
        """An idle keep-alive connection timed out; or a request whose head or body stalled, which
        RFC 9110 §15.5.9 calls a 408 even though none is sent."""
        if idle:
            metrics.http_keepalive_timeouts += 1
        else:
            metrics.reject(408)

    def _body_too_slow(self, body: HTTPCycle, clock: BodyClock, now: float) -> None:
        """RFC 9110 §15.5.9: 408 when the server "did not receive a complete request message
        within the time that it was prepared to wait", then close; only close if a response has
        started, as another cannot follow it."""
        error_logger.info("%s - Request body too slow (%d bytes in %.1f s): closing", format_address(self.client),
                          clock.received, clock.waited(now))
        if self.state.metrics is not None:
            self.state.metrics.reject(408)
        self.pending.clear()
        self.body_cycle = None
        answer = body is self.cycle and not body.response_started
        body.disconnect()
        if answer:
            self.write(error_response(408, "Request Timeout"))
        self._close()

    def detach(self) -> None:
        """The connection now belongs to another protocol (a WebSocket upgrade)."""
        if self.held is not None:
            self._flush()
        self.state.connections.discard(self)
        self.state.arrivals.discard(self)
        self.cycle = self.body_cycle = None
        self.pending.clear()
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    # -- shutdown --------------------------------------------------------------------------
    def shutdown(self, *, restart: bool = False) -> str:
        """The server drains: close after the response in flight (``"request"``), which the
        response writer marks ``Connection: close`` if its head has not gone out yet; close now
        a connection idle between two requests (``"idle"``: RFC 9112 §9.3.1 lets its client
        retry a request it sends meanwhile). A connection that has not yet carried a request,
        or is in the middle of a request head, gets to send it (``"awaited"``): its client could
        not tell a close from a failure. Pipelined requests not started are dropped."""
        self.closing = True
        self.pending.clear()
        if self.cycle is not None:
            self.cycle.close_after_response()
            return "request"
        if self.writer.reused and self.conn.state in _NO_HEAD_OR_CHUNKS:
            if not self.closed:
                self._close()
            return "idle"
        return "awaited"


class Held:
    """Responses held back while a pipelined batch is answered."""

    __slots__ = ("parts", "progress", "size")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.progress = False
        """A response was written to since the last turn of the event loop."""


class BodyClock:
    """How long the client has taken over a request body, for ``--min-request-body-rate``.

    Apache's mod_reqtimeout counts the same way: a grace period of the keep-alive timeout, plus
    a second for every ``rate`` bytes received, on a clock that stops while the server itself
    holds reading back. Made only for requests with a body, so that the attributes of the
    per-connection protocol stay few (CPython shares an instance's key table only up to 30 of
    them, and every attribute access on the hot path is slower past that).
    """

    __slots__ = ("paused", "paused_at", "rate", "received", "started")

    def __init__(self, now: float, rate: float) -> None:
        self.rate = rate
        """The least bytes per second the body must keep up."""
        self.started = self.paused_at = now
        self.paused = 0.0
        self.received = 0

    def resumed(self, now: float) -> None:
        """Reading resumed: the time since it paused (within this body) does not count."""
        self.paused += now - max(self.paused_at, self.started)

    def waited(self, now: float) -> float:
        return now - self.started - self.paused

    def too_slow_at(self, grace: float) -> float:
        """When the body falls below ``rate`` bytes per second after ``grace`` seconds."""
        return self.started + self.paused + grace + self.received / self.rate
