"""The link between the supervisor and one worker: one end each of a UNIX socket pair.

Messages are lines of text, a kind and an optional argument: the supervisor sends the worker
its ``order`` (the settings, as JSON) and later ``restart`` or ``stop``; the worker answers
``ready`` once it listens, a ``beat`` every fraction of ``--timeout-worker-healthcheck`` from
its event loop (so a blocked loop falls silent), and ``recycle`` when it passed one of its
limits. With ``--metrics-port`` the supervisor asks for ``metrics`` at each scrape, and the
worker answers ``metrics`` with its figures (as JSON), and sends them once more as it stops.
Neither end ever blocks on the other: a message that does not fit in the socket's
buffer is dropped, which only a peer that stopped reading causes.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time


class LinkClosed(Exception):
    """The other end is gone."""


class Link:
    """One end of the pair; ``receive()`` returns the whole messages that arrived."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._buffer = b""
        self._kept: list[tuple[str, str]] = []
        """Messages that arrived while :meth:`wait_for` waited for another kind."""

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, kind: str, argument: str = "") -> bool:
        """Queue one message; False when it could not be sent (the peer is gone or stuck)."""
        line = f"{kind} {argument}\n" if argument else f"{kind}\n"
        try:
            return self.sock.send(line.encode()) == len(line.encode())
        except OSError:
            return False

    def receive(self) -> list[tuple[str, str]]:
        """The messages read now, as ``(kind, argument)``; LinkClosed at end of stream."""
        kept, self._kept = self._kept, []
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return kept
        except OSError:
            data = b""
        if not data:
            if kept:
                return kept  # the end is reported by the next call
            raise LinkClosed
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        messages = kept
        for line in lines:
            kind, _, argument = line.decode().partition(" ")
            messages.append((kind, argument))
        return messages

    @property
    def has_kept(self) -> bool:
        """Messages are waiting that no new read will announce: call :meth:`receive`."""
        return bool(self._kept)

    def wait_for(self, kind: str, seconds: float) -> str:
        """The argument of the first message of ``kind``, waiting at most ``seconds`` (the
        worker reads its order so, before it has an event loop)."""
        deadline = time.monotonic() + seconds
        while True:
            messages = self.receive()
            for index, (got, argument) in enumerate(messages):
                if got == kind:
                    self._kept = messages[index + 1:]  # what came after it (a stop) still counts
                    return argument
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {kind!r} message within {seconds} s")
            select.select([self.sock], [], [], remaining)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
