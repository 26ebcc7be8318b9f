"""WebSocket end to end: the `websockets` client and raw sockets against a real server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from asgisock.types import Receive, Send
from tests.support import RunningServer, read_response, serve, timeout


async def echo(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", **{k: v for k, v in message.items() if k != "type"}})


class Recorder:
    """An app that records what it receives and lets the test see it from its own thread."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.done = threading.Event()
        self.scope: dict[str, Any] = {}

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        self.scope = scope
        await receive()
        await send({"type": "websocket.accept"})
        try:
            while True:
                message = await receive()
                self.messages.append(message)
                if message["type"] == "websocket.disconnect":
                    return
        finally:
            self.done.set()


def handshake(server: RunningServer, extra: bytes = b"", *, version: bytes = b"13",
              method: bytes = b"GET", http: bytes = b"HTTP/1.1") -> socket.socket:
    sock = server.connect()
    key = base64.b64encode(os.urandom(16))
    sock.sendall(method + b" / " + http + b"\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: " + version + b"\r\n" + extra + b"\r\n")
    return sock


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    mask = os.urandom(4) if masked else b""
    length = len(payload)
    if length < 126:
        head = bytes([first, (0x80 if masked else 0) | length])
    elif length < 65536:
        head = bytes([first, (0x80 if masked else 0) | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([first, (0x80 if masked else 0) | 127]) + length.to_bytes(8, "big")
    if masked:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + payload


def test_echo_text_and_bytes(loop: str) -> None:
    with serve(echo, loop=loop) as server, connect(server.ws_url) as ws:
        ws.send("héllo")
        assert ws.recv() == "héllo"
        ws.send(b"\x00\xff" * 40000)
        assert ws.recv() == b"\x00\xff" * 40000


def test_scope(loop: str) -> None:
    recorder = Recorder()
    with serve(recorder, loop=loop, root_path="/r") as server, \
            connect(server.ws_url + "/chat%20room?x=1", subprotocols=["chat", "superchat"]):  # type: ignore[list-item]
        pass
    scope = recorder.scope
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/r/chat room"
    assert scope["raw_path"] == b"/r/chat%20room"
    assert scope["query_string"] == b"x=1"
    assert scope["subprotocols"] == ["chat", "superchat"]
    assert "websocket.http.response" in scope["extensions"]
    assert "method" not in scope
    assert (b"sec-websocket-protocol", b"chat, superchat") in scope["headers"]


def test_accept_subprotocol_and_headers(loop: str) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "superchat", "headers": [(b"x-extra", b"1")]})
        await send({"type": "websocket.close"})

    with serve(app, loop=loop) as server, \
            connect(server.ws_url, subprotocols=["chat", "superchat"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "superchat"
        assert ws.response is not None
        assert ws.response.headers["x-extra"] == "1"


def test_accept_unoffered_subprotocol_is_500(loop: str) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "other"})

    with serve(app, loop=loop) as server, pytest.raises(InvalidStatus) as info:
        connect(server.ws_url, subprotocols=["chat"])  # type: ignore[list-item]
    assert info.value.response.status_code == 500


def test_close_before_accept_is_403(loop: str) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.close"})

    with serve(app, loop=loop) as server, pytest.raises(InvalidStatus) as info:
        connect(server.ws_url)
    assert info.value.response.status_code == 403


def test_denial_response(loop: str) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Basic")]})
        await send({"type": "websocket.http.response.body", "body": b"who ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"are you?"})

    with serve(app, loop=loop) as server, pytest.raises(InvalidStatus) as info:
        connect(server.ws_url)
    response = info.value.response
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Basic"
    assert response.body == b"who are you?"


def test_app_error_before_accept_is_500(loop: str, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        raise ValueError("no")

    with serve(app, loop=loop) as server, pytest.raises(InvalidStatus) as info:
        connect(server.ws_url)
    assert info.value.response.status_code == 500
    assert "Exception in ASGI application" in caplog.text


def test_app_error_after_accept_closes_1011(loop: str) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        raise ValueError("no")

    with serve(app, loop=loop) as server, connect(server.ws_url) as ws:
        ws.send("x")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1011


def test_app_return_closes_1000(loop: str) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})

    with serve(app, loop=loop) as server, connect(server.ws_url) as ws, pytest.raises(ConnectionClosed) as info:
        ws.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1000


def test_server_close_with_code_and_reason(loop: str) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001, "reason": "bye now"})

    with serve(app, loop=loop) as server, connect(server.ws_url) as ws, pytest.raises(ConnectionClosed) as info:
        ws.recv()
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "bye now")


def test_client_close_seen_by_app(loop: str) -> None:
    recorder = Recorder()
    with serve(recorder, loop=loop) as server:
        with connect(server.ws_url) as ws:
            ws.send("one")
            ws.close(4002, "done")
        assert recorder.done.wait(timeout(5))
    assert recorder.messages == [
        {"type": "websocket.receive", "text": "one"},
        {"type": "websocket.disconnect", "code": 4002, "reason": "done"},
    ]


def test_dropped_connection_is_1006(loop: str) -> None:
    recorder = Recorder()
    with serve(recorder, loop=loop) as server:
        sock = handshake(server)
        assert sock.recv(1024).startswith(b"HTTP/1.1 101 ")
        sock.close()
        assert recorder.done.wait(timeout(5))
    assert recorder.messages[-1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}


def test_send_after_close_raises_oserror(loop: str) -> None:
    outcome: list[BaseException] = []
    finished = threading.Event()

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()  # the client's close
        try:
            await send({"type": "websocket.send", "text": "late"})
        except OSError as exc:
            outcome.append(exc)
        finished.set()

    with serve(app, loop=loop) as server:
        with connect(server.ws_url):
            pass
        assert finished.wait(timeout(5))
    assert len(outcome) == 1


@pytest.mark.parametrize(
    "message",
    [
        {"type": "websocket.send", "text": "a", "bytes": b"b"},
        {"type": "websocket.send"},
        {"type": "websocket.send", "text": b"bytes as text"},
        {"type": "websocket.accept"},
        {"type": "websocket.http.response.start", "status": 200},
    ],
)
def test_invalid_messages_after_accept(loop: str, message: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send(message)

    with serve(app, loop=loop) as server, connect(server.ws_url) as ws, pytest.raises(ConnectionClosed) as info:
        ws.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1011
    assert "Exception in ASGI application" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"version": b"8"}, 426),
        ({"method": b"POST"}, 400),
        ({"http": b"HTTP/1.0"}, 400),
    ],
)
def test_bad_handshakes(loop: str, kwargs: dict[str, Any], status: int) -> None:
    called: list[bool] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        called.append(True)

    with serve(app, loop=loop) as server:
        with handshake(server, **kwargs) as sock:
            data = read_response(sock)
        assert data.startswith(b"HTTP/1.1 %d " % status)
        if status == 426:
            assert b"sec-websocket-version: 13" in data.lower()
    assert not called


@pytest.mark.parametrize("key", [b"", b"not base64!", base64.b64encode(b"x" * 15)])
def test_bad_keys_are_400(loop: str, key: bytes) -> None:
    with serve(echo, loop=loop) as server, server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 400 ")


def test_upgrade_without_websocket_support_is_plain_http(loop: str) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})

    with serve(app, loop=loop, ws="none") as server:
        response = httpx.get(server.url, headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    assert response.text == "plain"


def test_ping_gets_pong(loop: str) -> None:
    with serve(echo, loop=loop) as server, connect(server.ws_url) as ws:
        assert ws.ping(b"are you there").wait(timeout(5))


def test_unmasked_frame_closes_1002(loop: str) -> None:
    with serve(echo, loop=loop) as server, handshake(server) as sock:
        assert sock.recv(1024).startswith(b"HTTP/1.1 101 ")
        sock.sendall(client_frame(1, b"hi", masked=False))
        data = read_response(sock)
    assert data[:1] == b"\x88"  # a close frame
    assert data[2:4] == (1002).to_bytes(2, "big")


def test_message_over_max_size_closes_1009(loop: str) -> None:
    with serve(echo, loop=loop, ws_max_size=1000) as server, connect(server.ws_url) as ws:
        ws.send("x" * 1000)
        assert ws.recv() == "x" * 1000
        ws.send("x" * 1001)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009


def test_keepalive_timeout_drops_dead_peer(loop: str) -> None:
    recorder = Recorder()
    with serve(recorder, loop=loop, ws_ping_interval=0.05, ws_ping_timeout=0.1) as server, handshake(server) as sock:
        assert sock.recv(1024).startswith(b"HTTP/1.1 101 ")
        # a peer that reads pings but never answers them
        assert recorder.done.wait(timeout(5))
        assert read_response(sock)[:1] == b"\x89"  # what arrived was pings; then the server hung up
    assert recorder.messages[-1]["code"] == 1006


def test_keepalive_answered_keeps_connection(loop: str) -> None:
    with serve(echo, loop=loop, ws_ping_interval=0.02, ws_ping_timeout=0.5) as server, connect(server.ws_url) as ws:
        for index in range(10):  # the client answers pings while it works
            ws.send(str(index))
            assert ws.recv() == str(index)
            ws.ping().wait(timeout(5))


@contextlib.contextmanager
def _never_receiving(loop: str) -> Iterator[tuple[RunningServer, socket.socket]]:
    """A server with ws_max_queue=4 whose app accepts and never calls receive() again, and a
    socket that completed the handshake with it."""
    accepted = threading.Event()

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        accepted.set()
        await asyncio.sleep(3600)

    with serve(app, loop=loop, ws_max_queue=4, timeout_graceful_shutdown=0.5) as server, handshake(server) as sock:
        assert sock.recv(1024).startswith(b"HTTP/1.1 101 ")
        assert accepted.wait(timeout(5))
        yield server, sock


def test_unread_messages_pause_reading(loop: str) -> None:
    """An app that never calls receive() gets at most ws_max_queue messages buffered."""
    with _never_receiving(loop) as (server, sock):
        sock.setblocking(False)
        frame = client_frame(2, b"x" * 60000)
        sent = 0
        try:
            while sent < 1000 * len(frame):
                sent += sock.send(frame)
        except BlockingIOError:
            pass
        assert sent < 200 * len(frame)
        protocol = server.call(lambda: next(iter(server.server.state.connections)))  # type: ignore[union-attr]
        assert len(protocol.session.queue) <= 4


def test_small_messages_read_one_at_a_time_pause_reading(loop: str) -> None:
    """Small messages, each in its own read, fill the queue to ws_max_queue and no further."""
    with _never_receiving(loop) as (server, sock):
        protocol = server.call(lambda: next(iter(server.server.state.connections)))  # type: ignore[union-attr]
        for index in range(4):
            assert not server.call(lambda: protocol.read_paused)
            sock.sendall(client_frame(1, str(index).encode()))
            deadline = time.monotonic() + timeout(5)
            while server.call(lambda: len(protocol.session.queue)) <= index:
                assert time.monotonic() < deadline
                time.sleep(0.005)  # polling the server's own count, bounded by the deadline
        assert server.call(lambda: protocol.read_paused)
        sock.sendall(client_frame(1, b"4"))  # on loopback, in the server's socket buffer on return
        for _ in range(2):  # two loop iterations: a read that was not paused would have happened
            server.call(lambda: None)
        assert [message["text"] for message in server.call(lambda: list(protocol.session.queue))] == [
            "0", "1", "2", "3",
        ]


def test_slow_reader_backpressure(loop: str) -> None:
    """websocket.send waits while the client does not read."""
    sent: list[int] = []
    chunk = b"x" * 65536

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        for _ in range(512):
            await send({"type": "websocket.send", "bytes": chunk})
            sent.append(1)

    with serve(app, loop=loop, timeout_graceful_shutdown=0.5) as server, handshake(server) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.recv(1024)
        stalled = server.call(lambda: len(sent))
        assert stalled < 256, stalled


def test_permessage_deflate(loop: str) -> None:
    with serve(echo, loop=loop) as server, connect(server.ws_url) as ws:
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers.get("sec-websocket-extensions", "")
        ws.send("compressible " * 1000)
        assert ws.recv() == "compressible " * 1000


def test_permessage_deflate_off(loop: str) -> None:
    with serve(echo, loop=loop, ws_per_message_deflate=False) as server, connect(server.ws_url) as ws:
        assert ws.response is not None
        assert "sec-websocket-extensions" not in ws.response.headers
        ws.send("plain")
        assert ws.recv() == "plain"


def test_large_compressed_messages_keep_order_and_loop_free(loop: str) -> None:
    """Messages big enough to be compressed in a worker thread still go out in order, and the
    server answers another client meanwhile."""
    big = "compressible text " * 100_000  # 1.8 MB: compressed off the event loop

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        if message.get("text") == "big":
            for index in range(3):
                await send({"type": "websocket.send", "text": f"{index}:{big}"})
                await send({"type": "websocket.send", "text": f"small {index}"})
        else:
            await send({"type": "websocket.send", "text": "pong"})
        await receive()

    with serve(app, loop=loop) as server, connect(server.ws_url, max_size=None) as ws, \
            connect(server.ws_url) as other:
        ws.send("big")
        other.send("ping")
        assert other.recv(timeout(5)) == "pong"
        received = [ws.recv(timeout(10)) for _ in range(6)]
    assert [r[:8] for r in received] == ["0:compre", "small 0", "1:compre", "small 1", "2:compre", "small 2"]
    assert received[0] == "0:" + big


def read_text_frames(sock: socket.socket, count: int) -> list[str]:
    """Read ``count`` unmasked, unfragmented server text frames with 7-bit lengths."""
    data = b""
    texts: list[str] = []
    sock.settimeout(timeout(5))
    while len(texts) < count:
        while len(data) < 2 or len(data) < 2 + (data[1] & 0x7F):
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {texts}"
            data += chunk
        size = 2 + (data[1] & 0x7F)
        assert data[0] == 0x81, data[:size]
        texts.append(data[2:size].decode())
        data = data[size:]
    return texts


@pytest.mark.parametrize("max_queue", [1, 2, 3, 32])
def test_burst_while_app_waits_in_receive_is_all_echoed(loop: str, max_queue: int) -> None:
    """A read holding more messages than the queue takes, while the app already waits in
    receive(): the first goes straight to the app without taking a queue place, and the
    messages held back for the queue limit must still be read without any further input."""
    with serve(echo, loop=loop, ws_max_queue=max_queue, ws_per_message_deflate=False) as server, \
            handshake(server) as sock:
        assert sock.recv(1024).startswith(b"HTTP/1.1 101 ")
        server.call(lambda: None)  # the app is in receive() once the loop has run its accept
        count = 3 * max_queue + 1
        sock.sendall(b"".join(client_frame(1, f"message {i}".encode()) for i in range(count)))
        assert read_text_frames(sock, count) == [f"message {i}" for i in range(count)]


@pytest.mark.parametrize("count", [200, 1000])
def test_burst_from_websockets_client_is_all_echoed(loop: str, count: int) -> None:
    """The report that found the stall: a client sends a burst without reading, then reads."""
    with serve(echo, loop=loop) as server, connect(server.ws_url) as ws:
        for index in range(count):
            ws.send(f"message {index}")
        received = [ws.recv(timeout(5)) for _ in range(count)]
    assert received == [f"message {index}" for index in range(count)]
