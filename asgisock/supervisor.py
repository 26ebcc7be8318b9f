"""The supervisor of ``--workers N``: binds once, keeps N workers serving, never imports the app.

Each worker is a fresh interpreter (``python -m asgisock.worker``) running the ordinary server
on the sockets bound here, which it inherits; with ``--reuse-port`` each binds its own
``SO_REUSEPORT`` socket on the port reserved here. The supervisor itself is one thread around
``select()``: the links to the workers, and a pipe that signals write to (``set_wakeup_fd``).

- A worker that dies is replaced at once, and the log says how it died; when workers keep
  dying young the next start waits, twice as long each time up to :data:`BACKOFF_MAX`. A worker
  whose lifespan startup fails (exit 3), or that cannot load the app at the first start
  (exit 1), stops the server with its code: starting it again cannot help.
- A serving worker whose heartbeat stops for ``--timeout-worker-healthcheck`` seconds (its
  event loop is blocked) is killed, and so replaced. A worker still starting is left alone.
- SIGINT/SIGTERM stop every worker gracefully (their drain is bounded by
  ``--timeout-graceful-shutdown``); a second one makes them stop at once. SIGHUP replaces the
  workers one at a time, each new one serving before its old one is told to stop (its
  WebSockets get 1012). SIGTTIN and SIGTTOU add and remove a worker. A worker past
  ``--limit-max-requests`` or ``--limit-max-rss`` is replaced the same way as on SIGHUP.
- ``--metrics-port`` is served here, from a thread: each scrape asks every worker for its
  figures over the link and sums the answers, with the counters of the workers gone, which
  are kept, so that a worker replaced makes no counter go backwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from asgisock.binding import bind_sockets, describe_listener
from asgisock.config import SETTINGS, Config
from asgisock.exceptions import EXIT_IMPORT_ERROR, EXIT_STARTUP_FAILED, ConfigError
from asgisock.exposition import MetricsListener
from asgisock.link import Link, LinkClosed
from asgisock.logging import error_logger
from asgisock.metrics import Counters, Snapshot, add, total, zero_counters

TICK = 0.05
"""The longest the supervisor sleeps between two looks at its workers."""
BACKOFF_FIRST = 0.5
"""Seconds before restarting a worker that died young right after another one did."""
BACKOFF_MAX = 10.0
STABLE_AFTER = 10.0
"""A worker that served this many seconds before it died ends a crash loop."""
KILL_MARGIN = 5.0
"""Seconds past the drain's deadline before a worker still stopping is killed."""
FORCE_GRACE = 2.0
"""Seconds a worker told to stop at once (a second signal) has before it is killed."""
GATHER_TIMEOUT = 1.0
"""Seconds a scrape waits for the workers' figures; one slower than that (its event loop is
blocked) is counted with the last figures it sent."""

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD)


@dataclass(eq=False)
class WorkerProcess:
    process: subprocess.Popen[bytes]
    link: Link
    started: float
    replaces: WorkerProcess | None = None
    """The worker this one takes over from, until it serves (a rolling restart)."""
    ready: bool = False
    last_beat: float = 0.0
    stopping_since: float | None = None
    """When it was told to stop; it is no longer counted among the N."""
    killed: bool = False
    figures: Snapshot | None = None
    """The last figures it sent, for ``--metrics-port``."""

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass(eq=False)
class Gathering:
    """One round of asking the workers for their figures, for the scrapes that came before it."""

    scrapes: list[Future[Snapshot]]
    waiting: set[WorkerProcess]
    """The workers asked that have not answered yet."""
    deadline: float


@dataclass
class Supervisor:
    config: Config
    target: int = 0
    workers: list[WorkerProcess] = field(default_factory=list)
    sockets: list[socket.socket] = field(default_factory=list)
    exit_code: int = 0
    stopping: bool = False
    stop_deadline: float = 0.0
    crashes: int = 0
    next_start: float = 0.0
    ever_ready: bool = False
    announced: bool = False
    to_replace: deque[WorkerProcess] = field(default_factory=deque)
    signals: deque[int] = field(default_factory=deque)
    changes: deque[list[str]] = field(default_factory=deque)
    """Batches of changed files, from the ``--reload`` watcher's thread."""
    restarting_all: bool = False
    """A SIGHUP's or a change's restart of every worker is under way."""
    waiting_for_change: bool = False
    """``--reload``: the app failed to start; no worker is started until the files change."""
    retired: Counters = field(default_factory=zero_counters)
    """The counters of the workers gone (``--metrics-port``)."""
    scrapes: deque[Future[Snapshot]] = field(default_factory=deque)
    """Scrapes waiting, put here by the metrics endpoint's threads."""
    gathering: Gathering | None = None
    wake_fd: int | None = None
    """Written to wake ``select()`` from another thread."""

    def __post_init__(self) -> None:
        self.target = self.config.workers or 1
        self.selector = selectors.DefaultSelector()

    # -- running -----------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until stopped; the exit code."""
        config = self.config
        if not isinstance(config.app, str):
            raise ConfigError("--workers", "needs the app as an import string ('module:attribute')")
        try:
            # With --reuse-port the port is only reserved here (bound, not listening), so that
            # every worker's own socket takes the same one, and it stays taken between workers.
            self.sockets = bind_sockets(config, reuse_port=config.reuse_port, listen=not config.reuse_port)
        except (OSError, ConfigError) as exc:
            error_logger.error("Cannot listen on %s: %s", config.bind_description, exc)
            return EXIT_IMPORT_ERROR
        try:
            endpoint = self._metrics_endpoint()
        except OSError as exc:
            error_logger.error("Cannot serve metrics on %s port %d: %s", config.metrics_host, config.metrics_port, exc)
            self._close()
            return EXIT_IMPORT_ERROR
        error_logger.info("Started supervisor process [%d] for %d workers", os.getpid(), self.target)
        try:
            with self._signals(), self._watching():
                self._loop()
        finally:
            self._close()
            if endpoint is not None:
                self._answer_scrapes()  # nothing is left to wait for
                endpoint.close()
        error_logger.info("Finished supervisor process [%d]", os.getpid())
        return self.exit_code

    def _loop(self) -> None:
        while True:
            for key, _ in self.selector.select(TICK):
                key.data()
            self._handle_signals()
            self._reap()
            now = time.monotonic()
            self._gather(now)
            if self.stopping:
                if not self.workers:
                    return
                self._kill_overdue(now, self.stop_deadline)
                continue
            self._check_health(now)
            self._replace_next()
            self._keep_count(now)

    def _close(self) -> None:
        for worker in self.workers:  # only after an error in the loop itself
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
            worker.process.wait()
        for sock in self.sockets:
            sock.close()
        if self.config.uds and self.config.fd is None:
            with contextlib.suppress(OSError):
                os.unlink(self.config.uds)

    # -- signals -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """Signals only record themselves and wake ``select()`` through a pipe."""
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        self.selector.register(wake_read, selectors.EVENT_READ, lambda: _drain(wake_read))
        previous_fd = signal.set_wakeup_fd(wake_write)
        self.wake_fd = wake_write
        previous = {sig: signal.signal(sig, self._record) for sig in SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            self.wake_fd = None
            self.selector.unregister(wake_read)
            os.close(wake_read)
            os.close(wake_write)

    @contextlib.contextmanager
    def _watching(self) -> Iterator[None]:
        """``--reload``: the watcher's thread hands batches of changes over through a pipe."""
        if not self.config.reload:
            yield
            return
        from asgisock.reload import Watcher

        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        self.selector.register(wake_read, selectors.EVENT_READ, lambda: self._changed(wake_read))

        def changed(paths: list[str]) -> None:
            self.changes.append(paths)
            os.write(wake_write, b"!")

        watcher = Watcher(self.config, changed)
        watcher.start()
        try:
            yield
        finally:
            watcher.stop()
            self.selector.unregister(wake_read)
            os.close(wake_read)
            os.close(wake_write)

    def _changed(self, wake_read: int) -> None:
        _drain(wake_read)
        paths = [path for batch in self.changes for path in batch]
        self.changes.clear()
        if not paths or self.stopping:
            return
        shown = ", ".join(os.path.relpath(path) for path in paths[:3]) + (" ..." if len(paths) > 3 else "")
        error_logger.info("Changes detected in %s: restarting", shown)
        self.crashes = 0
        self.next_start = 0.0
        if self.waiting_for_change:
            self.waiting_for_change = False  # the workers start afresh
            return
        serving = [w for w in self.workers if w.stopping_since is None]
        for worker in serving:
            if worker.replaces is not None:  # still starting with code older than the change
                self._signal(worker, signal.SIGKILL)
                worker.stopping_since = time.monotonic()
        self.to_replace = deque(w for w in serving if w.replaces is None)
        self.restarting_all = bool(self.to_replace)

    def _record(self, sig: int, frame: Any) -> None:
        if sig != signal.SIGCHLD:
            self.signals.append(sig)

    def _handle_signals(self) -> None:
        while self.signals:
            sig = self.signals.popleft()
            if sig in (signal.SIGINT, signal.SIGTERM):
                self._stop_all(signal.Signals(sig).name)
            elif self.stopping:
                continue
            elif sig == signal.SIGHUP:
                serving = [w for w in self.workers if w.stopping_since is None and w.replaces is None]
                error_logger.info("SIGHUP: replacing %d workers one at a time", len(serving))
                self.to_replace.extend(w for w in serving if w not in self.to_replace)
                self.restarting_all = bool(self.to_replace)
            elif sig == signal.SIGTTIN:
                self.target += 1
                error_logger.info("SIGTTIN: %d workers", self.target)
            elif sig == signal.SIGTTOU and self.target > 1:
                self.target -= 1
                error_logger.info("SIGTTOU: %d workers", self.target)

    def _stop_all(self, why: str) -> None:
        now = time.monotonic()
        if self.stopping:
            error_logger.info("%s again: stopping the workers at once", why)
            for worker in self.workers:
                self._tell(worker, "force")
            self.stop_deadline = min(self.stop_deadline, now + FORCE_GRACE)
            return
        self.stopping = True
        self.stop_deadline = now + self.config.timeout_graceful_shutdown + KILL_MARGIN
        error_logger.info("%s: stopping %d workers", why, len(self.workers))
        for worker in self.workers:
            if worker.stopping_since is None:
                worker.stopping_since = now
                self._tell(worker, "stop")

    # -- workers -----------------------------------------------------------------------------
    def _start(self, replaces: WorkerProcess | None = None) -> WorkerProcess | None:
        parent, child = socket.socketpair()
        fds = [] if self.config.reuse_port else [sock.fileno() for sock in self.sockets]
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "asgisock.worker", str(child.fileno())],
                pass_fds=(child.fileno(), *fds), stdin=subprocess.DEVNULL,
                process_group=0,  # a terminal's Ctrl+C reaches the supervisor only, which stops them
            )
        except OSError as exc:
            error_logger.error("Cannot start a worker: %s", exc)
            parent.close()
            self.next_start = time.monotonic() + BACKOFF_FIRST
            return None
        finally:
            child.close()
        link = Link(parent)
        link.send("order", json.dumps(self._order(fds)))
        worker = WorkerProcess(process, link, time.monotonic(), replaces=replaces)
        self.selector.register(link.fileno(), selectors.EVENT_READ, lambda: self._read(worker))
        self.workers.append(worker)
        return worker

    def _order(self, fds: list[int]) -> dict[str, Any]:
        config = self.config
        max_requests = config.limit_max_requests
        if max_requests is not None:
            max_requests += random.randint(0, config.limit_max_requests_jitter)
        return {
            "app": config.app,
            "settings": {name: getattr(config, name) for name in SETTINGS},
            "fds": fds,
            "reuse_port": config.reuse_port,
            "port": self.sockets[0].getsockname()[1] if config.reuse_port else None,
            "beat_every": min(0.25, config.timeout_worker_healthcheck / 4),
            "max_requests": max_requests,
        }

    def _read(self, worker: WorkerProcess) -> None:
        try:
            messages = worker.link.receive()
        except LinkClosed:
            self.selector.unregister(worker.link.fileno())
            return
        for kind, argument in messages:
            if kind == "beat":
                worker.last_beat = time.monotonic()
            elif kind == "ready":
                self._ready(worker)
            elif kind == "recycle" and worker.stopping_since is None and worker not in self.to_replace:
                error_logger.info("Worker [%d] %s: replacing it", worker.pid, argument)
                self.to_replace.append(worker)
            elif kind == "metrics":
                self._figures_from(worker, argument)

    def _ready(self, worker: WorkerProcess) -> None:
        worker.ready = self.ever_ready = True
        worker.last_beat = time.monotonic()
        error_logger.info("Worker [%d] serving", worker.pid)
        old, worker.replaces = worker.replaces, None
        if old is not None and old in self.workers and old.stopping_since is None:
            error_logger.info("Worker [%d] takes over from worker [%d]", worker.pid, old.pid)
            self._retire(old)
        if old is not None and self.restarting_all and not self.to_replace:
            self.restarting_all = False
            error_logger.info("Restart done: every worker replaced")
        serving = sum(w.ready and w.stopping_since is None for w in self.workers)
        if not self.announced and serving >= self.target:
            self.announced = True
            error_logger.info("asgisock running on %s (Press CTRL+C to quit)",
                              describe_listener(self.config, self.sockets))

    def _retire(self, worker: WorkerProcess) -> None:
        """Stop ``worker`` because another process takes over: its WebSockets get 1012."""
        worker.stopping_since = time.monotonic()
        self._tell(worker, "restart")

    def _tell(self, worker: WorkerProcess, command: str) -> None:
        """``stop``, ``restart`` or ``force``, over the link rather than as a signal: a worker
        that got the same SIGTERM straight from a service manager (systemd signals the whole
        control group) must not take ours for a second one. SIGTERM when the link is gone."""
        if not worker.link.send(command):
            self._signal(worker, signal.SIGTERM)

    def _signal(self, worker: WorkerProcess, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            worker.process.send_signal(sig)

    def _kill(self, worker: WorkerProcess, why: str, *args: Any) -> None:
        error_logger.warning("Worker [%d] " + why + ": killing it", worker.pid, *args)
        worker.killed = True
        self._signal(worker, signal.SIGKILL)

    def _reap(self) -> None:
        for worker in list(self.workers):
            code = worker.process.poll()
            if code is None:
                continue
            self.workers.remove(worker)
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(worker.link.fileno())
            self._retire_figures(worker)
            worker.link.close()
            self._exited(worker, code)

    def _exited(self, worker: WorkerProcess, code: int) -> None:
        how = describe_exit(code)
        if worker.stopping_since is not None or self.stopping:
            error_logger.info("Worker [%d] stopped (%s)", worker.pid, how)
            return
        if worker.replaces is not None:
            error_logger.error("Worker [%d] %s before serving: restart abandoned, the old workers keep serving%s",
                               worker.pid, how, " until the next change" if self.config.reload else "")
            self.to_replace.clear()
            self.restarting_all = False
            return
        if not worker.ready and self.config.reload:
            error_logger.error("Worker [%d] %s at startup: waiting for a change to the files", worker.pid, how)
            self.waiting_for_change = True
            return
        if not worker.ready and (code == EXIT_STARTUP_FAILED or (code == EXIT_IMPORT_ERROR and not self.ever_ready)):
            error_logger.error("Worker [%d] %s at startup: stopping, as a new worker would fail the same way",
                               worker.pid, how)
            self.exit_code = code
            self._stop_all("Startup failed")
            return
        now = time.monotonic()
        if worker.ready and now - worker.started >= STABLE_AFTER:
            self.crashes = 0
        self.crashes += 1
        delay = 0.0 if self.crashes == 1 else min(BACKOFF_FIRST * 2 ** (self.crashes - 2), BACKOFF_MAX)
        self.next_start = now + delay
        error_logger.warning("Worker [%d] died (%s); starting a new one%s", worker.pid, how,
                             f" in {delay:g} s (it keeps dying)" if delay else "")

    def _check_health(self, now: float) -> None:
        limit = self.config.timeout_worker_healthcheck
        for worker in self.workers:
            if worker.ready and not worker.killed and now - worker.last_beat > limit:
                self._kill(worker, "sent no heartbeat for %.1f s", now - worker.last_beat)
        self._kill_overdue(now, None)

    def _kill_overdue(self, now: float, deadline: float | None) -> None:
        """Kill the workers still stopping past ``deadline``, or past their own drain's
        deadline and a margin."""
        allowed = self.config.timeout_graceful_shutdown + KILL_MARGIN
        for worker in self.workers:
            since = worker.stopping_since
            if since is not None and not worker.killed and now > (since + allowed if deadline is None else deadline):
                self._kill(worker, "still stopping after %.1f s", now - since)

    def _replace_next(self) -> None:
        """One replacement at a time: start the next old worker's successor."""
        if any(w.replaces is not None for w in self.workers):
            return
        while self.to_replace:
            old = self.to_replace.popleft()
            if old in self.workers and old.stopping_since is None:
                self._start(replaces=old)
                return

    def _keep_count(self, now: float) -> None:
        """Start workers up to the target, and retire the newest ones beyond it."""
        regular = [w for w in self.workers if w.stopping_since is None and w.replaces is None]
        missing = self.target - len(regular)
        if missing > 0 and now >= self.next_start and not self.waiting_for_change:
            for _ in range(missing):
                if self._start() is None:
                    break
        for worker in regular[self.target:]:
            self._retire(worker)

    # -- metrics ---------------------------------------------------------------------------
    def _metrics_endpoint(self) -> MetricsListener | None:
        config = self.config
        if config.metrics_port is None:
            return None
        endpoint = MetricsListener(config.metrics_host, config.metrics_port, self._scrape)
        error_logger.info("Metrics on %s", endpoint.url)
        return endpoint

    def _scrape(self) -> Snapshot:
        """The server's figures, for one scrape, in the endpoint's thread: the supervisor's own
        thread, which alone uses the links, gathers them (:meth:`_gather`)."""
        scrape: Future[Snapshot] = Future()
        self.scrapes.append(scrape)
        if self.wake_fd is not None:
            with contextlib.suppress(OSError):  # full: select() is woken already
                os.write(self.wake_fd, b"m")
        return scrape.result(GATHER_TIMEOUT + 2.0)

    def _gather(self, now: float) -> None:
        """Ask every worker for its figures for the scrapes waiting, and answer them once all
        have answered or :data:`GATHER_TIMEOUT` has passed."""
        gathering = self.gathering
        if gathering is None:
            if not self.scrapes:
                return
            scrapes = [self.scrapes.popleft() for _ in range(len(self.scrapes))]
            # A worker still loading the app reads no link yet, and has counted nothing.
            waiting = {worker for worker in self.workers if worker.ready and worker.link.send("metrics")}
            self.gathering = gathering = Gathering(scrapes, waiting, now + GATHER_TIMEOUT)
        if gathering.waiting and now < gathering.deadline:
            return
        figures = self._figures()
        for scrape in gathering.scrapes:
            scrape.set_result(figures)
        self.gathering = None

    def _answer_scrapes(self) -> None:
        """Answer every scrape still waiting with the figures at hand: the supervisor stops."""
        figures = self._figures()
        waiting = self.gathering.scrapes if self.gathering is not None else []
        self.gathering = None
        while self.scrapes:
            waiting.append(self.scrapes.popleft())
        for scrape in waiting:
            scrape.set_result(figures)

    def _figures(self) -> Snapshot:
        return total((worker.figures for worker in self.workers if worker.figures is not None), self.retired)

    def _figures_from(self, worker: WorkerProcess, argument: str) -> None:
        try:
            worker.figures = json.loads(argument)
        except ValueError:
            return  # a line cut short: the last figures stand
        if self.gathering is not None:
            self.gathering.waiting.discard(worker)

    def _retire_figures(self, worker: WorkerProcess) -> None:
        """A worker is gone: read the last figures it sent as it stopped, and keep its counters."""
        if self.config.metrics_port is None:
            return
        with contextlib.suppress(LinkClosed):
            while messages := worker.link.receive():
                for kind, argument in messages:
                    if kind == "metrics":
                        self._figures_from(worker, argument)
        if worker.figures is not None:
            self.retired = add(self.retired, worker.figures["counters"])
        if self.gathering is not None:
            self.gathering.waiting.discard(worker)


def describe_exit(code: int) -> str:
    """A child's exit status as a person reads it: ``exit code 3``, ``killed by signal SIGKILL``."""
    if code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = str(-code)
    return f"killed by signal {name}"


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 4096):
            pass


def supervise(config: Config) -> int:
    """Run the supervisor for ``config``; the process's exit code."""
    return Supervisor(config).run()

