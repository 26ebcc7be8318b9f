"""Write-side flow control shared by the HTTP and WebSocket protocols."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from asgisock.exceptions import ClientDisconnected


class WriteFlow:
    """``pause_writing``/``resume_writing`` bookkeeping and the ``drain()`` the ASGI layer awaits.

    The transport calls ``pause_writing`` when its buffer passes the high-water mark; ``send()``
    then waits in :meth:`drain` until the peer has read enough, so a slow reader slows the app
    down instead of growing the buffer. A protocol mixes this in and sets ``loop``, ``closed``,
    ``write_paused = False`` and ``drain_waiters = []`` itself.
    """

    __slots__ = ("drain_waiters", "write_paused")  # the protocol has the rest

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    closed: bool
    write_paused: bool
    drain_waiters: list[asyncio.Future[None]]

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drain_waiters()

    async def drain(self) -> None:
        """Return once writing may go on; raise ClientDisconnected once the peer is gone."""
        if self.closed:
            raise ClientDisconnected("the client disconnected")
        if not self.write_paused:
            return
        waiter = self.loop.create_future()
        self.drain_waiters.append(waiter)
        await waiter
        if self.closed:
            raise ClientDisconnected("the client disconnected")

    def write_uncopied(self, parts: Sequence[bytes]) -> None:
        """Write ``parts``, a large payload among them, in order: as a list where the transport
        sends one in a single system call (uvloop's ``writelines``), so that the payload is not
        copied. asyncio's own ``writelines`` (``sendmsg`` since Python 3.12) can spin on a
        socket whose buffer stays full (a slow client): one joined write there."""
        transport = self.transport
        if type(transport).__module__.startswith("uvloop"):
            transport.writelines(parts)
        else:
            transport.write(b"".join(parts))

    def _wake_drain_waiters(self) -> None:
        """Wake every waiting ``send()``: on resume_writing, or on connection_lost (they raise)."""
        waiters, self.drain_waiters = self.drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
