"""``--metrics-port`` in one process: real traffic over real sockets, the endpoint scraped with
httpx, on both loops. Every figure is checked against what the test itself sent."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import threading
from typing import Any

import httpx
import pytest

from asgisock.types import Receive, Send
from tests.apps import respond
from tests.processes import read_until_closed
from tests.scrape import scrape, wait_for
from tests.support import RunningServer, serve, timeout, ws_handshake
from tests.transport.test_slow_clients import Drip

REQUESTS = "asgisock_http_requests_total"
REJECTED = "asgisock_http_requests_rejected_total"


def metrics_url(server: RunningServer) -> str:
    endpoint = server.server.metrics_endpoint
    assert endpoint is not None
    return endpoint.url


class App:
    """``/status/N`` answers N, ``/raise`` fails, ``/hang`` waits for :attr:`release`, ``/ws``
    echoes WebSocket messages."""

    def __init__(self) -> None:
        self.release = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.echo(receive, send)
            return
        path = scope["path"]
        if path == "/raise":
            raise RuntimeError("the app failed")
        if path == "/hang":
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        while (message := await receive())["type"] == "http.request" and message.get("more_body"):
            pass  # the body, if any, until its end or a disconnect
        await respond(send, int(path.rpartition("/")[2]) if path.startswith("/status/") else 200, b"ok")

    async def echo(self, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"]})


def get(sock: socket.socket, path: str) -> None:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


def test_requests_by_method_and_status_class_and_their_durations(loop: str) -> None:
    with serve(App(), loop=loop, metrics_port=0) as server, httpx.Client(base_url=server.url) as client:
        url = metrics_url(server)
        assert url.endswith("/metrics")
        before = scrape(url)
        assert before.total(REQUESTS) == 0
        for path in ("/status/200", "/status/200", "/status/204", "/status/404", "/raise"):
            client.get(path)
        client.post("/status/201", content=b"x" * 1000)
        client.head("/status/301")
        figures = wait_for(url, lambda figures: figures.total(REQUESTS) == 7)
    assert figures.labelled(REQUESTS) == {
        frozenset({("method", "GET"), ("status", "2xx")}): 3,
        frozenset({("method", "GET"), ("status", "4xx")}): 1,
        frozenset({("method", "GET"), ("status", "5xx")}): 1,  # the server's 500 for the app's error
        frozenset({("method", "POST"), ("status", "2xx")}): 1,
        frozenset({("method", "HEAD"), ("status", "3xx")}): 1,
    }
    assert figures.types["asgisock_http_request_duration_seconds"] == "histogram"
    buckets = figures.labelled("asgisock_http_request_duration_seconds_bucket")
    by_bound = sorted((float(dict(labels)["le"]), count) for labels, count in buckets.items())
    counts = [count for _, count in by_bound]
    assert counts == sorted(counts) and counts[-1] == 7  # cumulative, +Inf last
    assert by_bound[0][0] == 0.0005
    assert figures("asgisock_http_request_duration_seconds_count") == 7
    assert 0 < figures("asgisock_http_request_duration_seconds_sum") < timeout(5)
    assert figures("asgisock_http_requests_in_flight") == 0
    assert figures.total(REJECTED) == 0


def test_requests_in_flight_open_connections_and_a_client_that_leaves(loop: str) -> None:
    app = App()
    with serve(app, loop=loop, metrics_port=0) as server:
        url = metrics_url(server)
        with server.connect(), server.connect() as waiting, server.connect() as leaving:  # and one idle
            get(waiting, "/hang")
            get(leaving, "/hang")
            figures = wait_for(url, lambda figures: figures("asgisock_http_requests_in_flight") == 2)
            assert figures("asgisock_http_connections") == 3  # the idle one counts too
            assert figures.total(REQUESTS) == 0
            leaving.close()  # before any response: counted, with no status
            wait_for(url, lambda figures: figures(REQUESTS, method="GET", status="none") == 1)
            app.release.set()
            assert waiting.recv(65536).startswith(b"HTTP/1.1 200 ")
            figures = wait_for(url, lambda figures: figures(REQUESTS, method="GET", status="2xx") == 1)
            assert figures("asgisock_http_requests_in_flight") == 0
            assert figures("asgisock_http_connections") == 2
        figures = wait_for(url, lambda figures: figures("asgisock_http_connections") == 0)
    assert figures.total(REQUESTS) == 2


def test_requests_the_server_refuses_by_reason(loop: str) -> None:
    with serve(App(), loop=loop, metrics_port=0, max_header_size=4096) as server:
        url = metrics_url(server)
        assert set(scrape(url).labelled(REJECTED)) == {
            frozenset({("reason", reason)}) for reason in ("400", "408", "413", "414", "431", "503")}
        cases = [
            (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
            (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 5000 + b"\r\n\r\n", b"431"),
            (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", b"400"),
            # a WebSocket handshake of another version (RFC 6455 §4.4)
            (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)) + b"\r\nSec-WebSocket-Version: 8\r\n\r\n",
             b"426"),
        ]
        for request, status in cases:
            with server.connect() as sock:
                sock.sendall(request)
                assert read_until_closed(sock).startswith(b"HTTP/1.1 " + status), status
        figures = wait_for(url, lambda figures: figures.total(REJECTED) == 5)
    assert figures(REJECTED, reason="400") == 2
    assert figures(REJECTED, reason="414") == 1
    assert figures(REJECTED, reason="431") == 1
    assert figures(REJECTED, reason="426") == 1
    assert figures.total(REQUESTS) == 0  # none reached the app


def test_a_request_over_the_concurrency_limit_is_a_503(loop: str) -> None:
    app = App()
    with serve(app, loop=loop, metrics_port=0, limit_concurrency=1) as server, server.connect() as first:
        url = metrics_url(server)
        get(first, "/hang")
        wait_for(url, lambda figures: figures("asgisock_http_requests_in_flight") == 1)
        with server.connect() as second:
            get(second, "/status/200")
            assert read_until_closed(second).startswith(b"HTTP/1.1 503 ")
        app.release.set()
        assert first.recv(65536).startswith(b"HTTP/1.1 200 ")
        figures = wait_for(url, lambda figures: figures.total(REQUESTS) == 1)
    assert figures(REJECTED, reason="503") == 1


def test_keepalive_timeouts_and_requests_that_stall(loop: str) -> None:
    """An idle keep-alive connection closed is a keep-alive timeout. A request whose head or body
    stalls, or whose body comes too slowly, is a 408 (RFC 9110 §15.5.9): answered when the body
    is too slow, closed without an answer when the client fell silent."""
    with serve(App(), loop=loop, metrics_port=0, timeout_keep_alive=0.3, min_request_body_rate=1000) as server:
        url = metrics_url(server)
        post = b"POST /status/200 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
        with server.connect() as idle, server.connect() as head, server.connect() as stalled, \
                server.connect() as slow:
            get(idle, "/status/200")
            head.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the end of the head
            stalled.sendall(post + b"x" * 500)  # fast enough for the rate, then nothing
            slow.sendall(post)
            with Drip([slow], b"x" * 100, interval=0.1):  # never silent long, but 10 bytes/s
                assert read_until_closed(slow).startswith(b"HTTP/1.1 408 ")
            assert read_until_closed(idle).startswith(b"HTTP/1.1 200 ")  # then closed when idle
            assert read_until_closed(head) == b""
            assert read_until_closed(stalled) == b""
        figures = wait_for(url, lambda figures: figures("asgisock_http_connections") == 0)
    assert figures("asgisock_keepalive_timeouts_total", protocol="http") == 1
    assert figures(REJECTED, reason="408") == 3
    assert figures(REQUESTS, method="GET", status="2xx") == 1
    assert figures(REQUESTS, method="POST", status="none") == 2  # their app saw http.disconnect


def masked_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def receive_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, data
        data += chunk
    return data


def test_websocket_messages_and_the_bytes_of_their_frames(loop: str) -> None:
    """Frames counted to the byte: the client's are masked (6 bytes of header for a short one),
    the server's are not (2 bytes); the opening handshake is HTTP and does not count."""
    with serve(App(), loop=loop, metrics_port=0) as server:
        url = metrics_url(server)
        with ws_handshake(server, "/ws") as sock:
            for text in (b"a", b"bb", b"ccc"):
                sock.sendall(masked_frame(0x1, text))
                assert receive_exactly(sock, 2 + len(text)) == bytes([0x81, len(text)]) + text
            figures = wait_for(url, lambda figures: figures("asgisock_websocket_messages_total", direction="sent") == 3)
            assert figures("asgisock_websocket_connections") == 1
            assert figures("asgisock_http_connections") == 0  # handed over to the WebSocket protocol
            assert figures("asgisock_websocket_messages_total", direction="received") == 3
            assert figures("asgisock_websocket_bytes_total", direction="received") == 7 + 8 + 9
            assert figures("asgisock_websocket_bytes_total", direction="sent") == 3 + 4 + 5
            sock.sendall(masked_frame(0x8, (1000).to_bytes(2, "big")))
            assert receive_exactly(sock, 4) == b"\x88\x02\x03\xe8"
        figures = wait_for(url, lambda figures: figures("asgisock_websocket_connections") == 0)
    assert figures("asgisock_websocket_bytes_total", direction="received") == 24 + 8
    assert figures("asgisock_websocket_bytes_total", direction="sent") == 12 + 4
    assert figures("asgisock_websocket_messages_total", direction="received") == 3  # a close is no message
    assert figures.total(REQUESTS) == 0  # a handshake is counted as a WebSocket, not a request


def test_a_websocket_ping_left_unanswered_is_a_keepalive_timeout(loop: str) -> None:
    with serve(App(), loop=loop, metrics_port=0, ws_ping_interval=0.1, ws_ping_timeout=0.2) as server, \
            ws_handshake(server, "/ws") as sock:
        url = metrics_url(server)
        assert receive_exactly(sock, 6)[:2] == b"\x89\x04"  # the ping, with 4 bytes of payload
        figures = wait_for(url, lambda figures: figures("asgisock_keepalive_timeouts_total", protocol="websocket") == 1)
        assert figures("asgisock_keepalive_timeouts_total", protocol="http") == 0
        wait_for(url, lambda figures: figures("asgisock_websocket_connections") == 0)


def test_the_process_cpu_time_and_memory(loop: str) -> None:
    with serve(App(), loop=loop, metrics_port=0) as server:
        figures = scrape(metrics_url(server))
    assert figures.types["asgisock_process_cpu_seconds"] == "counter"
    assert figures("asgisock_process_cpu_seconds_total") > 0
    assert figures("asgisock_process_resident_memory_bytes") > 10 * 2**20
    # prometheus_client's own, for the process that serves the endpoint: here the same one
    assert figures("process_resident_memory_bytes") > 10 * 2**20
    assert figures("process_cpu_seconds_total") > 0


def test_no_listener_and_no_counting_without_the_setting(loop: str) -> None:
    with serve(App(), loop=loop) as server:
        assert server.server.metrics_endpoint is None
        assert server.server.state is not None and server.server.state.metrics is None


def test_the_listener_closes_with_the_server(loop: str) -> None:
    with serve(App(), loop=loop, metrics_port=0) as server:
        url = metrics_url(server)
        assert scrape(url).total(REQUESTS) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=timeout(5))
