"""Tests of write flow control over a real socket: drain() waits while the peer does not read."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from asgisock.exceptions import ClientDisconnected
from asgisock.server import loop_factory
from asgisock.transport.flow import WriteFlow


class Writer(WriteFlow, asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.closed = False
        self.write_paused = False
        self.drain_waiters = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.WriteTransport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=4096)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake_drain_waiters()


def run(loop_name: str, scenario: str) -> list[str]:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        ours, peer = socket.socketpair()
        peer.setblocking(False)
        _, writer = await loop.create_connection(lambda: Writer(loop), sock=ours)
        steps: list[str] = []
        await writer.drain()  # nothing written: returns at once
        while not writer.write_paused:
            writer.transport.write(b"x" * 65536)
            await asyncio.sleep(0)
        steps.append("paused")
        draining = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0)
        assert not draining.done()
        if scenario == "read":
            while not draining.done():
                with contextlib.suppress(BlockingIOError):
                    peer.recv(1 << 20)
                await asyncio.sleep(0)
            await draining
            steps.append("resumed")
            writer.transport.close()
        else:
            peer.close()
            writer.transport.abort()
            with pytest.raises(ClientDisconnected):
                await draining
            steps.append("disconnected")
            with pytest.raises(ClientDisconnected):
                await writer.drain()
        peer.close()
        return steps

    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as runner:
        return runner.run(main())


def test_drain_waits_until_the_peer_reads(loop: str) -> None:
    assert run(loop, "read") == ["paused", "resumed"]


def test_drain_raises_once_the_peer_is_gone(loop: str) -> None:
    assert run(loop, "gone") == ["paused", "disconnected"]
