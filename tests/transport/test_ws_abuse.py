"""Hostile WebSocket clients against a real server: bad handshakes, bad frames, a compression bomb,
frames a byte at a time, a ping flood and a close storm.

Each case checks the exact answer (an HTTP status, or the close code of the server's close frame
and then the end of TCP), what the app saw, bounded memory where that is the point, and that a
well-behaved client is served right after.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import select
import socket
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.sync.client import connect

from asgisock.types import Receive, Send
from tests.support import RunningServer, serve, timeout

MAX_SIZE = 65536
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
DEFLATE = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"


@dataclass
class Sessions:
    """An echo app that records every session's disconnect code; answers plain HTTP too."""

    codes: dict[str, int] = field(default_factory=dict)
    """The disconnect code of each session, by path (every test uses paths of its own)."""
    http: list[str] = field(default_factory=list)
    opened: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.http.append(scope["path"])
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"plain http"})
            return
        await receive()
        await send({"type": "websocket.accept"})
        self.opened += 1
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                with self.changed:
                    self.codes[scope["path"]] = message["code"]
                    self.changed.notify_all()
                return
            await send({"type": "websocket.send", **{k: v for k, v in message.items() if k != "type"}})

    def code(self, path: str) -> int:
        """Wait until the session on ``path`` has ended; its disconnect code."""
        return self.codes_of([path])[0]

    def codes_of(self, paths: list[str]) -> list[int]:
        with self.changed:
            assert self.changed.wait_for(lambda: all(p in self.codes for p in paths), timeout(10))
            return [self.codes[p] for p in paths]


PATHS = itertools.count()


def new_path() -> str:
    return f"/ws/{next(PATHS)}"


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def ws_server(request: pytest.FixtureRequest) -> Iterator[tuple[RunningServer, Sessions]]:
    sessions = Sessions()
    with serve(sessions, loop=request.param, ws_max_size=MAX_SIZE, timeout_graceful_shutdown=1) as server:
        yield server, sessions


def handshake_request(extra: bytes = b"", *, key: bytes = KEY, version: bytes = b"13",
                      method: bytes = b"GET", http: bytes = b"HTTP/1.1", path: str = "/ws") -> bytes:
    return (method + b" " + path.encode() + b" " + http + b"\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: " + version + b"\r\n" + extra + b"\r\n")


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, length: bytes | None = None,
          masked: bool = True) -> bytes:
    """A client frame; ``length`` replaces the encoded payload length (7-bit field and extension)."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    mask_bit = 0x80 if masked else 0
    if length is not None:
        head = bytes([first, mask_bit | length[0]]) + length[1:]
    elif len(payload) < 126:
        head = bytes([first, mask_bit | len(payload)])
    elif len(payload) < 65536:
        head = bytes([first, mask_bit | 126]) + struct.pack("!H", len(payload))
    else:
        head = bytes([first, mask_bit | 127]) + struct.pack("!Q", len(payload))
    if not masked:
        return head + payload
    key = os.urandom(4)
    mask = (key * (len(payload) // 4 + 1))[: len(payload)]
    return head + key + (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(len(payload), "big")


def open_socket(server: RunningServer, extra: bytes = b"", path: str = "/ws") -> socket.socket:
    sock = server.connect()
    sock.sendall(handshake_request(extra, path=path))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(data)
        data += chunk
    return data


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One server frame (never masked): opcode and payload."""
    first, second = read_exactly(sock, 2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", read_exactly(sock, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", read_exactly(sock, 8))[0]
    return first & 0x0F, read_exactly(sock, length)


def close_code(sock: socket.socket) -> int:
    """Skip data frames to the server's close frame; its code, after which TCP must end."""
    while True:
        opcode, payload = read_frame(sock)
        if opcode == 0x8:
            # Closed with our unread bytes still in its buffer, TCP may end with a reset.
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1) == b"", "data after the close frame"
            return int(struct.unpack("!H", payload[:2])[0]) if payload else 1005


def assert_serves_others(server: RunningServer) -> None:
    with connect(server.ws_url + "/others", open_timeout=timeout(5)) as ws:
        ws.send("still here")
        assert ws.recv(timeout(5)) == "still here"


def connection_count(server: RunningServer) -> int:
    state = server.server.state
    assert state is not None
    return int(server.call(lambda: len(state.connections)))


def deflate(data: bytes) -> bytes:
    """A permessage-deflate payload (RFC 7692 §7.2.1): raw deflate without the final empty block."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


# -- handshakes -----------------------------------------------------------------------------

BAD_HANDSHAKES = [
    ("version-8", handshake_request(version=b"8"), 426),
    ("version-missing", handshake_request().replace(b"Sec-WebSocket-Version: 13\r\n", b""), 426),
    ("version-twice", handshake_request(b"Sec-WebSocket-Version: 13\r\n"), 426),
    ("key-missing", handshake_request().replace(b"Sec-WebSocket-Key: " + KEY + b"\r\n", b""), 400),
    ("key-short", handshake_request(key=base64.b64encode(b"x" * 15)), 400),
    ("key-long", handshake_request(key=base64.b64encode(b"x" * 17)), 400),
    ("key-not-base64", handshake_request(key=b"!" * 24), 400),
    ("key-twice", handshake_request(b"Sec-WebSocket-Key: " + KEY + b"\r\n"), 400),
    ("method-post", handshake_request(method=b"POST"), 400),
    ("http-1.0", handshake_request(http=b"HTTP/1.0"), 400),
    ("host-missing", handshake_request().replace(b"Host: x\r\n", b""), 400),
    ("with-body", handshake_request(b"Content-Length: 4\r\n") + b"\x81\x80abcd", 400),
    ("with-chunked-body", handshake_request(b"Transfer-Encoding: chunked\r\n") + b"0\r\n\r\n", 400),
]


@pytest.mark.parametrize(("data", "status"), [pytest.param(d, s, id=n) for n, d, s in BAD_HANDSHAKES])
def test_bad_handshake(ws_server: tuple[RunningServer, Sessions], data: bytes, status: int) -> None:
    server, sessions = ws_server
    before = sessions.opened, len(sessions.http)
    with server.connect() as sock:
        sock.sendall(data)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 %d " % status), response
    if status == 426:
        assert b"sec-websocket-version: 13\r\n" in response.lower()
    assert (sessions.opened, len(sessions.http)) == before  # the app never saw it
    assert_serves_others(server)


def test_upgrade_without_connection_option_is_plain_http(ws_server: tuple[RunningServer, Sessions]) -> None:
    """RFC 9110 §7.8: without the ``upgrade`` connection option, Upgrade means nothing."""
    server, sessions = ws_server
    with server.connect() as sock:
        sock.sendall(handshake_request().replace(b"Connection: Upgrade\r\n", b"Connection: close\r\n"))
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"plain http")
    assert sessions.http[-1] == "/ws"


def test_handshake_byte_by_byte(ws_server: tuple[RunningServer, Sessions]) -> None:
    server, _ = ws_server
    with server.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = handshake_request()
        for index in range(len(request)):
            sock.sendall(request[index : index + 1])
        assert sock.recv(65536).startswith(b"HTTP/1.1 101 ")
        sock.sendall(frame(0x1, b"hello"))
        assert read_frame(sock) == (0x1, b"hello")


def test_frames_in_the_handshake_packet(ws_server: tuple[RunningServer, Sessions]) -> None:
    """Frames sent right behind the handshake are kept for after the accept, not lost or parsed as HTTP."""
    server, _ = ws_server
    with server.connect() as sock:
        sock.sendall(handshake_request() + frame(0x1, b"early") + frame(0x2, b"GET / HTTP/1.1\r\n\r\n"))
        response = b""
        while b"\r\n\r\n" not in response:
            response += sock.recv(1)
        assert response.startswith(b"HTTP/1.1 101 ")
        assert read_frame(sock) == (0x1, b"early")
        assert read_frame(sock) == (0x2, b"GET / HTTP/1.1\r\n\r\n")


# -- bad frames ------------------------------------------------------------------------------

BAD_FRAMES = [
    ("rsv1-without-extension", frame(0x1, b"x", rsv=4), 1002),
    ("rsv2", frame(0x1, b"x", rsv=2), 1002),
    ("rsv3", frame(0x2, b"x", rsv=1), 1002),
    ("rsv-on-ping", frame(0x9, b"x", rsv=4), 1002),
    *[(f"opcode-{op:x}", frame(op, b"x"), 1002) for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)],
    ("unmasked", frame(0x1, b"x", masked=False), 1002),
    ("ping-126-bytes", frame(0x9, b"x" * 126), 1002),
    ("close-126-bytes", frame(0x8, b"\x03\xe8" + b"x" * 124), 1002),
    ("fragmented-ping", frame(0x9, b"x", fin=False), 1002),
    ("fragmented-close", frame(0x8, b"\x03\xe8", fin=False), 1002),
    ("length-2-63", frame(0x2, length=b"\x7f" + struct.pack("!Q", 2**63)), 1002),
    ("length-2-64-minus-1", frame(0x2, length=b"\x7f" + b"\xff" * 8), 1002),
    ("length-2-63-minus-1", frame(0x2, length=b"\x7f" + struct.pack("!Q", 2**63 - 1)), 1009),
    ("length-16-bit-not-minimal", frame(0x2, b"abcde", length=b"\x7e\x00\x05"), 1002),
    ("length-64-bit-not-minimal", frame(0x2, b"x" * 200, length=b"\x7f" + struct.pack("!Q", 200)), 1002),
    ("continuation-first", frame(0x0, b"x"), 1002),
    ("new-message-inside-fragmented", frame(0x1, b"a", fin=False) + frame(0x1, b"b"), 1002),
    ("text-invalid-utf8", frame(0x1, b"\xff"), 1007),
    ("text-surrogate", frame(0x1, b"\xed\xa0\x80"), 1007),
    ("text-truncated-utf8-across-fragments", frame(0x1, b"\xe2\x82", fin=False) + frame(0x0, b"x"), 1007),
    ("close-one-byte", frame(0x8, b"\x03"), 1002),
    ("close-code-1005", frame(0x8, struct.pack("!H", 1005)), 1002),
    ("close-code-999", frame(0x8, struct.pack("!H", 999)), 1002),
    ("close-code-2000", frame(0x8, struct.pack("!H", 2000)), 1002),
    ("close-reason-invalid-utf8", frame(0x8, b"\x03\xe8\xff"), 1007),
    ("message-over-max-size", frame(0x2, b"x" * (MAX_SIZE + 1)), 1009),
    ("fragments-over-max-size", frame(0x2, b"x" * MAX_SIZE, fin=False) + frame(0x0, b"x"), 1009),
    ("announced-over-max-size", frame(0x2, length=b"\x7f" + struct.pack("!Q", 2**40)), 1009),
]


@pytest.mark.parametrize(("data", "code"), [pytest.param(d, c, id=n) for n, d, c in BAD_FRAMES])
def test_bad_frame(ws_server: tuple[RunningServer, Sessions], data: bytes, code: int) -> None:
    server, sessions = ws_server
    path = new_path()
    with open_socket(server, path=path) as sock:
        sock.sendall(frame(0x1, b"before") + data)
        assert read_frame(sock) == (0x1, b"before")  # what came first is answered first
        assert close_code(sock) == code
    assert sessions.code(path) == code
    assert_serves_others(server)


def test_one_byte_at_a_time(ws_server: tuple[RunningServer, Sessions]) -> None:
    server, _ = ws_server
    with open_socket(server) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = frame(0x1, "é".encode() * 150, fin=False) + frame(0x9, b"ping") + frame(0x0, b"!" * 60000)
        for index in range(len(data)):
            sock.sendall(data[index : index + 1])
        assert read_frame(sock) == (0xA, b"ping")
        assert read_frame(sock) == (0x1, "é".encode() * 150 + b"!" * 60000)
        sock.sendall(frame(0x8, struct.pack("!H", 1000)))
        assert close_code(sock) == 1000


# -- compression bomb ------------------------------------------------------------------------


def test_deflate_bomb_small(ws_server: tuple[RunningServer, Sessions]) -> None:
    """1 KiB that inflates to 1 MiB, sixteen times ``ws_max_size``."""
    server, sessions = ws_server
    bomb = deflate(b"\0" * 2**20)
    assert len(bomb) < 1100
    path = new_path()
    with open_socket(server, DEFLATE, path) as sock:
        sock.sendall(frame(0x2, bomb, rsv=4))
        assert close_code(sock) == 1009
    assert sessions.code(path) == 1009
    assert_serves_others(server)


def gibibyte_bomb() -> bytes:
    """1 GiB of zeros, deflated: about 1 MiB (deflate's best ratio is about 1:1000).

    One MiB of zeros compressed from a fresh state and flushed to a byte boundary refers to
    nothing before it, so 1024 copies in a row are a valid stream of 1 GiB.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(b"\0" * 2**20) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return (block * 1024)[:-4]  # RFC 7692 §7.2.1: without the final 00 00 ff ff


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_deflate_bomb_of_a_gibibyte_keeps_memory_bounded(loop_name: str) -> None:
    """1 MiB on the wire, 1 GiB inflated: the server stops at ``ws_max_size`` and never holds more."""
    bomb = gibibyte_bomb()
    assert len(bomb) < 1.1 * 2**20
    sessions = Sessions()
    with serve(sessions, loop=loop_name, ws_max_size=4 * 2**20) as server, open_socket(server, DEFLATE) as sock:
        data = frame(0x2, bomb, rsv=4)
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            sock.sendall(data)
            assert close_code(sock) == 1009
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert sessions.code("/ws") == 1009
        assert_serves_others(server)
    assert peak < 32 * 2**20, peak  # ws_max_size and the frame in flight, not 1 GiB


# -- floods and storms ---------------------------------------------------------------------


def flood_until_reading_stops(server: RunningServer, sock: socket.socket, data: bytes, limit: int) -> int:
    """Send ``data`` repeatedly without reading anything, until ``limit`` bytes are sent or the
    server stops reading (its transport says so); how many bytes went out."""
    protocol = server.call(lambda: next(p for p in server.server.state.connections if hasattr(p, "session")))  # type: ignore[union-attr]
    sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + timeout(10)
    while sent < limit and time.monotonic() < deadline:
        _, writable, _ = select.select([], [sock], [], 0.05)
        if writable:
            with contextlib.suppress(BlockingIOError):
                sent += sock.send(data)
        elif not server.call(lambda: protocol.transport.is_reading()):
            break
    sock.setblocking(True)
    return sent


def test_ping_flood_does_not_grow_the_write_buffer(loop: str) -> None:
    sessions = Sessions()
    with serve(sessions, loop=loop, timeout_graceful_shutdown=1) as server:
        sock = open_socket(server)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        pings = frame(0x9, b"p" * 125) * 2000
        flood_until_reading_stops(server, sock, pings, 50 * 2**20)
        protocol = server.call(lambda: next(p for p in server.server.state.connections if hasattr(p, "session")))  # type: ignore[union-attr]
        buffered = server.call(lambda: protocol.transport.get_write_buffer_size())
        sock.close()
    assert buffered < 2**20, buffered


def test_ping_flood_from_a_reading_client(ws_server: tuple[RunningServer, Sessions]) -> None:
    """Every ping is answered, in order, and the connection stays usable."""
    server, _ = ws_server
    with open_socket(server) as sock:
        count = 5000
        sender = threading.Thread(target=sock.sendall, args=(b"".join(frame(0x9, b"%d" % i) for i in range(count)),))
        sender.start()
        for index in range(count):
            assert read_frame(sock) == (0xA, b"%d" % index)
        sender.join()
        sock.sendall(frame(0x1, b"after"))
        assert read_frame(sock) == (0x1, b"after")


def test_close_storm(ws_server: tuple[RunningServer, Sessions]) -> None:
    """Many connections close at once, half with a close frame, half by dropping TCP."""
    server, sessions = ws_server
    count = 200
    paths = [new_path() for _ in range(count)]
    sockets = [open_socket(server, path=path) for path in paths]
    for index, sock in enumerate(sockets):
        if index % 2:
            sock.sendall(frame(0x8, struct.pack("!H", 1001)))
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # a reset, not even a FIN
    for sock in sockets[1::2]:
        assert close_code(sock) == 1001
        sock.close()
    codes = sessions.codes_of(paths)
    assert codes == [1006, 1001] * (count // 2)
    deadline = time.monotonic() + timeout(5)
    while connection_count(server) and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the server's own count, bounded by the deadline
    assert connection_count(server) == 0
    assert_serves_others(server)


def test_many_sessions_at_once_then_all_served(ws_server: tuple[RunningServer, Sessions]) -> None:
    """A burst of clients that each send a message and leave, while one long session is open."""
    server, _ = ws_server
    with connect(server.ws_url) as steady:

        async def burst() -> None:
            async def one(index: int) -> None:
                reader, writer = await asyncio.open_connection(server.host, server.port)
                writer.write(handshake_request() + frame(0x1, b"%d" % index))
                head = await reader.readuntil(b"\r\n\r\n")
                echo = await reader.readexactly(2 + len(b"%d" % index))
                writer.write(frame(0x8, struct.pack("!H", 1000)))
                rest = await reader.read()
                writer.close()
                await writer.wait_closed()
                assert head.startswith(b"HTTP/1.1 101 ")
                assert echo[2:] == b"%d" % index
                assert rest == b"\x88\x02\x03\xe8"

            await asyncio.gather(*(one(index) for index in range(300)))

        asyncio.run(burst())
        steady.send("steady")
        assert steady.recv(timeout(5)) == "steady"
