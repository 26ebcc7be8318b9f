"""One worker process of the supervisor (``python -m asgisock.worker FD``).

A worker is the ordinary single-process :class:`~asgisock.server.Server` on the sockets the
supervisor bound (or, with ``--reuse-port``, on its own ``SO_REUSEPORT`` socket), plus its end
of the :class:`~asgisock.link.Link`: it says ``ready`` once it listens, beats from its event
loop, asks to be replaced when it passed ``--limit-max-requests`` or ``--limit-max-rss``, and
stops on ``restart`` (WebSockets get 1012), on ``stop`` or SIGTERM (1001; the same stop asked
both ways is one stop), at once on ``force``, or when the supervisor is gone.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import sys
from typing import Any

from asgisock.binding import bind_sockets
from asgisock.config import Config
from asgisock.exceptions import EXIT_IMPORT_ERROR, AppImportError, ConfigError
from asgisock.link import Link, LinkClosed
from asgisock.logging import configure_logging, error_logger
from asgisock.server import Server, loop_factory

ORDER_TIMEOUT = 30.0
"""Seconds a new worker waits for its order before it gives up."""


class Worker:
    """The worker's side of the link, around a server."""

    def __init__(self, server: Server, link: Link, order: dict[str, Any]) -> None:
        self.server = server
        self.link = link
        self.beat_every: float = order["beat_every"]
        self.max_requests: int | None = order["max_requests"]
        self.max_rss: int | None = server.config.limit_max_rss
        self.recycling = False

    async def serve(self, sockets: list[socket.socket]) -> None:
        loop = asyncio.get_running_loop()
        self.server.on_started = self._started
        loop.add_reader(self.link.fileno(), self._read)
        if self.link.has_kept:
            loop.call_soon(self._read)  # a stop sent along with the order
        beat = loop.create_task(self._beat())
        try:
            await self.server.serve(sockets)
        finally:
            beat.cancel()
            loop.remove_reader(self.link.fileno())

    def _started(self, server: Server) -> None:
        self.link.send("ready")

    async def _beat(self) -> None:
        """The heartbeat, from the event loop: a loop blocked by the app stops it."""
        while True:
            await asyncio.sleep(self.beat_every)
            if self.server.started:
                self.link.send("beat")
                self._check_limits()

    def _check_limits(self) -> None:
        state = self.server.state
        if self.recycling or state is None or self.server.should_exit:
            return
        reason = None
        if self.max_requests is not None and state.requests >= self.max_requests:
            reason = f"served {state.requests} requests (--limit-max-requests)"
        elif self.max_rss is not None and (rss := resident_mib()) > self.max_rss:
            reason = f"uses {rss:.0f} MiB (--limit-max-rss {self.max_rss})"
        if reason is not None:
            self.recycling = self.link.send("recycle", reason)

    def _read(self) -> None:
        try:
            messages = self.link.receive()
        except LinkClosed:
            asyncio.get_running_loop().remove_reader(self.link.fileno())
            if not self.server.should_exit:
                error_logger.warning("The supervisor is gone: shutting down")
                self.server.stop()
            return
        server = self.server
        for kind, _ in messages:
            if kind == "restart" and not server.should_exit:
                server.stop(restart=True)
            elif kind == "stop":
                server.stop()
            elif kind == "force":
                server.stop(force=True)


def resident_mib() -> float:
    """This process's resident memory in MiB (Linux: now; elsewhere: the peak so far)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return float(peak / 2**20 if sys.platform == "darwin" else peak / 2**10)


def worker_sockets(config: Config, order: dict[str, Any]) -> list[socket.socket]:
    if order["reuse_port"]:
        return bind_sockets(config, port=order["port"], reuse_port=True)
    return [socket.socket(fileno=fd) for fd in order["fds"]]


def main(argv: list[str]) -> None:
    link = Link(socket.socket(fileno=int(argv[0])))
    order = json.loads(link.wait_for("order", ORDER_TIMEOUT))
    config = Config(order["app"], **order["settings"])
    configure_logging(config.log_level, config.log_config, config.access_log, use_colours=config.use_colors)
    server = Server(config, announce=False)
    try:
        sockets = worker_sockets(config, order)
        with asyncio.Runner(loop_factory=loop_factory(config.loop, config.app_dir)) as runner:
            runner.run(Worker(server, link, order).serve(sockets))
    except AppImportError as exc:
        error_logger.error("Error loading ASGI app. %s", exc)
        sys.exit(EXIT_IMPORT_ERROR)
    except (OSError, ConfigError) as exc:
        error_logger.error("Cannot listen on %s: %s", config.bind_description, exc)
        sys.exit(EXIT_IMPORT_ERROR)
    except KeyboardInterrupt:
        pass
    sys.exit(server.exit_code)


if __name__ == "__main__":
    main(sys.argv[1:])
