"""How each server under test is started: one worker, access log off, pinned to CPU 0.

Every server gets the same treatment where it has the setting: the raw ASGI app from
``bench/apps.py``, uvloop, a 4096-connection backlog, a keep-alive timeout long enough for the
idle-connection memory test, warnings-only logging. uvicorn runs with its fastest HTTP stack
(httptools) and its default WebSocket backend (websockets-sansio), named explicitly. In the
TLS scenarios every server is given the same certificate and key (``bench/certs.py``) and
nothing else about TLS, so each runs with its own defaults for versions and ciphers.

The access-log scenarios turn each server's access log on in its default format, at its
default INFO level, written to standard output: a pipe, drained into the server's log file
by a ``cat`` on the generator's CPU (as a process manager or a container runtime reads it),
or the log file itself (as a shell's ``>`` or a unit's ``StandardOutput=file:`` gives it).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from certs import TLSFiles
from env import BENCH_DIR, VENV

SERVER_CPU: Final = "0"
CLIENT_CPU: Final = "1"
BACKLOG: Final = "4096"
KEEP_ALIVE: Final = "300"  # seconds; the idle keep-alive memory test holds connections open
START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 10.0
CEILING: Final = "ceiling"
SERVERS: Final = ("asgisock", "uvicorn", "granian", "hypercorn", CEILING)
HOST: Final = "127.0.0.1"
# Each server's names for its certificate (chain) file and its key file.
TLS_OPTIONS: Final = {
    "asgisock": ("--ssl-certfile", "--ssl-keyfile"),
    "uvicorn": ("--ssl-certfile", "--ssl-keyfile"),
    "granian": ("--ssl-certificate", "--ssl-keyfile"),
    "hypercorn": ("--certfile", "--keyfile"),
    CEILING: ("--ssl-certfile", "--ssl-keyfile"),
}


def server_argv(name: str, app: str, port: int, tls: TLSFiles | None = None, access_log: bool = False) -> list[str]:
    """The command line of ``name`` serving ``apps:<app>`` on 127.0.0.1:``port``, over TLS
    with ``tls``'s certificate and key when given, with its access log on if ``access_log``."""
    argv = plain_argv(name, app, port)
    if access_log:
        argv = with_access_log(name, argv)
    if tls is None:
        return argv
    cert_option, key_option = TLS_OPTIONS[name]
    return [*argv, cert_option, str(tls.cert), key_option, str(tls.key)]


def plain_argv(name: str, app: str, port: int) -> list[str]:
    python = str(VENV / "bin" / "python")
    target = f"apps:{app}"
    if name == "asgisock":
        return [
            python, "-m", "asgisock", target, "--host", "127.0.0.1", "--port", str(port),
            "--no-access-log", "--log-level", "warning", "--backlog", BACKLOG,
            "--timeout-keep-alive", KEEP_ALIVE,
        ]
    if name == "uvicorn":
        return [
            python, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
            "--no-access-log", "--log-level", "warning", "--backlog", BACKLOG,
            "--timeout-keep-alive", KEEP_ALIVE,
            "--http", "httptools", "--loop", "uvloop", "--ws", "websockets-sansio",
        ]
    if name == "granian":
        return [
            str(VENV / "bin" / "granian"), "--interface", "asgi", "--loop", "uvloop",
            "--workers", "1", "--http", "1", "--host", "127.0.0.1", "--port", str(port),
            "--no-access-log", "--log-level", "warning", "--backlog", BACKLOG,
            # granian serves at most this many connections at once (default backlog/workers):
            # raised so that the 10,000 idle keep-alive connections are all answered.
            "--backpressure", "16384", target,
        ]
    if name == "hypercorn":
        return [
            str(VENV / "bin" / "hypercorn"), "--worker-class", "uvloop", "--workers", "1",
            "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--backlog", BACKLOG,
            "--keep-alive", KEEP_ALIVE, target,
        ]
    if name == CEILING:
        return [python, str(BENCH_DIR / "ceiling.py"), "--port", str(port), "--backlog", BACKLOG]
    raise ValueError(f"unknown server {name!r}")


def with_access_log(name: str, argv: list[str]) -> list[str]:
    """``argv`` with the server's access log on: its default format, at INFO, to stdout."""
    if name == CEILING:
        raise ValueError("the ceiling has no access log")
    argv = [arg for arg in argv if arg != "--no-access-log"]
    level = argv.index("--log-level") + 1
    argv[level] = "info"
    if name == "granian":
        argv.insert(-1, "--access-log")  # before the app, granian's last argument
    elif name == "hypercorn":
        argv[-1:-1] = ["--access-logfile", "-"]
    return argv


def file_limit() -> int:
    """The most open files a process may have here: the hard limit."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def pinned(cpu: str, argv: list[str]) -> list[str]:
    """``argv`` with the open-files limit raised to the hard limit, on one CPU."""
    limit = file_limit()
    return ["prlimit", f"--nofile={limit}:{limit}", "taskset", "-c", cpu, *argv]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def responds(port: int, tls: TLSFiles | None = None) -> bool:
    """True once a plain GET gets an HTTP response: the worker is up, not only the socket."""
    try:
        with socket.create_connection((HOST, port), timeout=2.0) as sock:
            if tls is None:
                return answers_get(sock)
            with tls.client_context().wrap_socket(sock, server_hostname=HOST) as secure:
                return answers_get(secure)
    except OSError:  # ssl.SSLError included
        return False


def answers_get(sock: socket.socket) -> bool:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    return sock.recv(16).startswith(b"HTTP/1.1 ")


def negotiated(port: int, tls: TLSFiles) -> str:
    """The TLS version and cipher suite the server agrees to with Python's default client."""
    with (socket.create_connection((HOST, port), timeout=2.0) as sock,
          tls.client_context().wrap_socket(sock, server_hostname=HOST) as secure):
        cipher = secure.cipher()
        return f"{secure.version()} {cipher[0] if cipher else '?'}"


class ServerError(Exception):
    """A server did not start, or died during a measurement."""


@dataclass
class RunningServer:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    tls: TLSFiles | None = None
    negotiated: str = ""  # TLS version and cipher suite, when over TLS
    drain: subprocess.Popen[bytes] | None = None  # the cat reading the server's stdout pipe

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, path: str = "/") -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}{path}"

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise ServerError(f"{self.name} exited with status {self.process.returncode}:\n"
                              + self.log_tail())

    def log_tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGINT (a graceful stop for every server), then SIGKILL to the whole group."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        if self.drain is not None:
            self.drain.wait()  # ends at the pipe's end, once the server is gone


def start(
    name: str, app: str, log_dir: Path, source: Path | None = None, tls: TLSFiles | None = None,
    access_log: Literal["pipe", "file"] | None = None,
) -> RunningServer:
    """Start ``name`` serving ``apps:<app>``; ``source`` puts another asgisock tree first,
    ``tls`` serves it over TLS with that certificate, ``access_log`` turns its access log on,
    written to a ``"pipe"`` or straight to its log ``"file"``."""
    port = free_port()
    log = log_dir / f"{name}.log"
    path = [str(source)] if source is not None else []
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([*path, str(BENCH_DIR)]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    drain: subprocess.Popen[bytes] | None = None
    with log.open("ab") as log_file:
        if access_log == "pipe":
            drain = subprocess.Popen(["taskset", "-c", CLIENT_CPU, "cat"], stdin=subprocess.PIPE,
                                     stdout=log_file, start_new_session=True)
        process = subprocess.Popen(
            pinned(SERVER_CPU, server_argv(name, app, port, tls, access_log is not None)),
            cwd=BENCH_DIR,
            env=env,
            stdout=log_file if drain is None else drain.stdin,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    if drain is not None and drain.stdin is not None:
        drain.stdin.close()  # the server holds the pipe's only writing end
    server = RunningServer(name, port, process, log, tls, drain=drain)
    deadline = time.monotonic() + START_TIMEOUT
    while not responds(port, tls):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise ServerError(f"{name} did not start:\n{server.log_tail()}")
        time.sleep(0.05)
    if tls is not None:
        try:
            server.negotiated = negotiated(port, tls)
        except OSError as error:
            server.stop()
            raise ServerError(f"{name}: TLS handshake failed: {error}") from error
    return server
