"""WebSocket (and idle HTTP) load generator for the benchmarks, built to cost less than a server.

The server under test spends per message: an ASGI event, a task switch or two, a parsed and
unmasked frame, a built frame. This client spends per message one ``data_received`` call, a
few integer operations on the frame header (the payload is skipped, never copied, unmasked or
decoded), one ``perf_counter_ns()`` and one ``transport.write()`` of a frame that was built and
masked once at start-up with a fixed key. It runs on uvloop with plain ``asyncio.Protocol``
objects, no client library. ``run.py`` pins it to its own core and records its CPU use next to
the server's: a generator at well under 100% of its core while the server's core is full is
not the bottleneck.

With ``--ca-file`` every connection is TLS (``wss://``, or ``https://`` for idle HTTP) through
uvloop's TLS layer, verifying the server's certificate against that CA. Each message then also
costs the client one decryption and one encryption in OpenSSL, and the received payload is
decrypted into a new ``bytes`` before it is skipped over. uvloop decrypts with
``SSLObject.read(256 KiB)``, which allocates 256 KiB and shrinks the block to what was read. That
size is above glibc's initial mmap threshold (128 KiB), which glibc raises only when such a
block is freed whole, which happens when a read finds no application data. Until then every
read costs an ``mmap``, an ``mremap`` and a ``munmap``; whether the threshold is ever raised
depends on how the server's records happen to arrive, so it differed from server to server
(measured: one of each per read against asgisock and the ceiling, none against uvicorn),
making the generator up to three times dearer per message for some servers than for others.
With ``--ca-file`` wsload therefore fixes glibc's mmap and trim thresholds above that size
first (``steady_malloc``), so every server is measured by the same client.

Modes (each prints one JSON object as its last line of output):

``echo``       N connections, one message in flight on each: messages/s and round-trip times.
``broadcast``  N connections; one sends a trigger, the app fans it out to all N; counts
               deliveries/s. ``--depth`` triggers are kept in flight so the server never waits.
``idle``       opens N WebSocket (or ``--http`` keep-alive) connections and holds them while
               ``run.py`` reads the server's memory; driven by lines on stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import resource
import ssl
import sys
import time
import zlib
from array import array
from collections.abc import Callable
from typing import Any, Final

import procstat
import uvloop

MASK_KEY: Final = b"\x5a\x3c\x96\xe1"
HANDSHAKE_KEY: Final = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's own sample nonce
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
HELLO: Final = b"Hello, world!"
OPEN_CONCURRENCY: Final = 100
OPEN_TIMEOUT: Final = 60.0
# glibc's mallopt() parameters (malloc.h), and values above uvloop's 256 KiB TLS read size.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD: Final = 1 << 20
TRIM_THRESHOLD: Final = 4 << 20


def mask(payload: bytes, key: bytes = MASK_KEY) -> bytes:
    """XOR with the 4-byte key (RFC 6455 §5.3); used only while building frames up front."""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return masked.to_bytes(len(payload), "big")


def client_frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    """A complete masked client frame (RFC 6455 §5.2: 'MUST mask all frames')."""
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    length = len(payload)
    if length < 126:
        head = bytes((first, 0x80 | length))
    elif length < 65536:
        head = bytes((first, 0xFE)) + length.to_bytes(2, "big")
    else:
        head = bytes((first, 0xFF)) + length.to_bytes(8, "big")
    return head + MASK_KEY + mask(payload)


def deflated(payload: bytes) -> bytes:
    """One message compressed on its own (RFC 7692 §7.2.1), so the frame can be resent as is."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def handshake(host: str, port: int, path: str, deflate: bool) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {HANDSHAKE_KEY}",
        "Sec-WebSocket-Version: 13",
    ]
    if deflate:
        lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


class Run:
    """What every connection of one run shares: frames to send, counters, the clock."""

    def __init__(self, frame: bytes, expect_length: int) -> None:
        self.frame = frame
        self.expect_length = expect_length  # payload length of each echo; -1 when compressed
        self.sending = True
        self.recording = False
        self.latencies = array("q")
        self.mismatches = 0
        self.lost = 0
        self.deflate_negotiated: bool | None = None
        self.delivered = 0
        self.next_trigger_at = 0
        self.group = 1
        self.trigger: WebSocketClient | None = None


class WebSocketClient(asyncio.Protocol):
    """One client connection; counts complete data frames, answers pings."""

    def __init__(self, run: Run, request: bytes, on_message: Callable[[WebSocketClient], None]):
        self.run = run
        self.request = request
        self.on_message = on_message
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buffer = b""
        self.need = 0
        self.upgraded = False
        self.closing = False
        self.count = 0
        self.sent_at = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.run.lost += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed during the handshake"))

    def data_received(self, data: bytes) -> None:
        if self.upgraded:
            self.frames(data)
        else:
            self.handshake_response(data)

    def handshake_response(self, data: bytes) -> None:
        data = self.buffer + data
        end = data.find(b"\r\n\r\n")
        if end == -1:
            self.buffer = data
            return
        head, self.buffer = data[:end].lower(), b""
        if not head.startswith(b"http/1.1 101"):
            self.ready.set_exception(ConnectionError(head.split(b"\r\n", 1)[0].decode()))
            return
        self.run.deflate_negotiated = b"permessage-deflate" in head
        self.upgraded = True
        self.ready.set_result(None)
        if len(data) > end + 4:
            self.frames(data[end + 4 :])

    def frames(self, data: bytes) -> None:
        """Skip over frames, calling on_message once per complete data frame.

        Only the header is read; a payload split over reads is skipped by counting ``need``.
        """
        need = self.need
        size = len(data)
        if need:
            if need > size:
                self.need = need - size
                return
            self.need = 0
            pos = need
            self.on_message(self)
        else:
            pos = 0
            if self.buffer:
                data = self.buffer + data
                size = len(data)
                self.buffer = b""
        while pos < size:
            if size - pos < 2:
                self.buffer = data[pos:]
                return
            opcode = data[pos] & 0x0F
            length = data[pos + 1] & 0x7F
            head = 2
            if length == 126:
                head = 4
                if size - pos < 4:
                    self.buffer = data[pos:]
                    return
                length = (data[pos + 2] << 8) | data[pos + 3]
            elif length == 127:
                head = 10
                if size - pos < 10:
                    self.buffer = data[pos:]
                    return
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            if opcode >= CLOSE:
                if size - pos < head + length:
                    self.buffer = data[pos:]
                    return
                self.control(opcode, data[pos + head : pos + head + length])
                pos += head + length
                continue
            if length != self.run.expect_length and self.run.expect_length >= 0:
                self.run.mismatches += 1
            pos += head + length
            if pos > size:
                self.need = pos - size
                return
            self.on_message(self)

    def control(self, opcode: int, payload: bytes) -> None:
        if opcode == PING:
            self.transport.write(client_frame(PONG, payload))
        elif opcode == CLOSE and not self.closing:
            self.closing = True
            self.run.lost += 1
            self.transport.write(client_frame(CLOSE, payload[:2]))
            self.transport.close()

    def close(self) -> None:
        if not self.closing and not self.transport.is_closing():
            self.closing = True
            self.transport.write(client_frame(CLOSE, (1000).to_bytes(2, "big")))
            self.transport.close()


class HTTPIdleClient(asyncio.Protocol):
    """Sends one keep-alive request, reads the 13-byte answer, then stays silent."""

    def __init__(self, run: Run, request: bytes) -> None:
        self.run = run
        self.request = request
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.received = b""
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.received += data
        if self.received.endswith(HELLO) and not self.ready.done():
            self.ready.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.run.lost += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the response"))

    def close(self) -> None:
        self.closing = True
        self.transport.close()


# ------------------------------------------------------------------------------ callbacks


def echo_message(client: WebSocketClient) -> None:
    run = client.run
    now = time.perf_counter_ns()
    client.count += 1
    if run.recording:
        run.latencies.append(now - client.sent_at)
    if run.sending:
        client.sent_at = now
        client.transport.write(run.frame)


def broadcast_message(client: WebSocketClient) -> None:
    run = client.run
    run.delivered += 1
    if run.delivered >= run.next_trigger_at and run.sending and run.trigger is not None:
        run.next_trigger_at += run.group
        run.trigger.transport.write(run.frame)


def idle_message(client: WebSocketClient) -> None:
    client.count += 1


# ------------------------------------------------------------------------------ driving


async def open_connections(
    args: argparse.Namespace, count: int, factory: Callable[[], Any]
) -> list[Any]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def one() -> Any:
        async with gate:
            _, protocol = await loop.create_connection(factory, args.host, args.port,
                                                       ssl=args.ssl_context)
            await asyncio.wait_for(protocol.ready, OPEN_TIMEOUT)
            return protocol

    return list(await asyncio.gather(*(one() for _ in range(count))))


def percentile(sorted_values: array[int], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index] / 1000.0  # microseconds


class Window:
    """CPU use of this process and of the server over the measured interval."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pids = procstat.tree(server_pid) if server_pid else []

    def start(self) -> None:
        self.wall = time.perf_counter()
        self.own = self.own_cpu()
        self.server = procstat.cpu_seconds(self.server_pids)

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall
        result = {
            "seconds": wall,
            "client_cpu": (self.own_cpu() - self.own) / wall,
        }
        if self.server_pids:
            result["server_cpu"] = (procstat.cpu_seconds(self.server_pids) - self.server) / wall
        return result

    @staticmethod
    def own_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime


def message_frame(args: argparse.Namespace, deflate: bool) -> tuple[bytes, int]:
    """The frame every send reuses, and the payload length an echo of it must have."""
    if args.binary:
        payload = (bytes(range(256)) * (args.size // 256 + 1))[: args.size]
    else:
        payload = (b"Hello, WebSocket" * (args.size // 16 + 1))[: args.size]
    opcode = BINARY if args.binary else TEXT
    if deflate:
        return client_frame(opcode, deflated(payload), rsv1=True), -1
    return client_frame(opcode, payload), len(payload)


async def negotiate(args: argparse.Namespace) -> bool:
    """Open one connection to learn whether the server accepts permessage-deflate."""
    run = Run(b"", -1)
    request = handshake(args.host, args.port, args.path, args.deflate)
    [probe] = await open_connections(
        args, 1, lambda: WebSocketClient(run, request, idle_message)
    )
    probe.close()
    return bool(run.deflate_negotiated)


async def echo(args: argparse.Namespace) -> dict[str, Any]:
    deflate = await negotiate(args) if args.deflate else False
    frame, expect = message_frame(args, deflate)
    run = Run(frame, expect)
    request = handshake(args.host, args.port, args.path, deflate)
    clients: list[WebSocketClient] = await open_connections(
        args, args.connections, lambda: WebSocketClient(run, request, echo_message)
    )
    for client in clients:
        client.sent_at = time.perf_counter_ns()
        client.transport.write(frame)
    await asyncio.sleep(args.warmup)
    window = Window(args.server_pid)
    before = sum(c.count for c in clients)
    run.recording = True
    window.start()
    await asyncio.sleep(args.duration)
    run.recording = False
    measured = window.stop()
    messages = sum(c.count for c in clients) - before
    run.sending = False
    await finish(clients)
    latencies = array("q", sorted(run.latencies))
    return {
        "mode": "echo",
        "connections": args.connections,
        "size": args.size,
        "binary": args.binary,
        "deflate_offered": args.deflate,
        "deflate_negotiated": deflate,
        "messages": messages,
        "messages_per_s": messages / measured["seconds"],
        "p50_us": percentile(latencies, 0.50),
        "p99_us": percentile(latencies, 0.99),
        "mismatches": run.mismatches,
        "lost": run.lost,
        **measured,
    }


async def broadcast(args: argparse.Namespace) -> dict[str, Any]:
    frame, expect = message_frame(args, False)
    run = Run(frame, expect)
    request = handshake(args.host, args.port, args.path, False)
    clients: list[WebSocketClient] = await open_connections(
        args, args.connections, lambda: WebSocketClient(run, request, broadcast_message)
    )
    await asyncio.sleep(0.5)  # let every app task subscribe before the first trigger
    run.trigger = clients[0]
    run.group = args.connections
    run.next_trigger_at = args.connections
    for _ in range(args.depth):
        run.trigger.transport.write(frame)
    await asyncio.sleep(args.warmup)
    window = Window(args.server_pid)
    before = run.delivered
    window.start()
    await asyncio.sleep(args.duration)
    measured = window.stop()
    delivered = run.delivered - before
    run.sending = False
    await finish(clients)
    return {
        "mode": "broadcast",
        "connections": args.connections,
        "size": args.size,
        "depth": args.depth,
        "delivered": delivered,
        "messages_per_s": delivered / measured["seconds"],
        "mismatches": run.mismatches,
        "lost": run.lost,
        **measured,
    }


async def finish(clients: list[Any]) -> None:
    await asyncio.sleep(0.2)  # replies in flight
    for client in clients:
        client.close()
    await asyncio.sleep(0.2)


async def wait_for_line() -> str:
    line: str = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return line.strip()


def report(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def idle(args: argparse.Namespace) -> dict[str, Any]:
    """Warm the server with a few connections, then hold N open until told to close."""
    run = Run(b"", -1)
    if args.http:
        request = f"GET / HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n\r\n".encode()

        def factory() -> Any:
            return HTTPIdleClient(run, request)

    else:
        request = handshake(args.host, args.port, args.path, False)

        def factory() -> Any:
            return WebSocketClient(run, request, idle_message)

    warm = await open_connections(args, args.warm_connections, factory)
    await finish(warm)
    run.lost = 0
    report("baseline")
    await wait_for_line()
    started = time.perf_counter()
    clients = await open_connections(args, args.connections, factory)
    report("ready", open=len(clients), seconds=time.perf_counter() - started)
    await wait_for_line()
    lost = run.lost
    await finish(clients)
    return {"mode": "idle", "http": args.http, "connections": len(clients), "lost": lost}


def raise_file_limit() -> int:
    """Lift the soft limit on open files to the hard one; return the new limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def steady_malloc() -> bool:
    """Serve the 256 KiB TLS read buffers from the heap, never from mmap (see the module
    docstring); whether glibc took the settings."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    # Fixed thresholds also stop glibc's own adjustments, and the trim threshold keeps the
    # heap from being shrunk (brk) after each read and grown again for the next.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("mode", choices=["echo", "broadcast", "idle"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/echo")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--size", type=int, default=16, help="payload bytes per message")
    parser.add_argument("--binary", action="store_true", help="binary messages (default text)")
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    parser.add_argument("--depth", type=int, default=2, help="broadcast triggers in flight")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--http", action="store_true", help="idle: HTTP keep-alive connections")
    parser.add_argument("--warm-connections", type=int, default=100)
    parser.add_argument("--server-pid", type=int, help="also report this process tree's CPU")
    parser.add_argument("--ca-file", help="connect over TLS, trusting the CA in this PEM file")
    args = parser.parse_args(argv)
    args.ssl_context = ssl.create_default_context(cafile=args.ca_file) if args.ca_file else None
    return args


async def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.mode == "echo":
        return await echo(args)
    if args.mode == "broadcast":
        return await broadcast(args)
    return await idle(args)


if __name__ == "__main__":
    arguments = parse_args(None)
    limit = raise_file_limit()
    if arguments.connections + 64 > limit:
        sys.exit(f"wsload: {arguments.connections} connections need more than {limit} files")
    if arguments.ssl_context is not None and not steady_malloc():
        print("wsload: mallopt() unavailable: TLS reads may each cost an mmap", file=sys.stderr)
    result = uvloop.run(main(arguments))
    report("result", **result)
