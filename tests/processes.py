"""Real ``asgisock`` processes for the end-to-end tests: started, read, signalled, and always
killed by their own pid when a test ends, even when it fails."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from tests.support import timeout

STARTED = re.compile(r"asgisock running on (\S+) \(Press CTRL\+C to quit\)")

class Output:
    """The lines of one pipe of the child, read in a thread so the test can wait for a line."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, text: str | tuple[str, ...], seconds: float = 10, *, since: int = 0) -> str:
        """The first line that contains ``text`` (or one of them), waiting for the child to write it;
        only lines from the ``since``-th on count (the length of ``lines`` at some earlier time)."""
        texts = (text,) if isinstance(text, str) else text
        deadline = time.monotonic() + timeout(seconds)
        with self._changed:
            while True:
                for line in self.lines[since:]:
                    if any(t in line for t in texts):
                        return line
                remaining = deadline - time.monotonic()
                if self.closed or remaining <= 0:
                    raise AssertionError(f"{text!r} never appeared in:\n" + "\n".join(self.lines))
                self._changed.wait(remaining)

    def wait_count(self, text: str, count: int, seconds: float = 10) -> list[str]:
        """The first ``count`` lines that contain ``text``, waiting for the child to write them."""
        deadline = time.monotonic() + timeout(seconds)
        with self._changed:
            while True:
                found = [line for line in self.lines if text in line]
                if len(found) >= count:
                    return found[:count]
                remaining = deadline - time.monotonic()
                if self.closed or remaining <= 0:
                    raise AssertionError(f"{text!r} did not appear {count} times in:\n" + "\n".join(self.lines))
                self._changed.wait(remaining)

    def join(self) -> None:
        self._thread.join(timeout(10))
        assert not self._thread.is_alive()


class Cli:
    """One ``python -m asgisock`` process (or ``program``, such as the ``asgisock`` script)."""

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str] | None = None,
                 pass_fds: tuple[int, ...] = (), program: tuple[str, ...] = ()) -> None:
        self.process = subprocess.Popen(
            [*(program or (sys.executable, "-m", "asgisock")), *args],
            cwd=cwd, env=child_env(env), pass_fds=pass_fds,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self.stdout = Output(self.process.stdout)
        self.stderr = Output(self.process.stderr)

    def started(self) -> str:
        """The address from the start-up line, e.g. ``http://127.0.0.1:41813``."""
        match = STARTED.search(self.stderr.wait_for("asgisock running on "))
        assert match is not None
        return match.group(1)

    @property
    def url(self) -> str:
        return self.started()

    @property
    def port(self) -> int:
        return int(self.started().rsplit(":", 1)[1])

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout(5))

    def send_signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def wait(self, seconds: float = 10) -> int:
        """The exit code; every line of output has been read when this returns."""
        code = self.process.wait(timeout(seconds))
        self.stdout.join()
        self.stderr.join()
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout(10))
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without any ASGISOCK_* setting, so each test states its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASGISOCK_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class Launcher:
    """Starts ``asgisock`` processes (or ``program``'s) in the app directory and kills what is
    left at teardown."""

    def __init__(self, cwd: Path, env: dict[str, str] | None = None, *, program: tuple[str, ...] = ()) -> None:
        self.cwd = cwd
        self.env = env or {}
        """Variables every process started gets, besides those of each call."""
        self.program = program
        self.started: list[Cli] = []

    def __call__(self, *args: str, env: dict[str, str] | None = None,
                 pass_fds: tuple[int, ...] = ()) -> Cli:
        cli = Cli(list(args), cwd=self.cwd, env={**self.env, **(env or {})}, pass_fds=pass_fds,
                  program=self.program)
        self.started.append(cli)
        return cli


def read_until_closed(sock: socket.socket) -> bytes:
    """What the server sent before it closed the connection (an abort counts as a close)."""
    chunks: list[bytes] = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
