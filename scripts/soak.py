"""Soak one asgisock worker: many WebSocket connections for minutes, then a million HTTP requests.

    python scripts/soak.py                          # 10,000 WebSockets for 10 minutes, 1,000,000 requests
    python scripts/soak.py --minutes 2 --http-requests 200000
    python scripts/soak.py --skip-http --ws-connections 2000

The server runs as a subprocess (``python -m asgisock soak:app``, one worker, loopback only).
Phase 1 opens ``--ws-connections`` WebSocket connections; each sends a short text message every
``--interval`` seconds (jittered) and expects it echoed, and answers the server's keepalive pings.
Every ``--sample`` seconds a line reports the connections open, messages, errors and the
server's RSS. Phase 2 sends ``--http-requests`` keep-alive GET requests over
``--http-connections`` connections (pipelined ``--depth`` deep) and reports RSS every 10% of
them. The last line is a JSON summary; ``--json FILE`` writes it to a file too. Errors (a failed
connect or handshake, an unexpected close, a wrong or missing echo, a failed request) are counted,
never retried.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

HELLO = b"Hello, world!"
KEY = b"\x12\x34\x56\x78"
ECHO_TIMEOUT = 10.0
"""Seconds a message may wait for its echo before it counts as an error."""


# -- the app the server runs ----------------------------------------------------------------


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Hello over HTTP, echo over WebSocket."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": HELLO})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text") or ""})


# -- the server process ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(port: int, loop: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "asgisock", "soak:app", "--app-dir", str(Path(__file__).parent),
               "--port", str(port), "--loop", loop, "--lifespan", "off", "--no-access-log",
               "--log-level", "warning", "--backlog", "4096", "--timeout-keep-alive", "600",
               "--timeout-graceful-shutdown", "5"]
    process = subprocess.Popen(command)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return process
        if process.poll() is not None:
            break
        time.sleep(0.1)  # waiting for a subprocess to listen
    process.kill()
    raise SystemExit("the server did not start")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- WebSocket clients -----------------------------------------------------------------------


def masked_text(payload: bytes) -> bytes:
    """A masked client text frame; payloads here are shorter than 126 bytes."""
    data = bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + KEY + data


def masked_control(opcode: int, payload: bytes) -> bytes:
    data = bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + KEY + data


class Stats:
    def __init__(self) -> None:
        self.open = 0
        self.sent = 0
        self.echoed = 0
        self.pings = 0
        self.errors: Counter[str] = Counter()
        self.worst_echo = 0.0


class WebSocketClient(asyncio.Protocol):
    """One connection: a handshake, then a message every ``interval`` seconds, echoes checked."""

    def __init__(self, stats: Stats, host: str, interval: float, handshake_done: asyncio.Future[bool]) -> None:
        self.stats = stats
        self.host = host
        self.interval = interval
        self.handshake_done = handshake_done
        self.buffer = b""
        self.opened = False
        self.closing = False
        self.pending: tuple[bytes, float] | None = None
        self.counter = 0
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16))
        transport.write(b"GET /soak HTTP/1.1\r\nHost: " + self.host.encode() + b"\r\nUpgrade: websocket\r\n"  # type: ignore[attr-defined]
                        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.opened:
            head, found, rest = self.buffer.partition(b"\r\n\r\n")
            if not found:
                return
            if not head.startswith(b"HTTP/1.1 101 "):
                self._error("handshake refused")
                return
            self.opened = True
            self.stats.open += 1
            self.buffer = rest
            self.handshake_done.set_result(True)
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(random.uniform(0, self.interval), self._send)
        self._frames()

    def _frames(self) -> None:
        buffer = self.buffer
        while len(buffer) >= 2:
            opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
            if length > 125 or len(buffer) < 2 + length:
                if length > 125:
                    self._error("unexpected large frame")
                break
            payload, buffer = buffer[2 : 2 + length], buffer[2 + length :]
            if opcode == 0x1:
                self._echo(payload)
            elif opcode == 0x9:
                self.stats.pings += 1
                self.transport.write(masked_control(0xA, payload))  # type: ignore[union-attr]
            elif opcode == 0x8:
                if not self.closing:
                    self._error(f"closed by the server ({int.from_bytes(payload[:2], 'big') if payload else 1005})")
                break
        self.buffer = buffer

    def _echo(self, payload: bytes) -> None:
        if self.pending is None or payload != self.pending[0]:
            self._error("unexpected echo")
            return
        self.stats.echoed += 1
        self.stats.worst_echo = max(self.stats.worst_echo, time.monotonic() - self.pending[1])
        self.pending = None

    def _send(self) -> None:
        if self.closing or self.transport is None or self.transport.is_closing():
            return
        now = time.monotonic()
        if self.pending is not None and now - self.pending[1] > ECHO_TIMEOUT:
            self._error("echo timed out")
            return
        if self.pending is None:
            self.counter += 1
            message = b"message %d" % self.counter
            self.pending = (message, now)
            self.transport.write(masked_text(message))
            self.stats.sent += 1
        self.timer = asyncio.get_running_loop().call_later(self.interval * random.uniform(0.8, 1.2), self._send)

    def close(self) -> None:
        self.closing = True
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(masked_control(0x8, b"\x03\xe8"))

    def _error(self, kind: str) -> None:
        self.stats.errors[kind] += 1
        if not self.handshake_done.done():
            self.handshake_done.set_result(False)
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.opened:
            self.stats.open -= 1
        if not self.closing:
            self._error("connection lost")
        if not self.handshake_done.done():
            self.handshake_done.set_result(False)
        if self.timer is not None:
            self.timer.cancel()


async def open_clients(port: int, count: int, interval: float, stats: Stats) -> list[WebSocketClient]:
    loop = asyncio.get_running_loop()
    clients: list[WebSocketClient] = []
    gate = asyncio.Semaphore(200)

    async def one() -> None:
        async with gate:
            done: asyncio.Future[bool] = loop.create_future()
            client = WebSocketClient(stats, f"127.0.0.1:{port}", interval, done)
            try:
                await loop.create_connection(lambda: client, "127.0.0.1", port)
            except OSError as exc:
                stats.errors[f"connect: {exc.strerror or exc}"] += 1
                return
            clients.append(client)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), 30)

    await asyncio.gather(*(one() for _ in range(count)))
    return clients


async def websocket_phase(port: int, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    stats = Stats()
    idle_rss = rss_mb(pid)
    start = time.monotonic()
    clients = await open_clients(port, args.ws_connections, args.interval, stats)
    ramp = time.monotonic() - start
    print(f"ws: {stats.open} connections open in {ramp:.1f}s; server RSS {rss_mb(pid):.1f} MB "
          f"({idle_rss:.1f} MB before)", flush=True)
    samples = []
    end = time.monotonic() + args.minutes * 60
    while (remaining := end - time.monotonic()) > 0:
        await asyncio.sleep(min(args.sample, remaining))  # the soak's own pace
        sample = {"t": round(time.monotonic() - start), "open": stats.open, "sent": stats.sent,
                  "echoed": stats.echoed, "pings": stats.pings, "errors": sum(stats.errors.values()),
                  "rss_mb": round(rss_mb(pid), 1)}
        samples.append(sample)
        print("ws: " + " ".join(f"{k}={v}" for k, v in sample.items()), flush=True)
    for client in clients:
        client.close()
    await asyncio.sleep(2)  # let the closing handshakes finish before counting
    rss = [s["rss_mb"] for s in samples] or [rss_mb(pid)]
    return {
        "connections": args.ws_connections, "opened": len(clients), "ramp_seconds": round(ramp, 1),
        "minutes": args.minutes, "interval": args.interval, "sent": stats.sent, "echoed": stats.echoed,
        "pings_answered": stats.pings, "worst_echo_seconds": round(stats.worst_echo, 3),
        "errors": dict(stats.errors), "rss_idle_mb": round(idle_rss, 1), "rss_first_mb": rss[0],
        "rss_last_mb": rss[-1], "rss_max_mb": max(rss),
        "rss_growth_percent": round(100 * (rss[-1] - rss[0]) / rss[0], 1), "samples": samples,
    }


# -- HTTP requests ---------------------------------------------------------------------------


async def http_connection(port: int, requests: int, depth: int, done: list[int], errors: Counter[str]) -> None:
    request = b"GET /soak HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        errors[f"connect: {exc.strerror or exc}"] += 1
        return
    remaining = requests
    try:
        while remaining:
            batch = min(depth, remaining)
            writer.write(request * batch)
            for _ in range(batch):
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200 "):
                    errors["unexpected status"] += 1
                length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
                if await reader.readexactly(length) != HELLO:
                    errors["unexpected body"] += 1
            remaining -= batch
            done[0] += batch
    except (OSError, asyncio.IncompleteReadError) as exc:
        errors[f"request failed: {type(exc).__name__}"] += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def http_phase(port: int, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    done = [0]
    errors: Counter[str] = Counter()
    per_connection, extra = divmod(args.http_requests, args.http_connections)
    start = time.monotonic()
    rss_start = rss_mb(pid)
    tasks = [asyncio.create_task(http_connection(port, per_connection + (i < extra), args.depth, done, errors))
             for i in range(args.http_connections)]
    samples = []
    step = max(args.http_requests // 10, 1)
    next_mark = step
    while not all(task.done() for task in tasks):
        await asyncio.sleep(0.2)  # sampling pace
        if done[0] >= next_mark:
            samples.append({"requests": done[0], "seconds": round(time.monotonic() - start, 1),
                            "rss_mb": round(rss_mb(pid), 1)})
            print("http: " + " ".join(f"{k}={v}" for k, v in samples[-1].items()), flush=True)
            next_mark += step
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    rss_end = rss_mb(pid)
    baseline = samples[0]["rss_mb"] if samples else rss_start
    return {
        "requests": done[0], "connections": args.http_connections, "depth": args.depth,
        "seconds": round(elapsed, 1), "requests_per_second": round(done[0] / elapsed),
        "errors": dict(errors), "rss_start_mb": round(rss_start, 1), "rss_after_first_10_percent_mb": baseline,
        "rss_end_mb": round(rss_end, 1), "rss_growth_percent": round(100 * (rss_end - baseline) / baseline, 1),
        "samples": samples,
    }


# -- main ------------------------------------------------------------------------------------


def raise_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, soft)), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < needed:
        print(f"warning: only {resource.getrlimit(resource.RLIMIT_NOFILE)[0]} file descriptors allowed",
              file=sys.stderr)


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    process = start_server(port, args.loop)
    result: dict[str, Any] = {"loop": args.loop}
    try:
        if not args.skip_ws:
            result["websocket"] = await websocket_phase(port, process.pid, args)
        if not args.skip_http:
            result["http"] = await http_phase(port, process.pid, args)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        result["server_exit_code"] = process.returncode
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ws-connections", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between a connection's messages")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between report lines")
    parser.add_argument("--http-requests", type=int, default=1_000_000)
    parser.add_argument("--http-connections", type=int, default=50)
    parser.add_argument("--depth", type=int, default=16, help="pipelined requests per connection")
    parser.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    parser.add_argument("--skip-ws", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--json", help="also write the summary to this file")
    args = parser.parse_args()
    raise_file_limit(args.ws_connections + args.http_connections + 100)
    if args.loop == "uvloop":
        import uvloop

        result = uvloop.run(soak(args))
    else:
        result = asyncio.run(soak(args))
    summary = json.dumps(result)
    print(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
