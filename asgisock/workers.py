"""gunicorn worker classes: ``gunicorn -k asgisock.workers.AsgisockWorker main:app``.

gunicorn's arbiter binds the sockets, forks the workers and decides their lives; each worker
runs the ordinary :class:`~asgisock.server.Server` on the sockets it was given, with asgisock's
settings taken from gunicorn's (:func:`asgisock_settings`). The worker keeps gunicorn's side of
the contract, from its event loop, so that a blocked loop breaks it:

- ``notify()`` every :data:`TICK` seconds: the arbiter kills a worker silent for ``timeout``
  (with SIGABRT first, on which the worker logs where its event loop was blocked);
- SIGTERM drains (``graceful_timeout``), SIGINT and SIGQUIT stop at once, SIGUSR1 reopens the
  log files; past ``max_requests`` (plus its jitter) the worker drains and exits, and the
  arbiter starts another;
- a worker that cannot start (its lifespan startup failed, a setting is invalid) exits with
  gunicorn's ``WORKER_BOOT_ERROR`` (3), which stops the arbiter instead of a restart loop.

Logs go to gunicorn's: asgisock's error lines to gunicorn's error log, and the access lines,
in gunicorn's ``access_log_format`` (asgisock reads gunicorn's atoms), to its access log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import traceback
from types import FrameType
from typing import Any, Final

from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

from asgisock.binding import describe_listener
from asgisock.config import Config
from asgisock.exceptions import ConfigError
from asgisock.logging import access_logger, error_logger
from asgisock.server import Server, loop_factory

__all__ = ["AsgisockAsyncioWorker", "AsgisockWorker"]

TICK: Final = 0.1
"""How often, in seconds, the worker tells the arbiter it is alive and looks at its limits."""
DRAIN_MARGIN: Final = 2.0
"""Seconds of ``graceful_timeout`` kept after the drain's deadline, so that cutting what is
left and the lifespan shutdown end before the arbiter's SIGKILL."""


def asgisock_settings(cfg: Any) -> dict[str, Any]:
    """asgisock's settings from gunicorn's ``cfg``."""
    graceful = float(cfg.graceful_timeout)
    settings: dict[str, Any] = {
        "backlog": cfg.backlog,  # the server listens on the sockets again, with this backlog
        # gunicorn's 0 turns keep-alive off; asgisock's timeout also bounds a request head and a
        # TLS handshake, which need some time.
        "timeout_keep_alive": float(cfg.keepalive or 1),
        "timeout_graceful_shutdown": max(graceful - DRAIN_MARGIN, graceful / 2),
        "limit_concurrency": cfg.worker_connections or None,
        # gunicorn trusts the forwarding headers of every peer on a UNIX socket.
        "forwarded_allow_ips": ",".join([*cfg.forwarded_allow_ips, "unix:"]),
        "access_log_format": cfg.access_log_format,
        # gunicorn's settings for its own ASGI worker, since gunicorn 24.
        "root_path": getattr(cfg, "root_path", ""),
        "lifespan": getattr(cfg, "asgi_lifespan", "auto"),
    }
    if cfg.certfile:
        settings.update(ssl_certfile=cfg.certfile, ssl_keyfile=cfg.keyfile, ssl_ca_certs=cfg.ca_certs,
                        ssl_cert_reqs=int(cfg.cert_reqs), ssl_ciphers=cfg.ciphers)
    return settings


class ToLogger(logging.Handler):
    """Hands each record to another logger: asgisock's lines then go wherever gunicorn sends its
    own (a file, syslog, a ``logconfig``), formatted its way and reopened with them."""

    def __init__(self, target: logging.Logger) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.handle(record)


def route_logs(log: Any) -> bool:
    """Send ``asgisock.error`` and ``asgisock.access`` to gunicorn's error and access loggers;
    whether gunicorn's access log goes anywhere (without ``--access-logfile`` it does not)."""
    error = getattr(log, "error_log", None) or logging.getLogger("gunicorn.error")
    access = getattr(log, "access_log", None) or logging.getLogger("gunicorn.access")
    for ours, theirs in ((error_logger, error), (access_logger, access)):
        ours.handlers[:] = [ToLogger(theirs)]
        ours.propagate = False
        ours.setLevel(theirs.getEffectiveLevel())
    return access.hasHandlers()


class AsgisockWorker(Worker):  # type: ignore[misc]  # gunicorn has no type hints: Worker is Any
    """asgisock as a gunicorn worker, on uvloop when it is installed."""

    loop_name = "auto"

    def load_wsgi(self) -> None:
        """The app, loaded by gunicorn as for any worker (``--preload``, ``--chdir``,
        ``module:factory()``); an app that cannot be loaded is a boot failure, also with
        ``--reload`` (whose stand-in for a broken app is a WSGI one)."""
        self.wsgi = self.app.wsgi()

    def run(self) -> None:
        access_log = route_logs(self.log)
        try:
            config = Config(self.wsgi, loop=self.loop_name, access_log=access_log,
                            **asgisock_settings(self.cfg))
        except ConfigError as exc:
            self.log.error("Cannot serve with gunicorn's settings: %s", exc)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
        server = Server(config, announce=False, signals=False, on_started=self._started)
        with asyncio.Runner(loop_factory=loop_factory(config.loop)) as runner:
            runner.run(self._serve(server))
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            # Done: a late stop signal (systemd's to every process of the service, then the
            # arbiter's own) must not turn the exit into a death by signal.
            signal.signal(sig, signal.SIG_IGN)
        if server.exit_code and not server.started and self.alive:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)  # not asked to stop: it could not start

    async def _serve(self, server: Server) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop, server, False)
        loop.add_signal_handler(signal.SIGINT, self._stop, server, True)
        loop.add_signal_handler(signal.SIGQUIT, self._stop, server, True)
        loop.add_signal_handler(signal.SIGUSR1, self.log.reopen_files)
        watch = loop.create_task(self._watch(server))
        try:
            await server.serve([listener.sock for listener in self.sockets])
        finally:
            watch.cancel()

    def handle_abort(self, sig: int, frame: FrameType | None) -> None:
        """SIGABRT, the arbiter's answer to a missed heartbeat, run by the interpreter between two
        bytecodes of whatever blocks the event loop: say where that is, and leave (a SystemExit
        would unwind through the app's code and the event loop)."""
        self.alive = False
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no Python frame)\n"
        self.log.error("The event loop was blocked for more than timeout (%ss), at:\n%s", self.cfg.timeout,
                       stack.rstrip("\n"))
        self.cfg.worker_abort(self)
        os._exit(1)

    def _started(self, server: Server) -> None:
        self.log.info("asgisock serving on %s (pid: %s)", describe_listener(server.config, server.sockets),
                      self.pid)

    def _stop(self, server: Server, quick: bool) -> None:
        """SIGTERM: drain; SIGINT, SIGQUIT: stop at once."""
        self.alive = False
        if quick and not server.force_exit:
            self.cfg.worker_int(self)
        server.stop(force=quick)

    async def _watch(self, server: Server) -> None:
        """From the event loop: the heartbeat, a stop asked while the loop could not hear it (a
        signal during the boot, gunicorn's ``--reload``), and ``max_requests``."""
        while True:
            self.notify()
            if not server.should_exit:
                if not self.alive:
                    server.stop()
                elif server.state is not None and server.state.requests >= self.max_requests:
                    self.log.info("Served %d requests (max_requests %d): restarting", server.state.requests,
                                  self.max_requests)
                    self.alive = False
                    server.stop(restart=True)  # another worker takes over: WebSockets get 1012
            await asyncio.sleep(TICK)


class AsgisockAsyncioWorker(AsgisockWorker):
    """asgisock as a gunicorn worker, on asyncio's own event loop."""

    loop_name = "asyncio"
