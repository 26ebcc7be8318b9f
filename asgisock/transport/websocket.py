"""The asyncio protocol for a WebSocket connection, after the HTTP/1.1 upgrade request.

It owns the socket, the clock (keepalive pings, the closing-handshake timeout) and flow control,
and does nothing else: the RFC 6455 rules live in the sans-I/O
:class:`~asgisock.ws.connection.WebSocketConnection` (frames, opcodes, UTF-8) and
:mod:`asgisock.ws.handshake` (the handshake's responses), the ASGI rules in
:class:`~asgisock.asgi.ws_session.WebSocketSession` (messages, Denial Responses, errors in what
the app sends). It gets the connection from the HTTP/1.1 protocol as an
:class:`~asgisock.transport.state.Upgrade`, through the hook ``server.py`` wires.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Final

from asgisock.asgi.scope import websocket_scope
from asgisock.asgi.ws_session import WebSocketSession
from asgisock.exceptions import ClientDisconnected
from asgisock.http11.events import Request
from asgisock.logging import TRACE, error_logger
from asgisock.transport.addresses import format_address
from asgisock.transport.flow import WriteFlow
from asgisock.ws.connection import (
    BytesMessage,
    Closed,
    ConnectionClosedError,
    PongReceived,
    State,
    TextMessage,
    WebSocketConnection,
)
from asgisock.ws.deflate import DeflateSettings, PerMessageDeflate
from asgisock.ws.frames import CloseCode
from asgisock.ws.handshake import Handshake, HandshakeError, reject_response, validate_handshake

if TYPE_CHECKING:
    from asgisock.transport.state import ServerState, Upgrade

OFFLOAD_COMPRESSION: Final = 256 * 1024
"""Messages at least this large are compressed in a worker thread: zlib takes about 12 ms for
256 KiB of text here and 760 ms for 16 MiB, far too long to hold the event loop."""
CLOSE_TIMEOUT: Final = 10.0
"""Seconds to wait for the peer's close frame after sending ours, before dropping TCP."""


def upgrade_to_websocket(state: ServerState, upgrade: Upgrade) -> None:
    """Take over a connection the HTTP/1.1 protocol handed over for a WebSocket opening
    handshake (RFC 6455 §4.2.1), or refuse an invalid handshake and close."""
    request = upgrade.request
    try:
        handshake = validate_handshake(request.method, request.http_version, request.headers)
    except HandshakeError as exc:
        error_logger.info("%s - Invalid WebSocket handshake: %s %s", format_address(upgrade.client),
                          exc.status, exc.reason)
        if state.metrics is not None:
            state.metrics.reject(exc.status)
        upgrade.transport.write(reject_response(exc))
        upgrade.transport.close()
        return
    protocol = WebSocketProtocol(state, request, handshake)
    upgrade.transport.set_protocol(protocol)
    protocol.attach(upgrade)


class WebSocketProtocol(WriteFlow, asyncio.Protocol):
    """One WebSocket connection, from the handshake to the closed socket."""

    kind: Final = "websocket"
    """What the metrics count this connection as (``ServerState.metrics_snapshot``)."""

    # Slots: no instance dict for each connection (idle connections are held by the thousand).
    __slots__ = (
        "client", "close_timer", "closed", "compressing", "config", "conn", "handshake",
        "loop", "metrics", "pending_input", "ping_interval", "ping_timeout", "ping_timer", "pong_timer",
        "read_paused", "request", "session", "shutdown_close", "shutting_down", "state", "transport",
    )

    def __init__(self, state: ServerState, request: Request, handshake: Handshake) -> None:
        self.state = state
        self.config = config = state.config
        self.loop = state.loop
        self.request = request
        self.handshake = handshake
        self.conn: WebSocketConnection | None = None
        self.write_paused = False
        self.read_paused = False
        self.closed = False
        self.shutting_down = False
        self.shutdown_close: tuple[int, str] = (CloseCode.GOING_AWAY, "server shutting down")
        self.compressing: asyncio.Future[None] | None = None
        """Set while a large message is compressed in a worker thread."""
        self.pending_input: list[bytes] = []
        self.drain_waiters: list[asyncio.Future[None]] = []
        self.ping_timer: asyncio.TimerHandle | None = None
        self.pong_timer: asyncio.TimerHandle | None = None
        self.close_timer: asyncio.TimerHandle | None = None
        self.ping_interval = config.ws_ping_interval
        self.ping_timeout = config.ws_ping_timeout
        self.metrics = state.metrics
        """Counts messages and frame bytes for ``--metrics-port``; None without it."""

    def attach(self, upgrade: Upgrade) -> None:
        """Start where the HTTP protocol left off: same socket, handshake parsed."""
        self.transport = upgrade.transport
        self.client = upgrade.client
        scope = websocket_scope(
            self.request, scheme="wss" if upgrade.scheme == "https" else "ws", client=upgrade.client,
            server=upgrade.server, root_path=self.config.root_path, state=self.state.app_state,
            subprotocols=self.handshake.subprotocols,
        )
        if upgrade.tls is not None:
            scope["extensions"]["tls"] = upgrade.tls
        self.session = WebSocketSession(self, scope, self.config.ws_max_queue, handshake=self.handshake,
                                        defaults=self.state.defaults, deflate=self._deflate_settings())
        if upgrade.leftover:
            self.pending_input.append(upgrade.leftover)
        self._set_reading(False)  # nothing is read until the app accepts
        self.state.connections.add(self)
        context = contextvars.Context() if self.config.reset_contextvars else None  # as for HTTP requests
        task = self.loop.create_task(self.session.run(self.state.app), context=context)
        self.state.tasks.add(task)
        task.add_done_callback(self.state.tasks.discard)

    # -- asyncio.Protocol ------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None:
            self.pending_input.append(data)
            self._set_reading(False)
            return
        session = self.session
        if len(session.queue) < session.max_queue:
            message = conn.receive_whole_message(data)
            if message is not None:
                if self.metrics is not None:
                    self.metrics.ws_messages_in += 1
                    self.metrics.ws_bytes_in += len(data)
                if session.deliver_message(message):
                    self._update_reading()  # the queue is full
                return
        self._receive(conn, data)

    def _receive(self, conn: WebSocketConnection, data: bytes) -> None:
        """Parse ``data``, and what the queue limit held back before, into as many messages as
        the app's queue takes (``--ws-max-queue``).

        A message handed straight to a ``receive()`` that was waiting takes no place in the
        queue, so room can remain after the budget ran out: parse on then, since input that is
        held back while the queue has room would wait for a read that may never come (a client
        that sent a burst and now waits for the answers).
        """
        if self.metrics is not None:  # every byte read comes here once, or to the fast path
            self.metrics.ws_bytes_in += len(data)
        conn.receive_data(data, max_messages=self._room())
        self._process(conn)
        while conn.input_held and self._room():
            conn.receive_data(b"", max_messages=self._room())
            self._process(conn)
        self._update_reading()

    def _room(self) -> int:
        """How many more messages the app's queue takes (``--ws-max-queue``)."""
        return max(0, self.session.max_queue - len(self.session.queue))

    def eof_received(self) -> bool | None:
        if self.conn is not None:
            self.conn.receive_eof()
            self._process(self.conn)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.state.connections.discard(self)
        for timer in (self.ping_timer, self.pong_timer, self.close_timer):
            if timer is not None:
                timer.cancel()
        conn = self.conn
        if conn is not None:
            conn.receive_eof()
            for event in conn.events_received():
                if type(event) is Closed:
                    self.session.disconnected(event.code, event.reason)
        self.session.disconnected(1006, "")
        self._wake_drain_waiters()
        if error_logger.isEnabledFor(TRACE):
            error_logger.log(TRACE, "%s - WebSocket connection lost", format_address(self.client))

    def pause_writing(self) -> None:
        # A peer that does not read must not make us buffer without bound what we write on our
        # own (pongs, close frames): stop reading until it catches up.
        super().pause_writing()
        self._update_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._resume_if_ready()

    # -- events from the protocol core -----------------------------------------------------
    def _process(self, conn: WebSocketConnection) -> None:
        session = self.session
        for event in conn.events_received():
            kind = type(event)
            if kind is TextMessage or kind is BytesMessage:
                if self.metrics is not None:
                    self.metrics.ws_messages_in += 1
                session.deliver_message(event.data)  # type: ignore[union-attr]
            elif kind is PongReceived:
                self._pong_received()
            elif kind is Closed:
                session.disconnected(event.code, event.reason)  # type: ignore[union-attr]
                if self.close_timer is None and not self.closed:
                    # Bounds how long a failure's close frame waits for the app to see it.
                    self.close_timer = self.loop.call_later(CLOSE_TIMEOUT, self._close_timed_out)
        data = conn.data_to_send()
        if data and not self.closed:
            if self.metrics is not None:
                self.metrics.ws_bytes_out += len(data)
            self.transport.write(data)
        if conn.close_transport_now():
            self._close_transport()

    # -- SessionOwner ----------------------------------------------------------------------
    def accept(self, head: bytes, deflate: PerMessageDeflate | None) -> None:
        if self.closed:
            raise ClientDisconnected("the client disconnected during the handshake")
        self.transport.write(head)
        self.conn = conn = WebSocketConnection(max_size=self.config.ws_max_size, deflate=deflate)
        if self.ping_interval:
            self.ping_timer = self.loop.call_later(self.ping_interval, self._send_keepalive_ping)
        pending, self.pending_input = self.pending_input, []
        self._receive(conn, b"".join(pending))
        if self.shutting_down:
            self.close(*self.shutdown_close)
        else:
            self._resume_if_ready()

    def _deflate_settings(self) -> DeflateSettings | None:
        config = self.config
        if not config.ws_per_message_deflate:
            return None
        return DeflateSettings(
            server_max_window_bits=config.ws_deflate_window_bits,
            server_no_context_takeover=config.ws_deflate_no_context_takeover,
            compress_threshold=config.ws_deflate_threshold,
        )

    def send_response(self, data: bytes, *, last: bool) -> None:
        self._write(data)
        if last:
            self._close_transport()

    def send_data(self, data: str | bytes) -> Awaitable[None] | None:
        """Queue a message; an awaitable when it must wait (compression in a thread)."""
        conn = self.conn
        assert conn is not None
        if self.compressing is not None or (len(data) >= OFFLOAD_COMPRESSION and conn.wants_compression(len(data))):
            return self._send_compressed_off_loop(conn, data)
        try:
            conn.send_message(data)
        except ConnectionClosedError:
            raise ClientDisconnected("the WebSocket connection is closed") from None
        if not self.closed:
            chunks = conn.chunks_to_send()
            metrics = self.metrics
            if metrics is not None:  # inlined: a call would cost more than the counting
                metrics.ws_messages_out += 1
                metrics.ws_bytes_out += sum(map(len, chunks))
            if len(chunks) == 1:
                self.transport.write(chunks[0])
            else:
                self.write_uncopied(chunks)  # a large payload after its header
        return None

    async def _send_compressed_off_loop(self, conn: WebSocketConnection, data: str | bytes) -> None:
        """Compress a large message in a worker thread (zlib releases the GIL), so the event
        loop keeps serving others; messages sent meanwhile on this connection queue behind it."""
        while self.compressing is not None:
            await self.compressing
        self.compressing = done = self.loop.create_future()
        try:
            if self.closed or conn.close_sent:
                raise ClientDisconnected("the WebSocket connection is closed")
            opcode, payload = conn.encode_message(data)
            deflate = conn.deflate
            if deflate is not None and len(payload) >= OFFLOAD_COMPRESSION:
                compressed = await self.loop.run_in_executor(None, deflate.compress, payload)
                conn.send_compressed(opcode, compressed)
            else:
                conn.send_message(data)
        except ConnectionClosedError:
            raise ClientDisconnected("the WebSocket connection is closed") from None
        finally:
            self.compressing = None
            done.set_result(None)
        if not self.closed:
            self._write_counted(conn.data_to_send())

    def disconnect_delivered(self) -> None:
        """The app has seen websocket.disconnect: a failure's close frame may go out now."""
        conn = self.conn
        if conn is not None and not self.closed:
            conn.closed_delivered()
            self._process(conn)

    def close(self, code: int, reason: str) -> None:
        conn = self.conn
        if conn is None or conn.close_sent or self.closed or conn.state is State.CLOSED:
            return
        conn.send_close(code, reason)
        self._process(conn)
        if not self.closed and self.close_timer is None:
            self.close_timer = self.loop.call_later(CLOSE_TIMEOUT, self._close_timed_out)

    def message_consumed(self) -> None:
        self._resume_if_ready()

    def _resume_if_ready(self) -> None:
        """The app took a message or the peer read: parse what was held back, read again."""
        conn = self.conn
        if conn is None or self.closed or conn.state is State.CLOSED:
            return
        if conn.input_held and not self.session.queue_full:
            self._receive(conn, b"")
        else:
            self._update_reading()

    def _update_reading(self) -> None:
        """The one decision to read or not: read unless the app's queue is full or input is
        held back for it, the peer is not reading what we write, or reading is over."""
        conn = self.conn
        self._set_reading(conn is not None and not (
            self.write_paused or self.session.queue_full or conn.input_held or conn.close_transport_now()
        ))

    # -- timers ----------------------------------------------------------------------------
    def _send_keepalive_ping(self) -> None:
        """RFC 6455 §5.5.2: a ping the peer must answer; no pong in time means a dead peer."""
        self.ping_timer = None
        conn = self.conn
        if self.closed or conn is None or conn.state is not State.OPEN:
            return
        conn.send_ping(os.urandom(4))
        self._process(conn)
        if self.ping_timeout and self.pong_timer is None:
            self.pong_timer = self.loop.call_later(self.ping_timeout, self._keepalive_timed_out)
        if self.ping_interval:
            self.ping_timer = self.loop.call_later(self.ping_interval, self._send_keepalive_ping)

    def _pong_received(self) -> None:
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None

    def _keepalive_timed_out(self) -> None:
        self.pong_timer = None
        if self.metrics is not None:
            self.metrics.ws_keepalive_timeouts += 1
        error_logger.info("%s - WebSocket keepalive ping timed out: dropping the connection",
                          format_address(self.client))
        self.transport.abort()  # the app gets websocket.disconnect with 1006

    def _close_timed_out(self) -> None:
        self.close_timer = None
        if not self.closed:
            self.transport.abort()

    # -- helpers ---------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if not self.closed and data:
            self.transport.write(data)

    def _write_counted(self, data: bytes) -> None:
        """Write the frames of a message the app sent, counted for the metrics when they are on."""
        metrics = self.metrics
        if metrics is not None:
            metrics.ws_messages_out += 1
            metrics.ws_bytes_out += len(data)
        self.transport.write(data)

    def _close_transport(self) -> None:
        # Once: asyncio's TLS transport forgets its protocol when closed a second time, and
        # fails on the next call.
        if not self.closed and not self.transport.is_closing():
            self.transport.close()

    def _set_reading(self, reading: bool) -> None:
        if self.closed or reading != self.read_paused:
            return
        self.read_paused = not reading
        if reading:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()

    def shutdown(self, *, restart: bool = False) -> str:
        """The server drains: start the closing handshake with 1001 (going away), or 1012
        (service restart) when another process takes over (RFC 6455 §7.4.1, IANA registry);
        the app gets ``websocket.disconnect`` once the client answers. A connection whose
        handshake the app has not answered yet is closed so as soon as it is accepted."""
        self.shutting_down = True
        self.shutdown_close = ((CloseCode.SERVICE_RESTART, "server restarting") if restart
                               else (CloseCode.GOING_AWAY, "server shutting down"))
        conn = self.conn
        if conn is not None and conn.state is State.OPEN and not self.closed:
            self.close(*self.shutdown_close)
        return "websocket"
