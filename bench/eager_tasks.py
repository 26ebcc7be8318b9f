#!/usr/bin/env python3
"""Requests per second through the HTTP protocol in one process, with and without eager tasks.

Usage::

    python bench/eager_tasks.py                 # 3 rounds of 20,000 requests
    python3.12 bench/eager_tasks.py --requests 50000

No sockets and no client: one ``HTTPProtocol`` on an in-memory transport is fed one GET at a
time, and the next is fed once the response has been written, so the figure is the server's
own per-request path (parse, scope, task, app, response) and nothing else. Compared:

- ``task``: what asgisock does, an ``asyncio.Task`` with a fixed name, started on the next
  loop iteration;
- ``eager-factory``: the loop's task factory set to ``asyncio.eager_task_factory`` (3.12+), so
  the request's task runs at once, inside ``data_received``, until it first waits;
- ``eager-task``: asgisock's own fixed-name task, started eagerly (``eager_start=True``).

Eager starts make a loop iteration fewer per request here, where nothing else shares the
loop; under real load the iterations are shared by many connections and the saving is the
scheduling of one callback per request. See docs/explanation/architecture.md for why the
server does not use them yet.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import time
from typing import Any

import asgisock.transport.http as http
from asgisock.config import Config
from asgisock.server import loop_factory
from asgisock.transport.state import ServerState

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: eager\r\n\r\n"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


class MemoryTransport(asyncio.Transport):
    """Keeps nothing: counts responses (each ends with the body) and wakes the driver."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.written: asyncio.Future[None] | None = None
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if bytes(data).endswith(b"Hello, world!") and self.written is not None:
            self.written.set_result(None)
            self.written = None

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def drive(requests: int) -> float:
    loop = asyncio.get_running_loop()
    state = ServerState(Config(app, access_log=False), app, loop)
    protocol = http.HTTPProtocol(state)
    transport = MemoryTransport(loop)
    protocol.connection_made(transport)
    started = time.perf_counter()
    for _ in range(requests):
        done = transport.written = loop.create_future()
        protocol.data_received(REQUEST)
        if transport.written is not None:  # not answered inside data_received: wait for it
            await done
        # let the finished task's callbacks run before the next request, as a client's next
        # read would
        await asyncio.sleep(0)
    elapsed = time.perf_counter() - started
    protocol.connection_lost(None)
    return requests / elapsed


def run(mode: str, loop_name: str, requests: int) -> float:
    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as runner:
        if mode == "eager-factory":
            runner.get_loop().set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        original = http.asyncio.Task
        if mode == "eager-task":
            http.asyncio.Task = functools.partial(asyncio.Task, eager_start=True)  # type: ignore[misc]
        try:
            return runner.run(drive(requests))
        finally:
            http.asyncio.Task = original  # type: ignore[misc]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    modes = ["task"] + (["eager-factory", "eager-task"] if sys.version_info >= (3, 12) else [])
    print(f"Python {sys.version.split()[0]}, {args.requests} requests, best of {args.rounds}")
    for loop_name in ("asyncio", "uvloop"):
        results = {mode: [] for mode in modes}  # type: dict[str, list[float]]
        for _ in range(args.rounds):
            for mode in modes:  # interleaved, so a busy moment of the machine hits every mode
                try:
                    results[mode].append(run(mode, loop_name, args.requests))
                except TypeError as error:  # uvloop 0.23 on 3.13 passes eager_start to the factory
                    print(f"  {loop_name:8} {mode:14} fails: {error}")
        base = max(results["task"])
        for mode in modes:
            if not results[mode]:
                continue
            best = max(results[mode])
            print(f"  {loop_name:8} {mode:14} {best:9,.0f} req/s (median {statistics.median(results[mode]):,.0f})"
                  f"  {best / base:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
