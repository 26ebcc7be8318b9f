"""RSS per idle WebSocket connection with and without permessage-deflate state, on a real server.

    python bench/mem_deflate.py [--connections 1000]

Starts asgisock (echo app) in a subprocess, opens N connections with the `websockets` client,
has each exchange one message (so a compressed connection has allocated its zlib contexts),
then leaves them idle and reads the server's RSS. Three runs: compression off, on with the
default 12-bit server window, on with a 15-bit window.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import websockets

APP_DIR = Path(__file__).resolve().parent


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


async def hold(url: str, count: int, compression: str | None) -> list[websockets.ClientConnection]:
    connections = []
    for _ in range(count):
        ws = await websockets.connect(url, compression=compression, max_size=None, ping_interval=None)
        await ws.send('{"hello": "world", "n": 1}')
        await ws.recv()
        connections.append(ws)
    return connections


async def measure(extra: list[str], compression: str | None, count: int) -> float:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "asgisock", "apps:echo", "--app-dir", str(APP_DIR), "--port", str(port),
         "--no-access-log", "--log-level", "warning", "--ws-ping-interval", "3600", "--backlog", "4096", *extra])
    try:
        wait_for(port, time.monotonic() + 10)
        url = f"ws://127.0.0.1:{port}/"
        warm = await hold(url, 50, compression)
        before = rss_kib(server.pid)
        connections = await hold(url, count, compression)
        after = rss_kib(server.pid)
        for ws in warm + connections:
            await ws.close()
        return (after - before) / count
    finally:
        server.terminate()
        server.wait()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=1000)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    runs = [
        ("no compression", ["--no-ws-per-message-deflate"], None),
        ("deflate, 12-bit window (default)", [], "deflate"),
        ("deflate, 15-bit window", ["--ws-deflate-window-bits", "15"], "deflate"),
    ]
    for label, extra, compression in runs:
        per = await measure(extra, compression, args.connections)
        print(f"{label:34s} {per:6.1f} KiB per idle connection ({args.connections} connections)")


if __name__ == "__main__":
    asyncio.run(main())
