"""The server: listening sockets, signals, graceful shutdown; and :func:`run`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import os
import signal
import socket
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from asgisock.allocator import tune_heap
from asgisock.binding import bind_sockets, describe_listener
from asgisock.config import Config, environ_settings
from asgisock.envfile import load_env_file
from asgisock.exceptions import EXIT_IMPORT_ERROR, EXIT_STARTUP_FAILED, AppImportError, ConfigError
from asgisock.exposition import MetricsListener, require_client
from asgisock.importer import import_from_path, is_asgi3, load_app
from asgisock.lifespan import Lifespan
from asgisock.logging import configure_logging, error_logger
from asgisock.supervisor import supervise
from asgisock.transport.accept import Acceptor
from asgisock.transport.addresses import listening_address
from asgisock.transport.http import HTTPProtocol
from asgisock.transport.state import ServerState
from asgisock.transport.tls import Certificates
from asgisock.transport.websocket import upgrade_to_websocket
from asgisock.types import ASGIApp, Receive, Send

TICK = 0.1
CUT_GRACE = 0.5
"""Seconds the apps of connections cut at the drain's deadline have to end on their own, having
seen the disconnect, before their tasks are cancelled."""
"""How often the main loop looks at ``should_exit`` (set by signals or by an embedding program)."""
CERTIFICATE_CHECK = 1.0
"""How often, in seconds, the TLS certificate files are looked at for a change."""


class Server:
    """Serve ``config.app`` until ``should_exit`` is set.

    Embed it in a running loop with ``await Server(Config(app)).serve()``; set ``should_exit``
    to stop gracefully, and ``force_exit`` to stop without waiting for in-flight requests.
    """

    def __init__(self, config: Config, *, on_started: Callable[[Server], None] | None = None,
                 announce: bool = True, signals: bool = True, serve_metrics: bool = True) -> None:
        self.config = config
        self.on_started = on_started
        """Called once the sockets listen (tests use it to learn the port)."""
        self.announce = announce
        """Log where the server listens (a supervisor's worker leaves it to the supervisor)."""
        self.signals = signals
        """Handle SIGINT, SIGTERM and SIGHUP while serving; a host process with signals of its
        own (the gunicorn worker) passes False and calls :meth:`stop` itself."""
        self.serve_metrics = serve_metrics
        """Serve ``--metrics-port`` (a supervisor's worker only counts: the supervisor serves)."""
        self.metrics_endpoint: MetricsListener | None = None
        self.should_exit = False
        self.force_exit = False
        self.started = False
        self.exit_code = 0
        self.servers: list[asyncio.Server | Acceptor] = []
        self.certificates: Certificates | None = None
        """The TLS certificate in use, with ``--ssl-certfile``."""
        self.state: ServerState | None = None
        self.lifespan: Lifespan | None = None
        self.restarting = False
        self._exit_signals = 0
        """The shutdown is a restart: another process takes over (see :meth:`stop`)."""
        self._wakeup: asyncio.Event | None = None
        self._bound_uds: str | None = None
        """The UNIX socket file this server created, and removes on exit."""
        self._cut_connections: list[Any] = []

    @property
    def sockets(self) -> list[socket.socket]:
        return [sock for server in self.servers for sock in server.sockets]

    def run(self, sockets: Sequence[socket.socket] | None = None) -> None:
        with asyncio.Runner(loop_factory=loop_factory(self.config.loop, self.config.app_dir)) as runner:
            runner.run(self.serve(sockets))

    async def serve(self, sockets: Sequence[socket.socket] | None = None) -> None:
        tune_heap()  # every process that serves: alone, a worker, or gunicorn's
        with self._capture_signals():
            try:
                await self._serve(sockets)
            finally:
                if self.metrics_endpoint is not None:
                    self.metrics_endpoint.close()

    async def _serve(self, sockets: Sequence[socket.socket] | None) -> None:
        config = self.config
        app = _asgi3(load_app(config.app, factory=config.factory, app_dir=config.app_dir), config.interface)
        loop = asyncio.get_running_loop()
        self.state = state = ServerState(config, app, loop)
        if config.ws != "none":
            # The HTTP/1.1 protocol hands upgraded connections to the WebSocket one through this
            # hook, so that neither transport module imports the other.
            state.upgrade = functools.partial(upgrade_to_websocket, state)
        if config.ssl_certfile:
            try:
                self.certificates = Certificates(config)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                error_logger.error("Cannot load the TLS certificate %s: %s", config.ssl_certfile, exc)
                self.exit_code = EXIT_IMPORT_ERROR
                return
        self.lifespan = Lifespan(app, config.lifespan, state.app_state)
        pid = os.getpid()
        error_logger.info("Started server process [%d]", pid)
        if not self._start_metrics_endpoint(state):
            return
        if not await self._startup(self.lifespan):
            self.exit_code = EXIT_STARTUP_FAILED
            return
        try:
            await self._listen(state, sockets)
        except (OSError, ConfigError) as exc:
            self.exit_code = EXIT_IMPORT_ERROR
            await self.lifespan.shutdown()  # undo the startup before saying why we stop
            error_logger.error("Cannot listen on %s: %s", config.bind_description, exc)
            return
        self.started = True
        if self.announce:
            error_logger.info("asgisock running on %s (Press CTRL+C to quit)", describe_listener(config, self.sockets))
        if self.on_started is not None:
            self.on_started(self)
        self._wakeup = asyncio.Event()
        next_check = loop.time() + CERTIFICATE_CHECK
        while not self.should_exit:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), TICK)
            if self.certificates is not None and loop.time() >= next_check:
                next_check = loop.time() + CERTIFICATE_CHECK
                self.certificates.check()
        await self._shutdown(state)
        error_logger.info("Finished server process [%d]", pid)

    def _start_metrics_endpoint(self, state: ServerState) -> bool:
        """``--metrics-port``: its listener, from before the lifespan startup (a long one is seen)."""
        config = self.config
        if config.metrics_port is None or not self.serve_metrics:
            return True
        try:
            self.metrics_endpoint = MetricsListener(config.metrics_host, config.metrics_port, state.metrics_snapshot)
        except OSError as exc:
            error_logger.error("Cannot serve metrics on %s port %d: %s", config.metrics_host, config.metrics_port,
                               exc)
            self.exit_code = EXIT_IMPORT_ERROR
            return False
        error_logger.info("Metrics on %s", self.metrics_endpoint.url)
        return True

    async def _startup(self, lifespan: Lifespan) -> bool:
        """Run lifespan startup; a signal meanwhile abandons it (the app may hang there)."""
        startup = asyncio.ensure_future(lifespan.startup())
        while not startup.done():
            await asyncio.wait([startup], timeout=TICK)
            if self.should_exit and not startup.done():
                startup.cancel()
                error_logger.error("Application startup interrupted.")
                with contextlib.suppress(asyncio.CancelledError):
                    await startup
                lifespan.cancel()
                return False
        return startup.result()

    async def _listen(self, state: ServerState, sockets: Sequence[socket.socket] | None) -> None:
        config = self.config
        loop = state.loop
        if self.certificates is not None or config.proxy_protocol:
            self._listen_accepting(state, sockets)
            return

        # Each listener tells its connections their server address where it is the same for all
        # (listening_address), set before the first connection is accepted.
        local: tuple[str, int | None] | None = None

        def factory() -> asyncio.Protocol:
            return HTTPProtocol(state, local=local)

        async def listen(sock: socket.socket) -> None:
            address = listening_address([sock])
            self.servers.append(await loop.create_server(lambda: HTTPProtocol(state, local=address), sock=sock,
                                                         backlog=config.backlog))

        if sockets:
            for sock in sockets:
                await listen(sock)
        elif config.fd is not None:
            await listen(socket.fromfd(config.fd, socket.AF_INET, socket.SOCK_STREAM))
        elif config.uds:
            with contextlib.suppress(FileNotFoundError):
                if os.path.exists(config.uds) and not _is_socket(config.uds):
                    raise ConfigError("--uds", f"{config.uds} exists and is not a socket")
                os.unlink(config.uds)
            server = await loop.create_unix_server(factory, path=config.uds, backlog=config.backlog,
                                                   start_serving=False)
            os.chmod(config.uds, config.uds_perms)
            self._bound_uds = config.uds
            local = listening_address(server.sockets)
            self.servers.append(server)
            await server.start_serving()
        else:
            server = await loop.create_server(factory, host=config.host, port=config.port, backlog=config.backlog,
                                              reuse_address=True, start_serving=False)
            local = listening_address(server.sockets)
            self.servers.append(server)
            await server.start_serving()

    def _listen_accepting(self, state: ServerState, sockets: Sequence[socket.socket] | None) -> None:
        """Listen with an :class:`Acceptor`, which readies each connection (PROXY header, TLS
        handshake) before its HTTP protocol starts."""
        config = self.config
        factory = functools.partial(HTTPProtocol, state)  # called with the PROXY header, if any
        self.servers.append(Acceptor(state.loop, list(sockets) if sockets else self._bind(), factory,
                                     certificates=self.certificates, proxy_protocol=config.proxy_protocol,
                                     trusted=config.trusted_proxies, timeout=config.timeout_keep_alive))

    def _bind(self) -> list[socket.socket]:
        """The listening socket the settings describe, as :meth:`loop.create_server` would bind it."""
        sockets = bind_sockets(self.config)
        if self.config.uds and self.config.fd is None:
            self._bound_uds = self.config.uds
        return sockets

    async def _shutdown(self, state: ServerState) -> None:
        """The drain: stop listening at once, let what is in flight finish until the deadline,
        then cut what is left; the lifespan shutdown runs in every case."""
        error_logger.info("Shutting down")
        state.draining = True
        await self._stop_listening(state.loop)
        connections = list(state.connections)
        # Each connection says what it was doing: idle ones close now, in-flight responses
        # finish with ``Connection: close``, WebSockets get their close frame.
        kinds = Counter(connection.shutdown(restart=self.restarting) for connection in connections)
        if connections:
            error_logger.info("Draining %d connections: %d requests in flight, %d awaited, %d WebSockets, "
                              "%d idle closed", len(connections), kinds["request"], kinds["awaited"],
                              kinds["websocket"], kinds["idle"])
        if not await self._wait_for(lambda: not state.connections and not state.tasks and not self._opening(),
                                    "connections to close"):
            await self._cut(state)
        if connections:
            cut = len(self._cut_connections)
            error_logger.info("Drain done: %d of %d connections finished, %d cut",
                              len(connections) - cut, len(connections), cut)
        if state.access_log is not None:
            state.access_log.flush()
        if self.lifespan is not None and not self.force_exit:
            await self.lifespan.shutdown()
        if self._bound_uds is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._bound_uds)

    async def _stop_listening(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close the listening sockets, without dropping a connection accepted just before.

        asyncio's own accept loop builds each connection's transport in a task one loop turn
        after ``accept()``, and that transport cannot attach to a server that is closed
        (``Server._attach`` asserts), so a connection accepted in the turn of the close would
        be dropped, and with a request unread, reset. So: stop accepting first (the accept
        callback is an ordinary reader of the listening socket), let the connections already
        accepted reach their protocol, then close. uvloop builds the transport at once, and the
        :class:`Acceptor` lets connections in their handshake finish.
        """
        for server in self.servers:
            if isinstance(server, asyncio.Server):
                for sock in server.sockets:
                    loop.remove_reader(sock.fileno())
        for _ in range(3):
            await asyncio.sleep(0)
        for server in self.servers:
            server.close()
        for _ in range(2):  # and their connection_made() runs
            await asyncio.sleep(0)

    def _opening(self) -> bool:
        """Connections accepted before the listening sockets closed and still in their PROXY
        header or TLS handshake."""
        return any(server.opening for server in self.servers if isinstance(server, Acceptor))

    async def _cut(self, state: ServerState) -> None:
        """The deadline: drop the connections left, so that their apps see ``http.disconnect`` or
        ``websocket.disconnect``; then cancel the tasks of apps that ignore it."""
        self._cut_connections = list(state.connections)
        for connection in self._cut_connections:
            connection.transport.abort()
        for server in self.servers:
            if isinstance(server, Acceptor):
                server.abort()
        if state.tasks and not self.force_exit:
            await asyncio.wait(list(state.tasks), timeout=CUT_GRACE)
        for task in list(state.tasks):
            task.cancel()
        if state.tasks:
            await asyncio.wait(list(state.tasks), timeout=1.0)

    async def _wait_for(self, done: Callable[[], bool], what: str) -> bool:
        """Wait until ``done()`` (True), or the graceful-shutdown deadline or a forced exit (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout_graceful_shutdown
        if not done():
            error_logger.info("Waiting for %s. (CTRL+C to force quit)", what)
        while not done():
            if self.force_exit:
                return False
            if loop.time() >= deadline:
                error_logger.warning("Graceful shutdown timed out after %g s; cutting what is left.",
                                     self.config.timeout_graceful_shutdown)
                return False
            await asyncio.sleep(TICK / 2)
        return True

    @contextlib.contextmanager
    def _capture_signals(self) -> Iterator[None]:
        if not self.signals or threading.current_thread() is not threading.main_thread():
            yield  # the embedding program handles its own signals
            return
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.getsignal(sig) for sig in (*signals, signal.SIGHUP)}
        for sig in signals:
            loop.add_signal_handler(sig, self.handle_exit, sig)
        loop.add_signal_handler(signal.SIGHUP, self.handle_hangup)
        try:
            yield
        finally:
            for sig in previous:
                loop.remove_signal_handler(sig)
                signal.signal(sig, previous[sig])  # the embedding program's own handlers

    def handle_exit(self, sig: int) -> None:
        """First SIGINT or SIGTERM: graceful shutdown; a second one: stop waiting for anything."""
        self._exit_signals += 1
        self.stop(force=self._exit_signals > 1)

    def stop(self, *, restart: bool = False, force: bool = False) -> None:
        """Shut down, from the server's own loop: gracefully, or at once with ``force``; with
        ``restart`` when another process takes over (a rolling restart, a reload), so that
        WebSockets are closed with 1012 (service restart) rather than 1001 (going away). Not a
        signal: a SIGTERM after it is still the first one."""
        self.restarting = self.restarting or restart
        self.force_exit = self.force_exit or force
        self.should_exit = True
        self._wake()

    def handle_hangup(self) -> None:
        """SIGHUP: load the TLS certificate again (new connections get it; open ones keep theirs)."""
        if self.certificates is not None:
            self.certificates.reload()
        else:
            error_logger.info("SIGHUP: nothing to reload (no --ssl-certfile)")

    def request_exit(self, loop: asyncio.AbstractEventLoop, *, restart: bool = False) -> None:
        """Ask a server running in ``loop`` (possibly another thread) to shut down gracefully;
        ``restart`` when another server takes over (WebSockets get 1012 instead of 1001)."""
        self.restarting = self.restarting or restart
        self.should_exit = True
        loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()


def _is_socket(path: str) -> bool:
    import stat

    return stat.S_ISSOCK(os.stat(path).st_mode)


def _asgi3(app: Any, interface: str = "auto") -> ASGIApp:
    """Wrap an ASGI 2 (double-callable) app so the rest of the server speaks only ASGI 3:
    ``--interface asgi2`` or ``asgi3`` says which the app is, ``auto`` tells by its shape."""
    if interface == "asgi3" or (interface == "auto" and is_asgi3(app)):
        return app  # type: ignore[no-any-return]

    async def asgi2_adapter(scope: Any, receive: Receive, send: Send) -> None:
        instance = app(scope)
        await instance(receive, send)

    return asgi2_adapter


def loop_factory(name: str, app_dir: str = ".") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """``--loop``: uvloop when asked for or (``auto``) when installed, else asyncio's own; None
    (``none``) leaves it to asyncio's event loop policy; ``module:attribute`` is a function that
    makes a loop, imported as the app is (from ``app_dir``)."""
    if name == "none":
        return None
    if name == "asyncio":
        return asyncio.new_event_loop
    if ":" in name:
        try:
            factory = import_from_path(name, app_dir)
        except AppImportError as exc:
            raise ConfigError("--loop", str(exc)) from None
        if not callable(factory):
            raise ConfigError("--loop", f"{name} is not callable")
        return factory  # type: ignore[no-any-return]
    try:
        module = importlib.import_module("uvloop" if name == "auto" else name)  # uvloop or zuvloop
    except ImportError:
        if name != "auto":
            raise ConfigError("--loop", f"{name} is not installed") from None
        return asyncio.new_event_loop
    return module.new_event_loop  # type: ignore[no-any-return]


def run(app: ASGIApp | str, **settings: Any) -> None:
    """Serve ``app`` (an ASGI app or ``"module:attribute"``) until interrupted.

    Keywords are the settings, named as the command-line options without dashes
    (``run("main:app", port=9000, access_log=False)``). A setting not given as a keyword is
    read from its ``ASGISOCK_*`` environment variable, as the ``asgisock`` command reads it, so
    a script calling ``run()`` is configured the way the command is. Exits the process with
    code 1 when the app cannot be imported and 3 when its lifespan startup fails. With
    ``workers`` or ``reload``, a supervisor runs the workers (``app`` must then be an import
    string).
    """
    config = Config(app, **{**environ_settings(settings), **settings})
    configure_logging(config.log_level, config.log_config, config.access_log, use_colours=config.use_colors)
    for note in config.compatibility_notes():
        error_logger.info("%s", note)
    if config.metrics_port is not None:
        require_client()  # before the app is imported, or a worker started
    if config.env_file:
        load_env_file(config.env_file)  # before the workers start: they inherit the environment
    if config.workers is not None or config.reload:
        code = supervise(config)
        if code:
            sys.exit(code)
        return
    server = Server(config)
    try:
        server.run()
    except AppImportError as exc:
        error_logger.error("Error loading ASGI app. %s", exc)
        sys.exit(EXIT_IMPORT_ERROR)
    except KeyboardInterrupt:
        pass
    if server.exit_code:
        sys.exit(server.exit_code)

