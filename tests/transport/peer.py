"""A client socket for stateful flow-control tests: it never blocks on the server.

A test client that blocks in ``sendall`` while the server has stopped reading (because the client
does not read the answers) deadlocks the test instead of finding a bug. This peer writes only
what the kernel takes, reads only what is there, and waits only in :meth:`pump`, which fails the
test when the connection goes quiet while answers are owed.
"""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Callable

from hypothesis import settings

from tests.support import RunningServer, timeout

QUIET = 2.0
"""Seconds (scaled by the suite's timeout unit) a connection may stay silent while it owes."""

FLOW_SETTINGS = settings(max_examples=int(os.environ.get("ASGISOCK_FLOW_EXAMPLES", "100")),
                         stateful_step_count=40, deadline=None)
"""The stateful flow tests' budget; ``ASGISOCK_FLOW_EXAMPLES=2000`` for a long run by hand."""


class Peer:
    def __init__(self, server: RunningServer, *, receive_buffer: int | None = None) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(timeout(5))
        sock.connect((server.host, server.port))
        sock.setblocking(False)
        self.sock = sock
        self.outgoing = bytearray()
        self.written = 0
        """Bytes handed to the kernel so far, over the whole connection."""
        self.incoming = bytearray()
        self.eof = False

    def queue(self, data: bytes) -> int:
        """Add ``data`` to what is to be written; returns the stream offset where it ends."""
        self.outgoing += data
        return self.written + len(self.outgoing)

    def write(self, limit: int) -> None:
        """Write at most ``limit`` queued bytes, as many as the kernel takes now."""
        if not self.outgoing or limit <= 0:
            return
        try:
            sent = self.sock.send(self.outgoing[:limit])
        except BlockingIOError:
            return
        del self.outgoing[:sent]
        self.written += sent

    def read(self, limit: int = 1 << 20) -> None:
        """Read at most ``limit`` bytes that have arrived, without waiting."""
        try:
            data = self.sock.recv(limit)
        except BlockingIOError:
            return
        if data:
            self.incoming += data
        else:
            self.eof = True

    def pump(self, done: Callable[[], bool], owed: Callable[[], str]) -> None:
        """Write everything queued and read until ``done()``; fail if nothing moves for
        :data:`QUIET` seconds, naming what was ``owed()``."""
        while not done():
            assert not self.eof, f"the server closed the connection while it owed {owed()}"
            writers = [self.sock] if self.outgoing else []
            readable, writable, _ = select.select([self.sock], writers, [], timeout(QUIET))
            assert readable or writable, f"the connection went quiet while the server owed {owed()}"
            if writable:
                self.write(len(self.outgoing))
            if readable:
                self.read()

    def close(self) -> None:
        self.sock.close()


def wait_for_answers(peer: Peer, received: Callable[[], int], target: int, owed_at: list[int],
                     what: str) -> None:
    """Pump until ``received()`` (which parses what arrived) reaches ``target``; ``owed_at``
    holds, for each expected answer, the stream offset after which the server owes it."""
    def owed() -> str:
        count = received()
        owing = sum(1 for at in owed_at[count:] if at <= peer.written)
        return f"{owing} {what} ({count} of {len(owed_at)} received, {len(peer.outgoing)} bytes unwritten)"

    peer.pump(lambda: received() >= target, owed)
