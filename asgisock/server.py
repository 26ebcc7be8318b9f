"""The server: listening sockets, signals, graceful shutdown; and :func:`run`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from asgisock.config import Config, environ_settings
from asgisock.envfile import load_env_file
from asgisock.exceptions import AppImportError, ConfigError
from asgisock.importer import is_asgi3, load_app
from asgisock.lifespan import Lifespan
from asgisock.logging import configure_logging, error_logger
from asgisock.transport.accept import Acceptor
from asgisock.transport.http import HTTPProtocol
from asgisock.transport.state import ServerState
from asgisock.transport.tls import Certificates
from asgisock.transport.websocket import upgrade_to_websocket
from asgisock.types import ASGIApp, Receive, Send

EXIT_IMPORT_ERROR = 1
EXIT_STARTUP_FAILED = 3
TICK = 0.1
"""How often the main loop looks at ``should_exit`` (set by signals or by an embedding program)."""
CERTIFICATE_CHECK = 1.0
"""How often, in seconds, the TLS certificate files are looked at for a change."""


class Server:
    """Serve ``config.app`` until ``should_exit`` is set.

    Embed it in a running loop with ``await Server(Config(app)).serve()``; set ``should_exit``
    to stop gracefully, and ``force_exit`` to stop without waiting for in-flight requests.
    """

    def __init__(self, config: Config, *, on_started: Callable[[Server], None] | None = None) -> None:
        self.config = config
        self.on_started = on_started
        """Called once the sockets listen (tests use it to learn the port)."""
        self.should_exit = False
        self.force_exit = False
        self.started = False
        self.exit_code = 0
        self.servers: list[asyncio.Server | Acceptor] = []
        self.certificates: Certificates | None = None
        """The TLS certificate in use, with ``--ssl-certfile``."""
        self.state: ServerState | None = None
        self.lifespan: Lifespan | None = None
        self._wakeup: asyncio.Event | None = None

    @property
    def sockets(self) -> list[socket.socket]:
        return [sock for server in self.servers for sock in server.sockets]

    def run(self, sockets: Sequence[socket.socket] | None = None) -> None:
        with asyncio.Runner(loop_factory=loop_factory(self.config.loop)) as runner:
            runner.run(self.serve(sockets))

    async def serve(self, sockets: Sequence[socket.socket] | None = None) -> None:
        with self._capture_signals():
            await self._serve(sockets)

    async def _serve(self, sockets: Sequence[socket.socket] | None) -> None:
        config = self.config
        app = _asgi3(load_app(config.app, factory=config.factory, app_dir=config.app_dir))
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
        self._log_started()
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

        def factory() -> asyncio.Protocol:
            return HTTPProtocol(state)

        if sockets:
            for sock in sockets:
                self.servers.append(await loop.create_server(factory, sock=sock, backlog=config.backlog))
        elif config.fd is not None:
            sock = socket.fromfd(config.fd, socket.AF_INET, socket.SOCK_STREAM)
            self.servers.append(await loop.create_server(factory, sock=sock, backlog=config.backlog))
        elif config.uds:
            with contextlib.suppress(FileNotFoundError):
                if os.path.exists(config.uds) and not _is_socket(config.uds):
                    raise ConfigError("--uds", f"{config.uds} exists and is not a socket")
                os.unlink(config.uds)
            server = await loop.create_unix_server(factory, path=config.uds, backlog=config.backlog)
            os.chmod(config.uds, 0o666)
            self.servers.append(server)
        else:
            server = await loop.create_server(factory, host=config.host, port=config.port,
                                              backlog=config.backlog, reuse_address=True)
            self.servers.append(server)

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
        config = self.config
        if config.fd is not None:
            return [socket.fromfd(config.fd, socket.AF_INET, socket.SOCK_STREAM)]
        if config.uds:
            if os.path.exists(config.uds) and not _is_socket(config.uds):
                raise ConfigError("--uds", f"{config.uds} exists and is not a socket")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(config.uds)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(config.uds)
            os.chmod(config.uds, 0o666)
        else:
            infos = socket.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, kind, proto, _, address = infos[0]
            sock = socket.socket(family, kind, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
        sock.listen(config.backlog)
        return [sock]

    def _log_started(self) -> None:
        config = self.config
        if config.uds:
            where = f"unix:{config.uds}"
        else:
            name = self.sockets[0].getsockname() if self.sockets else (config.host, config.port)
            if isinstance(name, str):
                where = f"unix:{name}"
            else:
                host = f"[{name[0]}]" if ":" in name[0] else name[0]
                where = f"{config.url_scheme}://{host}:{name[1]}"
        error_logger.info("asgisock running on %s (Press CTRL+C to quit)", where)

    async def _shutdown(self, state: ServerState) -> None:
        error_logger.info("Shutting down")
        for server in self.servers:
            server.close()
        for connection in list(state.connections):
            connection.shutdown()
        await self._wait_for(lambda: not state.connections and not state.tasks, "connections to close")
        for task in list(state.tasks):
            task.cancel()
        for connection in list(state.connections):
            connection.transport.abort()
        if state.tasks:
            await asyncio.wait(list(state.tasks), timeout=1.0)
        if state.access_log is not None:
            state.access_log.flush()
        if self.lifespan is not None and not self.force_exit:
            await self.lifespan.shutdown()
        if self.config.uds:
            with contextlib.suppress(OSError):
                os.unlink(self.config.uds)

    async def _wait_for(self, done: Callable[[], bool], what: str) -> None:
        """Wait until ``done()`` or the graceful-shutdown timeout or a forced exit."""
        timeout = self.config.timeout_graceful_shutdown
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        if not done():
            error_logger.info("Waiting for %s. (CTRL+C to force quit)", what)
        while not done() and not self.force_exit:
            if deadline is not None and loop.time() >= deadline:
                error_logger.warning("Graceful shutdown timed out; cancelling what is left.")
                return
            await asyncio.sleep(TICK / 2)

    @contextlib.contextmanager
    def _capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # an embedding program in another thread handles its own signals
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
        """First signal: graceful shutdown; a second one: stop waiting for anything."""
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True
        if self._wakeup is not None:
            self._wakeup.set()

    def handle_hangup(self) -> None:
        """SIGHUP: load the TLS certificate again (new connections get it; open ones keep theirs)."""
        if self.certificates is not None:
            self.certificates.reload()
        else:
            error_logger.info("SIGHUP: nothing to reload (no --ssl-certfile)")

    def request_exit(self, loop: asyncio.AbstractEventLoop) -> None:
        """Ask a server running in ``loop`` (possibly another thread) to shut down gracefully."""
        self.should_exit = True
        loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()


def _is_socket(path: str) -> bool:
    import stat

    return stat.S_ISSOCK(os.stat(path).st_mode)


def _asgi3(app: Any) -> ASGIApp:
    """Wrap an ASGI 2 (double-callable) app so the rest of the server speaks only ASGI 3."""
    if is_asgi3(app):
        return app  # type: ignore[no-any-return]

    async def asgi2_adapter(scope: Any, receive: Receive, send: Send) -> None:
        instance = app(scope)
        await instance(receive, send)

    return asgi2_adapter


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """``--loop``: uvloop when asked for or (``auto``) when installed, else asyncio's own."""
    if name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise ConfigError("--loop", "uvloop is not installed") from None
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(app: ASGIApp | str, **settings: Any) -> None:
    """Serve ``app`` (an ASGI app or ``"module:attribute"``) until interrupted.

    Keywords are the settings, named as the command-line options without dashes
    (``run("main:app", port=9000, access_log=False)``). A setting not given as a keyword is
    read from its ``ASGISOCK_*`` environment variable, as the ``asgisock`` command reads it, so
    a script calling ``run()`` is configured the way the command is. Exits the process with
    code 1 when the app cannot be imported and 3 when its lifespan startup fails.
    """
    config = Config(app, **{**environ_settings(settings), **settings})
    configure_logging(config.log_level, config.log_config, config.access_log)
    if config.env_file:
        load_env_file(config.env_file)
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

