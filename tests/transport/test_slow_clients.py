"""Slow and heavy clients, and misbehaving apps: the server stays up, bounded and fair.

Each attack runs against a real server while a well-behaved client measures its own round
trip: it must be served as quickly as on an idle server (within ``NORMAL`` seconds). Slow
clients are either closed within a bounded time (slowloris, idle connections, a WebSocket peer
that never reads) or throttled with a bounded buffer (slow body, slow reader).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
import time
import tracemalloc
from typing import Any

import pytest

from asgisock.asgi.http_cycle import BODY_BUFFER_HIGH
from asgisock.types import Receive, Send
from tests.apps import hello, read_body, respond, stream_chunks
from tests.support import RunningServer, read_response, serve, timeout, ws_handshake

NORMAL = timeout(0.5)
"""A round trip on loopback takes about a millisecond; this is what "still served normally" allows."""
KEEP_ALIVE = 0.5


def round_trip(server: RunningServer, request: bytes = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") -> float:
    """Seconds a new client takes to get a whole response; fails on anything but 200."""
    start = time.monotonic()
    with server.connect() as sock:
        sock.sendall(request)
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 200 "), response[:100]
    return time.monotonic() - start


def assert_served_normally(server: RunningServer) -> None:
    assert round_trip(server) < NORMAL


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the peer closes within ``seconds``, reading (and dropping) whatever comes first."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def connection_count(server: RunningServer) -> int:
    state = server.server.state
    assert state is not None
    return int(server.call(lambda: len(state.connections)))


def write_buffer(server: RunningServer) -> int:
    state = server.server.state
    assert state is not None

    def largest() -> int:
        return max((c.transport.get_write_buffer_size() for c in state.connections if not c.closed), default=0)

    return int(server.call(largest))


class Drip:
    """Sends ``data`` on many sockets, one byte to each every ``interval`` seconds (slowloris)."""

    def __init__(self, sockets: list[socket.socket], data: bytes, interval: float) -> None:
        self.sockets = sockets
        self.data = data
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Drip:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout(5))

    def _run(self) -> None:
        position = 0
        while not self.stop.is_set() and position < len(self.data):
            for sock in self.sockets:
                with contextlib.suppress(OSError):  # closed by the server: what the test waits for
                    sock.send(self.data[position : position + 1])
            position += 1
            self.stop.wait(self.interval)  # the attack's own pace, not a synchronisation


# -- slow and idle clients ----------------------------------------------------------------


def test_slowloris_is_closed_at_the_keep_alive_timeout(loop: str) -> None:
    """A head that never completes does not stop the keep-alive clock: 50 clients sending a
    header byte every 50 ms are all closed within the timeout, while others are served."""
    with serve(hello, loop=loop, timeout_keep_alive=KEEP_ALIVE) as server:
        sockets = [server.connect() for _ in range(50)]
        start = time.monotonic()
        head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 10_000
        with Drip(sockets, head, interval=0.05):
            assert_served_normally(server)
            assert all(closed_within(sock, KEEP_ALIVE + timeout(2)) for sock in sockets)
        elapsed = time.monotonic() - start
        for sock in sockets:
            sock.close()
        assert elapsed < KEEP_ALIVE + timeout(2)
        assert_served_normally(server)


def test_slowloris_between_requests(loop: str) -> None:
    """After a response, a client that trickles its next head is closed as an idle one would be."""
    with serve(hello, loop=loop, timeout_keep_alive=KEEP_ALIVE) as server, server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        with Drip([sock], b"GET / HTTP/1.1\r\n" + b"\r\n" * 10_000, interval=0.02):
            assert closed_within(sock, KEEP_ALIVE + timeout(2))


def test_many_idle_connections_are_closed_and_cost_little(loop: str) -> None:
    with serve(hello, loop=loop, timeout_keep_alive=timeout(1)) as server:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            sockets = [server.connect() for _ in range(300)]
            deadline = time.monotonic() + timeout(5)
            while connection_count(server) < 300 and time.monotonic() < deadline:
                time.sleep(0.01)  # polling the server's own count, bounded by the deadline
            assert connection_count(server) == 300
            per_connection = (tracemalloc.get_traced_memory()[0] - before) / 300
        finally:
            tracemalloc.stop()
        assert per_connection < 32 * 1024, per_connection  # Python objects for one idle connection
        assert_served_normally(server)
        assert all(closed_within(sock, timeout(5)) for sock in sockets)
        for sock in sockets:
            sock.close()
        assert connection_count(server) == 0


def test_slow_body_is_throttled_and_bounded(loop: str) -> None:
    """A body trickling in holds one connection and a bounded buffer, nothing more."""
    received: list[int] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["method"] == "GET":
            await respond(send, 200, b"hi")
            return
        body = await read_body(receive)
        received.append(len(body))
        await respond(send, 200, str(len(body)).encode())

    with serve(app, loop=loop) as server, server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n")
        with Drip([sock], b"x" * 500, interval=0.001):
            for _ in range(3):
                assert_served_normally(server)
            sock.settimeout(timeout(10))
            response = sock.recv(65536)
        assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"500")
    assert received == [500]


def test_stalled_body_is_closed_in_bounded_time(loop: str) -> None:
    disconnected = threading.Event()

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        while (message := await receive())["type"] == "http.request":
            if not message["more_body"]:
                await respond(send, 200, b"complete")
                return
        disconnected.set()

    with serve(app, loop=loop, timeout_keep_alive=KEEP_ALIVE, timeout_graceful_shutdown=0.2) as server, \
            server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly this")
        assert closed_within(sock, KEEP_ALIVE + timeout(1))
        assert disconnected.wait(timeout(1))


class BodyReader:
    """An app that reads the whole body and answers with its length; records a disconnect."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        """Seconds the app works before its first receive() (its own load, not a synchronisation)."""
        self.reading = threading.Event()
        self.disconnected = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["method"] == "GET":
            await respond(send, 200, b"hi")
            return
        await asyncio.sleep(self.delay)
        self.reading.set()
        size = 0
        while (message := await receive())["type"] == "http.request":
            size += len(message["body"])
            if not message["more_body"]:
                await respond(send, 200, str(size).encode())
                return
        self.disconnected.set()


def response_until_closed(sock: socket.socket, seconds: float) -> bytes | None:
    """All the peer sends until it closes, or None if it has not closed within ``seconds``."""
    deadline = time.monotonic() + seconds
    chunks: list[bytes] = []
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
    return None


def paced_send(sock: socket.socket, size: int, rate: float, chunk: int = 1024) -> None:
    """Send ``size`` bytes at ``rate`` bytes per second, in ``chunk``-byte writes (the load's shape)."""
    start = time.monotonic()
    for sent in range(0, size, chunk):
        sock.sendall(b"x" * min(chunk, size - sent))
        time.sleep(max(0.0, start + (sent + chunk) / rate - time.monotonic()))


def test_body_below_the_minimum_rate_gets_408(loop: str) -> None:
    """A body that keeps trickling never stalls, yet is cut once it falls below the minimum rate
    after the grace period: 408, a closed connection, http.disconnect for the app; meanwhile other
    clients are served normally."""
    app = BodyReader()
    with serve(app, loop=loop, timeout_keep_alive=1, min_request_body_rate=100) as server, \
            server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        start = time.monotonic()
        with Drip([sock], b"x" * 1000, interval=0.25):  # 4 bytes/s: never 1 s without a byte
            assert_served_normally(server)
            response = response_until_closed(sock, timeout(5))
        assert response is not None and response.startswith(b"HTTP/1.1 408 "), response
        assert time.monotonic() - start < 1 + timeout(2)
        assert app.disconnected.wait(timeout(1))
        assert_served_normally(server)


def test_one_byte_every_two_seconds_is_cut_at_the_default_rate(loop: str) -> None:
    """The default minimum rate cuts the classic slow POST (a body byte every 2 s, which the
    keep-alive clock alone never stops) well within 30 s."""
    app = BodyReader()
    with serve(app, loop=loop, timeout_keep_alive=2.5) as server, server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        start = time.monotonic()
        with Drip([sock], b"x" * 100, interval=2):
            response = response_until_closed(sock, timeout(30))
        assert response is not None and response.startswith(b"HTTP/1.1 408 "), response
        assert time.monotonic() - start < 30
        assert app.disconnected.wait(timeout(1))


def test_upload_above_the_minimum_rate_completes(loop: str) -> None:
    """An upload well above the minimum (8 times it) is never cut, however long it takes: 512 KiB
    at 8 KiB/s against the default 1 KiB/s, scaled down here to 32 KiB at 8 KiB/s against 1 KiB/s
    after a 1 s grace period."""
    with serve(BodyReader(), loop=loop, timeout_keep_alive=1, min_request_body_rate=1024) as server, \
            server.connect() as sock:
        size = 32 * 1024
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
        paced_send(sock, size, rate=8 * 1024)
        response = response_until_closed(sock, timeout(5))
        assert response is not None and response.startswith(b"HTTP/1.1 200 "), response
        assert response.endswith(b"%d" % size)


def test_time_the_server_held_reading_back_does_not_count(loop: str) -> None:
    """A client that sent a burst the app did not read for 2.5 s (reading paused on a full
    buffer) is not blamed for those seconds: its average over the time the server was reading
    stays above the minimum, and the upload completes."""
    rate = 256 * 1024
    app = BodyReader(delay=2.5)
    burst, rest = BODY_BUFFER_HIGH + 64 * 1024, 768 * 1024
    with serve(app, loop=loop, timeout_keep_alive=0.5, min_request_body_rate=rate) as server, \
            server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                     % (burst + rest))
        sock.sendall(b"x" * burst)
        assert app.reading.wait(timeout(5))
        paced_send(sock, rest, rate=2 * rate, chunk=16 * 1024)
        response = response_until_closed(sock, timeout(5))
        assert response is not None and response.startswith(b"HTTP/1.1 200 "), response
        assert response.endswith(b"%d" % (burst + rest))


def test_unread_upload_is_held_to_a_bounded_buffer(loop: str) -> None:
    """An app that answers without reading a large upload: the server buffers a bounded part of
    it (reading pauses, or what arrives after the response is dropped), and a client that then
    stalls is closed at the keep-alive timeout."""
    size = 64 * 2**20
    with serve(hello, loop=loop, timeout_keep_alive=KEEP_ALIVE) as server, server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        sock.setblocking(False)
        pushed = 0
        chunk = b"x" * 65536
        deadline = time.monotonic() + timeout(5)
        tracemalloc.start()
        try:
            while pushed < size - len(chunk) and time.monotonic() < deadline:
                try:
                    pushed += sock.send(chunk)
                except BlockingIOError:
                    break  # the server stopped reading
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 16 * 2**20, peak
        assert_served_normally(server)
        sock.setblocking(True)
        assert closed_within(sock, KEEP_ALIVE + timeout(2))


def test_slow_reader_of_a_large_response(loop: str) -> None:
    """``send()`` waits for a client that reads slowly: the write buffer stays bounded and the
    app is throttled, not buffered; a stalled reader does not slow anyone else down."""
    sent: list[int] = []
    chunk = b"x" * 65536

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] != "/large":
            await respond(send, 200, b"hi")
            return
        await stream_chunks(send, chunk, 1024, sent)  # 64 MiB

    with serve(app, loop=loop) as server, server.connect() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(1024)
        largest = 0
        for _ in range(20):  # read slowly: a little at a time, checking the server between reads
            assert_served_normally(server)
            largest = max(largest, write_buffer(server))
            sock.recv(65536)
        assert largest < 4 * 2**20, largest
        assert len(sent) < 512
        sock.settimeout(timeout(30))
        total = 0
        while not (data := sock.recv(1 << 20)).endswith(b"0\r\n\r\n"):
            total += len(data)
    assert len(sent) == 1024


def test_websocket_client_that_never_reads(loop: str) -> None:
    """The app keeps sending to a peer that reads nothing: ``send()`` blocks with a bounded write
    buffer, and the keepalive ping (which cannot get through) ends the connection in bounded time."""
    sent: list[int] = []
    outcome: list[str] = []
    finished = threading.Event()

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await respond(send, 200, b"hi")
            return
        await receive()
        await send({"type": "websocket.accept"})
        try:
            while True:
                await send({"type": "websocket.send", "bytes": b"x" * 65536})
                sent.append(1)
        except OSError as exc:
            outcome.append(type(exc).__name__)
        finally:
            finished.set()

    with serve(app, loop=loop, ws_ping_interval=0.3, ws_ping_timeout=0.3) as server:
        sock = ws_handshake(server)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        start = time.monotonic()
        assert_served_normally(server)
        largest = write_buffer(server)
        assert finished.wait(timeout(5))
        elapsed = time.monotonic() - start
        sock.close()
        assert_served_normally(server)
    assert largest < 4 * 2**20, largest
    assert len(sent) < 256  # 16 MiB: held back, not buffered
    assert outcome == ["ClientDisconnected"]
    assert elapsed < timeout(3)


def test_websocket_flood_of_messages_to_an_app_that_does_not_receive(loop: str) -> None:
    """Incoming messages beyond ``ws_max_queue`` wait in the socket, not in the server."""
    entered = threading.Event()

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await respond(send, 200, b"hi")
            return
        await receive()
        await send({"type": "websocket.accept"})
        entered.set()
        await asyncio.Event().wait()  # never receives again

    with serve(app, loop=loop, ws_max_queue=4, timeout_graceful_shutdown=0.5) as server:
        sock = ws_handshake(server)
        assert entered.wait(timeout(5))
        mask = b"\x00\x00\x00\x00"
        message = struct.pack("!BBH", 0x82, 0xFE, 60000) + mask + b"y" * 60000
        sock.setblocking(False)
        pushed = 0
        deadline = time.monotonic() + timeout(5)
        while pushed < 200 * len(message) and time.monotonic() < deadline:
            try:
                pushed += sock.send(message)
            except BlockingIOError:
                break
        assert pushed < 100 * len(message)
        assert_served_normally(server)
        sock.close()


# -- misbehaving apps ------------------------------------------------------------------------


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, "asgisock.error")
    return caplog


def messages(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(record.getMessage() for record in caplog.records if record.name == "asgisock.error")


def test_app_raising_is_logged_and_server_keeps_serving(loop: str, errors: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == "/boom":
            raise ValueError("boom")
        await respond(send, 200, b"hi")

    with serve(app, loop=loop) as server:
        for _ in range(3):
            with server.connect() as sock:
                sock.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_response(sock).startswith(b"HTTP/1.1 500 ")
        assert_served_normally(server)
    assert messages(errors).count("Exception in ASGI application") == 3
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in errors.records)


def test_hanging_app_holds_only_its_own_connection(loop: str, errors: pytest.LogCaptureFixture) -> None:
    hung = threading.Event()

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == "/hang":
            hung.set()
            await asyncio.Event().wait()
        await respond(send, 200, b"hi")

    with serve(app, loop=loop, timeout_graceful_shutdown=0.2) as server:
        stuck = [server.connect() for _ in range(20)]
        for sock in stuck:
            sock.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        assert hung.wait(timeout(5))
        for _ in range(5):
            assert_served_normally(server)
        for sock in stuck:
            sock.close()
    assert "Graceful shutdown timed out" in errors.text  # the hung tasks are cancelled at shutdown


def test_client_leaving_is_seen_by_an_app_waiting_for_disconnect(loop: str) -> None:
    """Long polling: the app waits for ``http.disconnect``; the client gives up and closes."""
    disconnected = threading.Event()

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()  # the request, without a body
        if (await receive())["type"] == "http.disconnect":
            disconnected.set()

    with serve(app, loop=loop, timeout_graceful_shutdown=0.2) as server:
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            deadline = time.monotonic() + timeout(5)
            while connection_count(server) == 0 and time.monotonic() < deadline:
                time.sleep(0.01)  # polling the server's own count, bounded by the deadline
        assert disconnected.wait(timeout(1))
        assert connection_count(server) == 0


@pytest.mark.parametrize(
    ("messages_sent", "logged"),
    [
        ([{"type": "http.response.start", "status": "200"}], "invalid status"),
        ([{"status": 200}], "without a 'type'"),
        (["not a dict"], "without a 'type'"),
        ([{"type": "http.response.body", "body": b"x"}], "expected 'http.response.start'"),
        ([{"type": "http.response.start", "status": 200, "headers": [(b"x", "text")]},
          {"type": "http.response.body", "body": b"x"}], "invalid header value"),
        ([{"type": "http.response.start", "status": 200}, {"type": "http.response.body", "body": "text"}],
         "must be bytes"),
        ([{"type": "websocket.accept"}], "unexpected ASGI message 'websocket.accept'"),
    ],
    ids=["status-str", "no-type", "not-a-dict", "body-first", "header-str", "body-str", "wrong-protocol"],
)
def test_invalid_messages_are_500_and_logged(loop: str, errors: pytest.LogCaptureFixture,
                                             messages_sent: list[Any], logged: str) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == "/":
            await respond(send, 200, b"hi")
            return
        for message in messages_sent:
            await send(message)

    with serve(app, loop=loop) as server:
        with server.connect() as sock:
            sock.sendall(b"GET /bad HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.1 500 ")
        assert_served_normally(server)
    assert logged in errors.text


def test_sending_after_completion_is_logged_and_connection_reused(loop: str, errors: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await respond(send, 200, b"first")
        if scope["path"] == "/late":
            await send({"type": "http.response.body", "body": b"late"})

    with serve(app, loop=loop) as server, server.connect() as sock:
        sock.sendall(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        rest = read_response(sock)
    assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b"first")
    assert b"late" not in first + rest
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b"first")
    assert "after the response was complete" in errors.text


def test_returning_without_reading_the_body(loop: str, errors: pytest.LogCaptureFixture) -> None:
    """The app never reads a large body: it is answered at once; the rest of the body is read
    and dropped, never buffered, and the connection then serves the next request."""
    size = BODY_BUFFER_HIGH * 16
    with serve(hello, loop=loop) as server, server.connect() as sock:
        sender = threading.Thread(target=sock.sendall, args=(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size,))
        sender.start()
        first = sock.recv(65536)
        sender.join(timeout(10))
        assert not sender.is_alive()
        assert_served_normally(server)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        second = read_response(sock)
    assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b"Hello, world!")
    assert second.startswith(b"HTTP/1.1 200 ")
    assert not [r for r in errors.records if r.levelno >= logging.ERROR]
