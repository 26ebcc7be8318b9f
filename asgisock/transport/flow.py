"""Write-side flow control shared by the HTTP and WebSocket protocols."""

from __future__ import annotations

import asyncio

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

    def _wake_drain_waiters(self) -> None:
        """Wake every waiting ``send()``: on resume_writing, or on connection_lost (they raise)."""
        waiters, self.drain_waiters = self.drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
