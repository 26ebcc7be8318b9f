"""Run a real server on an ephemeral port in a background thread, for tests with real clients."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

from asgisock.config import Config
from asgisock.server import Server, loop_factory

SCALE = float(os.environ.get("ASGISOCK_TEST_TIMEOUT_SCALE", "1"))


def timeout(seconds: float) -> float:
    """Every timeout in the tests, stretched at once on slow machines."""
    return seconds * SCALE


class RunningServer:
    def __init__(self, server: Server, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        sockname = server.sockets[0].getsockname()
        self.host: str = sockname[0]
        self.port: int = sockname[1]
        self.loop_errors: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout(5))
        return sock

    def call(self, function: Any, *args: Any) -> Any:
        """Run ``function(*args)`` in the server's loop and return its result."""
        future: Any = asyncio.run_coroutine_threadsafe(_call(function, *args), self.loop)
        return future.result(timeout(5))


async def _call(function: Any, *args: Any) -> Any:
    return function(*args)


@contextlib.contextmanager
def serve(app: Any, *, loop: str = "asyncio", **settings: Any) -> Iterator[RunningServer]:
    """Serve ``app`` on 127.0.0.1:<ephemeral> until the block ends; fail on loop errors."""
    settings.setdefault("host", "127.0.0.1")
    settings.setdefault("port", 0)
    settings.setdefault("lifespan", "off")
    config = Config(app, loop=loop, **settings)
    started = threading.Event()
    errors: list[dict[str, Any]] = []
    failure: list[BaseException] = []
    holder: dict[str, Any] = {}

    def target() -> None:
        try:
            with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
                holder["loop"] = event_loop = runner.get_loop()
                event_loop.set_exception_handler(lambda _loop, context: errors.append(context))
                runner.run(server.serve())
        except BaseException as exc:  # reported to the test below
            failure.append(exc)
        finally:
            started.set()

    server = Server(config, on_started=lambda _server: started.set())
    thread = threading.Thread(target=target, name="asgisock-test-server", daemon=True)
    thread.start()
    started.wait(timeout(10))
    if failure or not server.started:
        thread.join(timeout(10))
        raise RuntimeError(f"server did not start: {failure or server.exit_code}")
    running = RunningServer(server, holder["loop"])
    running.loop_errors = errors
    try:
        yield running
    finally:
        server.request_exit(holder["loop"])
        thread.join(timeout(15))
        assert not thread.is_alive(), "server did not shut down"
        if failure:
            raise failure[0]
        assert not errors, f"unhandled errors in the event loop: {errors}"


def read_response(sock: socket.socket) -> bytes:
    """Read until the peer closes the connection."""
    chunks: list[bytes] = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class LogWatch(logging.Handler):
    """Wait, without polling, for a record of the server's error logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.records.append(record.getMessage())
            self.changed.notify_all()

    def wait_for(self, text: str) -> str:
        with self.changed:
            found = self.changed.wait_for(lambda: next((r for r in self.records if text in r), None),
                                          timeout(10))
        assert found, f"{text!r} never logged: {self.records}"
        return found


def ws_handshake(server: RunningServer, path: str = "/") -> socket.socket:
    """A raw socket on which a WebSocket handshake to ``path`` has succeeded (its 101 read)."""
    sock = server.connect()
    sock.sendall(f"GET {path} HTTP/1.1\r\n".encode() + b"Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)) + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101 ")
    return sock
