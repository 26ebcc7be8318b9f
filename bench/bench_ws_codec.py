"""Micro-benchmarks of the WebSocket protocol core, in microseconds per operation.

Run with ``python bench/bench_ws_codec.py``. Each line is the best of a few
rounds of a tight ``time.perf_counter`` loop, which is the number to compare
before and after a change to the hot path on the same machine.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Callable

from asgisock.ws.connection import WebSocketConnection
from asgisock.ws.deflate import PerMessageDeflate
from asgisock.ws.frames import Opcode, build_frame
from asgisock.ws.mask import MASK_IMPLEMENTATION, apply_mask, apply_mask_python

MaskFunction = Callable[[bytes, bytes], bytes]
apply_mask_c: MaskFunction | None
try:
    from asgisock.ws._speedups import apply_mask as apply_mask_c
except ImportError:
    apply_mask_c = None

KEY = b"\x12\x34\x56\x78"


def client_frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    length = len(payload)
    if length < 126:
        header = bytes((first, 0x80 | length))
    elif length < 65536:
        header = struct.pack("!BBH", first, 0xFE, length)
    else:
        header = struct.pack("!BBQ", first, 0xFF, length)
    return header + KEY + apply_mask(payload, KEY)


def measure(name: str, func: Callable[[], object], target_seconds: float = 0.2) -> None:
    func()
    count = 1
    while True:
        start = time.perf_counter()
        for _ in range(count):
            func()
        elapsed = time.perf_counter() - start
        if elapsed > target_seconds / 5:
            break
        count *= 2
    best = elapsed
    for _ in range(4):
        start = time.perf_counter()
        for _ in range(count):
            func()
        best = min(best, time.perf_counter() - start)
    print(f"{name:<48} {best / count * 1e6:10.2f} µs")


def parse(frame: bytes, deflate: PerMessageDeflate | None = None) -> Callable[[], object]:
    conn = WebSocketConnection(max_size=None, deflate=deflate)

    def run() -> object:
        conn.receive_data(frame)
        return conn.events_received()

    return run


def main() -> None:
    print(f"apply_mask implementation: {MASK_IMPLEMENTATION}")
    text16 = client_frame(Opcode.TEXT, b"0123456789abcdef")
    binary64k = client_frame(Opcode.BINARY, os.urandom(65536))
    measure("parse 16-byte masked text frame", parse(text16))
    measure("parse 64 KiB masked binary frame", parse(binary64k))
    measure("parse 64 KiB binary frame in 4 KiB reads", parse_in_reads(binary64k, 4096))
    measure("build 16-byte text frame", lambda: build_frame(Opcode.TEXT, b"0123456789abcdef"))
    measure("build 64 KiB binary frame", lambda: build_frame(Opcode.BINARY, bytes(65536)))
    conn = WebSocketConnection()
    measure("send_text 16 bytes + data_to_send", lambda: send_text(conn, "0123456789abcdef"))
    for size in (16, 65536, 1 << 20):
        label = f"{size} B" if size < 1024 else f"{size >> 10} KiB"
        if apply_mask_c is not None:
            measure(f"apply_mask C {label}", masking(apply_mask_c, size))
        measure(f"apply_mask python {label}", masking(apply_mask_python, size))
    text = ("héllo wörld, κόσμε " * 4000).encode()[:65536].decode("utf-8", "ignore")
    encoded = text.encode()
    measure("UTF-8 validation of 64 KiB (bytes.decode)", lambda: encoded.decode("utf-8"))
    text64k = client_frame(Opcode.TEXT, encoded)
    measure("parse 64 KiB masked text frame", parse(text64k))
    measure("parse 64 KiB text frame in 4 KiB reads", parse_in_reads(text64k, 4096))
    deflate_benchmarks(text.encode())


def masking(function: MaskFunction, size: int) -> Callable[[], object]:
    data = os.urandom(size)
    return lambda: function(data, KEY)


def parse_in_reads(frame: bytes, size: int) -> Callable[[], object]:
    conn = WebSocketConnection(max_size=None)
    chunks = [frame[i : i + size] for i in range(0, len(frame), size)]

    def run() -> object:
        for chunk in chunks:
            conn.receive_data(chunk)
        return conn.events_received()

    return run


def send_text(conn: WebSocketConnection, text: str) -> bytes:
    conn.send_text(text)
    return conn.data_to_send()


def deflate_benchmarks(payload: bytes) -> None:
    compressor = zlib.compressobj(wbits=-15)
    compressed = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    frame = client_frame(Opcode.TEXT, compressed[:-4], rsv1=True)
    small = zlib.compressobj(wbits=-15)
    small_compressed = small.compress(b"0123456789abcdef") + small.flush(zlib.Z_SYNC_FLUSH)
    small_frame = client_frame(Opcode.TEXT, small_compressed[:-4], rsv1=True)

    def fresh() -> PerMessageDeflate:
        return PerMessageDeflate(client_no_context_takeover=True)

    measure("parse compressed 16-byte text message", parse(small_frame, deflate=fresh()))
    measure("parse compressed 64 KiB text message", parse(frame, deflate=fresh()))
    # Each frame was compressed on its own, so it also inflates after itself with the context kept.
    kept = PerMessageDeflate
    measure("parse compressed 16-byte text (context kept)", parse(small_frame, deflate=kept()))
    measure("parse compressed 64 KiB text (context kept)", parse(frame, deflate=kept()))
    sender = PerMessageDeflate(server_no_context_takeover=False)
    measure("compress 16-byte message (context kept)", lambda: sender.compress(b"0123456789abcdef"))
    measure("compress 64 KiB text message (context kept)", lambda: sender.compress(payload))


if __name__ == "__main__":
    main()
