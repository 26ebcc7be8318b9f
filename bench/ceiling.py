"""The ceiling: what Python on uvloop can serve at all, with no ASGI and no real parsing.

A bare ``asyncio.Protocol`` that answers every benchmark scenario with the least work that
still puts the right bytes on the wire: canned HTTP responses found by scanning for the end of
each request head, and WebSocket frames echoed back (unmasked with a C routine, re-framed,
re-compressed when permessage-deflate is on). It knows only what the load generators send, so
it is a yardstick, not a server: each ASGI server's result is also reported as a fraction of
this one's, which says how much of the remaining distance is the server's own overhead.

Run: ``python bench/ceiling.py --port 8000``; with ``--ssl-certfile`` and ``--ssl-keyfile`` it
serves the same over TLS, through uvloop's own TLS layer with the standard library's defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import signal
import ssl
import zlib
from collections.abc import Callable
from typing import Final

import uvloop

# The C unmasking loop that ships with websockets (in the bench venv as uvicorn's dependency):
# a ceiling must not be held back by pure-Python XOR.
from websockets.speedups import apply_mask

HELLO: Final = b"Hello, world!"
PLAIN: Final = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n" + HELLO
)
PLAIN_BY_COUNT: Final = [PLAIN * n for n in range(33)]
PLAIN_CLOSE: Final = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
    b"Connection: close\r\n\r\n" + HELLO
)
CHUNK: Final = b"x" * 65536
STREAM: Final = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
    + b"10000\r\n" + b"\r\n10000\r\n".join([CHUNK] * 16) + b"\r\n0\r\n\r\n"
)
CLOSE: Final = b"Connection: close"
GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SWITCHING: Final = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
)
DEFLATE_RESPONSE: Final = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
SYNC_TAIL: Final = b"\x00\x00\xff\xff"

BROADCAST: Final[set[asyncio.Transport]] = set()


def header_value(buf: bytes, start: int, end: int, name: bytes) -> bytes | None:
    """The value of header ``name`` (exact case, as the load generators send it)."""
    at = buf.find(name, start, end)
    if at == -1:
        return None
    at += len(name)
    return buf[at : buf.find(b"\r\n", at, end + 2)].strip()


def server_frame(opcode_byte: int, payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        return bytes((opcode_byte, length)) + payload
    if length < 65536:
        return bytes((opcode_byte, 126)) + length.to_bytes(2, "big") + payload
    return bytes((opcode_byte, 127)) + length.to_bytes(8, "big") + payload


class CeilingProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.body_left = 0
        self.on_data: Callable[[bytes], None] = self.http_data
        self.inflater: zlib._Decompress | None = None
        self.deflater: zlib._Compress | None = None
        self.broadcast = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        BROADCAST.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.on_data(data)

    # -- HTTP ---------------------------------------------------------------------------
    def http_data(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
            self.buffer = b""
        pos, size, answered = 0, len(data), 0
        if self.body_left:
            skipped = min(self.body_left, size)
            self.body_left -= skipped
            pos = skipped
        while pos < size:
            end = data.find(b"\r\n\r\n", pos)
            if end == -1:
                self.buffer = data[pos:]
                break
            if data.startswith(b"GET / HTTP", pos) and data.find(CLOSE, pos, end) == -1:
                answered += 1
            elif not self.special_request(data, pos, end):
                return
            pos = end + 4
            if self.body_left:
                skipped = min(self.body_left, size - pos)
                self.body_left -= skipped
                pos += skipped
        if answered:
            self.transport.write(
                PLAIN_BY_COUNT[answered] if answered <= 32 else PLAIN * answered
            )

    def special_request(self, data: bytes, pos: int, end: int) -> bool:
        """Anything but a plain GET /; False once the connection is no longer HTTP."""
        if data.startswith(b"POST", pos):
            length = header_value(data, pos, end, b"Content-Length:")
            self.body_left = int(length or 0)
            self.transport.write(PLAIN)
        elif data.find(b"Upgrade: websocket", pos, end) != -1:
            self.upgrade(data, pos, end)
            return False
        elif data.startswith((b"GET /stream", b"GET /file"), pos):  # 1 MiB, however it is made
            self.transport.write(STREAM)
        elif data.find(CLOSE, pos, end) != -1:
            self.transport.write(PLAIN_CLOSE)
            self.transport.close()
            return False
        else:
            self.transport.write(PLAIN)
        return True

    # -- WebSocket ----------------------------------------------------------------------
    def upgrade(self, data: bytes, pos: int, end: int) -> None:
        key = header_value(data, pos, end, b"Sec-WebSocket-Key:") or b""
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        head = SWITCHING + b"Sec-WebSocket-Accept: " + accept + b"\r\n"
        if data.find(b"permessage-deflate", pos, end) != -1:
            head += DEFLATE_RESPONSE
            self.inflater = zlib.decompressobj(-15)
            self.deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.transport.write(head + b"\r\n")
        if data.startswith(b"GET /broadcast", pos):
            self.broadcast = True
            BROADCAST.add(self.transport)
        self.buffer = data[end + 4 :]
        self.on_data = self.ws_data
        if self.buffer:
            self.ws_data(b"")

    def ws_data(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
            self.buffer = b""
        pos, size = 0, len(data)
        while size - pos >= 6:
            first, length = data[pos], data[pos + 1] & 0x7F
            head = 6
            if length == 126:
                head = 8
                if size - pos < head:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            elif length == 127:
                head = 14
                if size - pos < head:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            if size - pos < head + length:
                break
            start = pos + head
            payload = apply_mask(data[start : start + length], data[start - 4 : start])
            pos = start + length
            self.ws_frame(first, payload)
        if pos < size:
            self.buffer = data[pos:]

    def ws_frame(self, first: int, payload: bytes) -> None:
        opcode = first & 0x0F
        if opcode == 0x8:
            self.transport.write(server_frame(0x88, payload[:2]))
            self.transport.close()
            return
        if opcode == 0x9:
            self.transport.write(server_frame(0x8A, payload))
            return
        if opcode == 0xA:
            return
        if first & 0x40 and self.inflater is not None and self.deflater is not None:
            message = self.inflater.decompress(payload + SYNC_TAIL)
            out = self.deflater.compress(message) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
            frame = server_frame(first, out[:-4])
        else:
            frame = server_frame(first, payload)
        if self.broadcast:
            for transport in BROADCAST:
                transport.write(frame)
        else:
            self.transport.write(frame)


async def serve(host: str, port: int, backlog: int, context: ssl.SSLContext | None) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set_result, None)
    server = await loop.create_server(CeilingProtocol, host, port, backlog=backlog, ssl=context)
    async with server:
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(description="Bare uvloop protocol: the benchmark ceiling.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--backlog", type=int, default=2048)
    parser.add_argument("--ssl-certfile", help="serve over TLS with this certificate (chain)")
    parser.add_argument("--ssl-keyfile", help="the certificate's key")
    args = parser.parse_args()
    context = None
    if args.ssl_certfile:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.ssl_certfile, args.ssl_keyfile)
    uvloop.run(serve(args.host, args.port, args.backlog, context))


if __name__ == "__main__":
    main()
