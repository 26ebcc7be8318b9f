"""What every connection of one server shares."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from asgisock.config import Config
from asgisock.http11.events import Request
from asgisock.http11.writer import DefaultHeaders
from asgisock.logging import AccessLog, access_log_enabled
from asgisock.metrics import Metrics, Snapshot
from asgisock.types import ASGIApp


class Upgrade(NamedTuple):
    """A connection the HTTP/1.1 protocol hands to the protocol a request upgrades to
    (RFC 9110 §7.8): everything the new protocol needs, so that it never reaches into the old."""

    transport: asyncio.Transport
    request: Request
    """The upgrade request, whose head is all read."""
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    scheme: str
    """``http`` or ``https``."""
    leftover: bytes
    """What the client sent after the request head: the new protocol's first bytes."""
    tls: dict[str, Any] | None = None
    """The ASGI ``tls`` extension of a TLS connection."""


class Arriving(Protocol):
    """A connection on :class:`Arrivals`."""

    def arrival_due(self) -> None:
        """Its first deadline has come: check it as its own timer would."""


class Arrivals:
    """The first deadline of the new connections, all on one timer.

    A new connection has the keep-alive timeout to send its first request head, as between two
    requests. A timer of its own would cost each connection some 15,000 instructions (a tenth
    of one that carries a request and closes, ``bench/instructions.py --close``: uvloop's
    timer is a libuv handle, allocated, started and closed), when most of them have sent
    their head before it could fire. With one timeout for all, connections fall due in the
    order they arrive: an insertion-ordered ``dict`` is the queue, its first entry the next
    deadline, and a connection leaves it when it is lost, or hands over to another protocol.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.waiting: dict[Arriving, float] = {}
        """Each connection and when it arrived, oldest first."""
        self.timer: asyncio.TimerHandle | None = None

    def add(self, connection: Arriving, now: float) -> None:
        self.waiting[connection] = now
        if self.timer is None:
            self.timer = self.loop.call_at(now + self.timeout, self._due)

    def discard(self, connection: Arriving) -> None:
        self.waiting.pop(connection, None)

    def _due(self) -> None:
        self.timer = None
        waiting = self.waiting
        now = self.loop.time()
        while waiting:
            connection, arrived = next(iter(waiting.items()))
            due = arrived + self.timeout
            if due > now:
                self.timer = self.loop.call_at(due, self._due)
                return
            del waiting[connection]
            connection.arrival_due()


class ServerState:
    """Live connections and tasks (for limits and shutdown), the app and its lifespan state."""

    def __init__(self, config: Config, app: ASGIApp, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.app = app
        self.loop = loop
        self.connections: set[Any] = set()
        """Protocol instances with a live transport; each has ``shutdown()``."""
        self.arrivals = Arrivals(loop, config.timeout_keep_alive)
        self.tasks: set[asyncio.Task[None]] = set()
        self.requests = 0
        """Requests started (WebSocket handshakes included), for ``--limit-max-requests``."""
        self.draining = False
        """The server is shutting down: a connection accepted now carries one request at most."""
        self.app_state: dict[str, Any] = {}
        """The lifespan ``state`` namespace; every scope gets a shallow copy."""
        self.defaults = DefaultHeaders(
            server=config.server_header, clock=time.time if config.date_header else None,
            extra=config.header_pairs,
        )
        self.access_log = (AccessLog(config.access_log_format, loop)
                           if config.access_log and access_log_enabled() else None)
        """Writes the access lines; None with ``--no-access-log``, or when the access logger's
        level is above INFO as the server starts (``--log-level warning``)."""
        self.trusted = config.trusted_proxies if config.proxy_headers else None
        """Whose forwarding fields are honoured; None with ``--no-proxy-headers``."""
        self.upgrade: Callable[[Upgrade], None] | None = None
        """Takes over a connection upgraded to WebSocket; None serves upgrade requests as HTTP.
        Set by the server, so that the HTTP/1.1 protocol needs no import of the WebSocket one."""
        self.metrics = Metrics() if config.metrics_port is not None else None
        """What the connections count for ``--metrics-port``; None without it."""

    def metrics_snapshot(self) -> Snapshot:
        """The figures now, with the gauges read from the live connections rather than counted
        per request. Safe from another thread (the metrics listener's): what the event loop
        changes in size (the connections, the methods seen) is copied in one step before it is
        read."""
        assert self.metrics is not None
        connections = list(self.connections)
        http = [connection for connection in connections if connection.kind == "http"]
        return self.metrics.snapshot(
            requests_in_flight=sum(connection.cycle is not None for connection in http),
            http_connections=len(http), websocket_connections=len(connections) - len(http))
