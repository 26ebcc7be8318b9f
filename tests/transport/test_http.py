"""HTTP/1.1 end to end: a real server on a real socket, httpx and raw sockets as clients."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from asgisock.types import Receive, Send
from tests.apps import echo_body, echo_scope, hello, read_body, respond, stream_chunks
from tests.support import read_response, serve, timeout


def raw(server_port: int, data: bytes, *, until_close: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", server_port), timeout=timeout(5)) as sock:
        sock.sendall(data)
        return read_response(sock) if until_close else sock.recv(65536)


def test_hello(loop: str) -> None:
    with serve(hello, loop=loop) as server:
        response = httpx.get(server.url)
    assert response.status_code == 200
    assert response.text == "Hello, world!"
    assert response.headers["content-length"] == "13"
    assert response.headers["server"] == "asgisock"
    assert "date" in response.headers


def test_scope(loop: str) -> None:
    with serve(echo_scope, loop=loop, root_path="/api") as server:
        response = httpx.get(server.url + "/caf%C3%A9/x%2Fy?a=1&b=%20", headers={"X-Dup": "1"})
        scope = response.json()
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/api/café/x/y"
    assert scope["raw_path"] == "/api/caf%C3%A9/x%2Fy"
    assert scope["query_string"] == "a=1&b=%20"
    assert scope["root_path"] == "/api"
    assert ["x-dup", "1"] in scope["headers"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ["127.0.0.1", server.port]
    assert scope["extensions"] == {"http.response.zerocopysend": {}, "http.response.pathsend": {},
                                   "http.response.trailers": {}, "http.response.early_hint": {}}


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::"])
def test_the_server_address_is_the_one_the_client_reached(loop: str, host: str) -> None:
    """A listener on one address gives it to every connection without asking each; on a
    wildcard address each connection says which of the host's addresses it reached."""
    try:
        probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        probe.bind((host, 0))
        probe.close()
    except OSError:
        pytest.skip(f"cannot listen on {host} here")
    reached = "::1" if ":" in host else "127.0.0.1"
    with serve(echo_scope, loop=loop, host=host) as server:
        url = f"http://[{reached}]:{server.port}/" if ":" in reached else f"http://{reached}:{server.port}/"
        scope = httpx.get(url).json()
    assert scope["server"] == [reached, server.port]


def test_header_order_and_duplicates_kept(loop: str) -> None:
    with serve(echo_scope, loop=loop) as server:
        data = raw(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-B: 2\r\nx-a: 3\r\nConnection: close\r\n\r\n")
    body = data.split(b"\r\n\r\n", 1)[1]
    assert b'["x-a", "1"], ["x-b", "2"], ["x-a", "3"]' in body


def test_keep_alive_reuses_connection(loop: str) -> None:
    with serve(hello, loop=loop) as server, httpx.Client() as client:
        first = client.get(server.url)
        second = client.get(server.url)
        assert first.extensions["network_stream"] is second.extensions["network_stream"] or first.status_code == 200
        assert len(server.server.state.connections) == 1  # type: ignore[union-attr]


def test_pipelining_answers_in_order(loop: str) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == "/slow":
            await asyncio.sleep(0.05)  # the first response finishes last, yet goes out first
        await respond(send, 200, scope["path"].encode())

    requests = b"".join(b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % p for p in (b"slow", b"a", b"b"))
    with serve(app, loop=loop) as server:
        data = raw(server.port, requests + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    bodies = [part.split(b"\r\n\r\n", 1)[1][:5] for part in data.split(b"HTTP/1.1 200 OK")[1:]]
    assert bodies == [b"/slow", b"/a", b"/b", b"/last"]


def test_connection_close_from_client(loop: str) -> None:
    with serve(hello, loop=loop) as server:
        data = raw(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close\r\n" in data


def test_connection_close_from_app(loop: str) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await respond(send, 200, b"bye", [(b"connection", b"close")])

    with serve(app, loop=loop) as server:
        data = raw(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # closes although keep-alive
    assert data.endswith(b"bye")
    assert data.count(b"connection: close") == 1


def test_http10_closes_unless_keep_alive(loop: str) -> None:
    with serve(hello, loop=loop) as server:
        data = raw(server.port, b"GET / HTTP/1.0\r\n\r\n")
        assert data.startswith(b"HTTP/1.0 200 OK\r\n")
        with socket.create_connection(("127.0.0.1", server.port), timeout=timeout(5)) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            first = sock.recv(65536)
            assert b"connection: keep-alive" in first
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.0 200 OK")


def test_http10_streaming_is_close_delimited(loop: str) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})

    with serve(app, loop=loop) as server:
        data = raw(server.port, b"GET / HTTP/1.0\r\n\r\n")
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"transfer-encoding" not in head and b"content-length" not in head
    assert body == b"ab"


def test_chunked_response(loop: str) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"hello ", b"", b"world"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    with serve(app, loop=loop) as server:
        data = raw(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = httpx.get(server.url)
    assert b"transfer-encoding: chunked" in data
    assert data.endswith(b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n")
    assert response.text == "hello world"


def test_single_body_gets_content_length(loop: str) -> None:
    with serve(echo_body, loop=loop) as server:
        response = httpx.post(server.url, content=b"x" * 1000)
    assert response.headers["content-length"] == "1000"
    assert "transfer-encoding" not in response.headers


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(loop: str, status: int) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await respond(send, status, b"ignored")

    with serve(app, loop=loop) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = read_response(sock)
    assert data.count(b"HTTP/1.1 %d" % status) == 2
    assert b"ignored" not in data and b"content-length" not in data and b"transfer-encoding" not in data


def test_head_has_no_body(loop: str) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await respond(send, 200, b"body", [(b"content-length", b"4")])

    with serve(app, loop=loop) as server:
        data = raw(server.port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.count(b"content-length: 4") == 2
    assert b"body" not in data


def test_chunked_request_body_streamed(loop: str) -> None:
    received: list[tuple[bytes, bool]] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            received.append((message["body"], message["more_body"]))
            if not message["more_body"]:
                break
        await respond(send, 200, b"".join(b for b, _ in received))

    with serve(app, loop=loop) as server:
        data = raw(server.port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                               b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert data.endswith(b"hello world")
    assert received[-1][1] is False


def test_large_body_arrives_in_chunks(loop: str) -> None:
    messages: list[int] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        total = 0
        while True:
            message = await receive()
            messages.append(len(message["body"]))
            total += len(message["body"])
            if not message["more_body"]:
                break
        await respond(send, 200, str(total).encode())

    with serve(app, loop=loop) as server:
        response = httpx.post(server.url, content=b"x" * (8 * 2**20))
    assert response.text == str(8 * 2**20)
    assert len(messages) > 1


def test_expect_continue_sent_when_body_read(loop: str) -> None:
    with serve(echo_body, loop=loop) as server, server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abc")
        assert sock.recv(1024).endswith(b"\r\n\r\nabc")


def test_expect_continue_not_sent_when_body_unread(loop: str) -> None:
    with serve(hello, loop=loop) as server, server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        data = read_response(sock)  # the server closes: the body was never asked for
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert b"100 Continue" not in data
    assert b"connection: close" in data


def test_unknown_expectation_is_417(loop: str) -> None:
    with serve(hello, loop=loop) as server:
        data = raw(server.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nExpect: magic\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 417 ")


def test_date_and_server_headers_switchable(loop: str) -> None:
    with serve(hello, loop=loop, server_header=False, date_header=False, headers=["X-Extra: yes"]) as server:
        response = httpx.get(server.url)
    assert "server" not in response.headers
    assert "date" not in response.headers
    assert response.headers["x-extra"] == "yes"


def test_app_server_header_wins(loop: str) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await respond(send, 200, b"", [(b"server", b"mine")])

    with serve(app, loop=loop) as server:
        response = httpx.get(server.url)
    assert response.headers.get_list("server") == ["mine"]


def test_exception_before_response_is_500(loop: str, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        raise ValueError("boom")

    with serve(app, loop=loop) as server:
        response = httpx.get(server.url)
    assert response.status_code == 500
    assert response.text == "Internal Server Error\n"
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in caplog.records)


def test_exception_after_response_started_closes(loop: str) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom")

    with serve(app, loop=loop) as server:
        data = raw(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert not data.endswith(b"0\r\n\r\n")  # the response is cut, never completed falsely


def test_return_without_response_is_500(loop: str, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        pass

    with serve(app, loop=loop) as server:
        assert httpx.get(server.url).status_code == 500
    assert "without sending a response" in caplog.text


@pytest.mark.parametrize(
    ("start", "reason"),
    [
        ({"status": 200, "headers": [(b"x-bad", b"a\r\nInjected: yes")]}, "header value"),
        ({"status": 200, "headers": [(b"bad name", b"x")]}, "header name"),
        ({"status": 200, "headers": [(b"x", b"\x00")]}, "header value"),
        ({"status": 200, "headers": [("x-str", "not bytes")]}, "header name"),
        ({"status": 1000, "headers": []}, "status"),
        ({"status": "200", "headers": []}, "status"),
    ],
)
def test_invalid_response_never_reaches_the_wire(loop: str, start: dict[str, Any], reason: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", **start})
        await send({"type": "http.response.body", "body": b"never"})

    with serve(app, loop=loop) as server:
        data = raw(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 ")
    assert b"Injected" not in data and b"never" not in data
    assert reason in caplog.text


def test_messages_out_of_order_are_errors(loop: str, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.body", "body": b"no start"})

    with serve(app, loop=loop) as server:
        assert httpx.get(server.url).status_code == 500
    assert "expected 'http.response.start'" in caplog.text


def test_content_length_mismatch_closes(loop: str) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await respond(send, 200, b"too long", [(b"content-length", b"3")])

    with serve(app, loop=loop) as server:
        data = raw(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data == b""


def test_send_after_disconnect_raises_oserror(loop: str) -> None:
    outcome: list[BaseException | str] = []
    got_disconnect = threading.Event()

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        message = await receive()
        message = await receive()
        outcome.append(message["type"])
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"late"})
        except OSError as exc:
            outcome.append(exc)
        got_disconnect.set()

    with serve(app, loop=loop) as server:
        sock = server.connect()
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        sock.close()  # mid-body
        assert got_disconnect.wait(timeout(5))
    assert outcome[0] == "http.disconnect"
    assert isinstance(outcome[1], OSError)


def test_malformed_request_is_400(loop: str) -> None:
    called: list[bool] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        called.append(True)
        await respond(send)

    with serve(app, loop=loop) as server:
        data = raw(server.port, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert b"connection: close" in data
        assert httpx.get(server.url).status_code == 200  # the next client is served
    assert called == [True]


def test_oversized_head_is_431(loop: str) -> None:
    with serve(hello, loop=loop, max_header_size=4096) as server:
        data = raw(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 431 ")
        # the same limit holds when the head trickles in without ever completing
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 5000)
            assert read_response(sock).startswith(b"HTTP/1.1 431 ")


def test_unsupported_transfer_encoding_is_501(loop: str) -> None:
    with serve(hello, loop=loop) as server:
        data = raw(server.port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
        unframed = raw(server.port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 501 ")
    assert unframed.startswith(b"HTTP/1.1 400 ")  # RFC 9112 §6.3: chunked must be the final coding


def test_limit_concurrency_is_503(loop: str) -> None:
    release = threading.Event()
    running = threading.Event()

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        running.set()
        while not release.is_set():
            await asyncio.sleep(0.01)
        await respond(send)

    with serve(app, loop=loop, limit_concurrency=1) as server:
        first = server.connect()
        first.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert running.wait(timeout(5))
        data = raw(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        release.set()
        assert first.recv(1024).startswith(b"HTTP/1.1 200")
        first.close()
    assert data.startswith(b"HTTP/1.1 503 ")


def test_keep_alive_timeout_closes_idle_connection(loop: str) -> None:
    with serve(hello, loop=loop, timeout_keep_alive=0.2) as server, server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200")  # then closed when idle


def test_slow_reader_backpressure(loop: str) -> None:
    """send() waits while the client does not read, so the server never buffers the whole body."""
    sent: list[int] = []
    chunk = b"x" * 65536

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await stream_chunks(send, chunk, 256, sent)  # 16 MiB

    with serve(app, loop=loop) as server, server.connect() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(1024)
        stalled = server.call(lambda: len(sent))
        assert stalled < 128, stalled  # the app is held back, not buffered in memory
        total = 0
        while True:
            data = sock.recv(1 << 20)
            total += len(data)
            if data.endswith(b"0\r\n\r\n"):
                break
    assert len(sent) == 256


def test_unread_body_pauses_reading(loop: str) -> None:
    """An app that never reads the body holds at most a bounded buffer, not the whole upload."""
    proceed = threading.Event()
    entered = threading.Event()
    buffered: list[int] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        entered.set()
        while not proceed.is_set():
            await asyncio.sleep(0.01)
        body = await read_body(receive)
        buffered.append(len(body))
        await respond(send, 200, str(len(body)).encode())

    with serve(app, loop=loop) as server, server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (64 * 2**20))
        assert entered.wait(timeout(5))
        sock.setblocking(False)
        pushed = 0
        try:
            while pushed < 64 * 2**20:
                pushed += sock.send(b"x" * 65536)
        except BlockingIOError:
            pass
        assert pushed < 32 * 2**20  # the socket stopped taking data
        cycle = server.call(lambda: next(iter(server.server.state.connections)).body_cycle)  # type: ignore[union-attr]
        assert cycle.body_size < 2 * 2**20
        proceed.set()
        sock.setblocking(True)
        sock.sendall(b"x" * (64 * 2**20 - pushed))
        assert sock.recv(1024).endswith(str(64 * 2**20).encode())


def test_access_log(loop: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "asgisock.access")
    with serve(hello, loop=loop) as server:
        httpx.get(server.url + "/path?q=1")
    lines = [r.getMessage() for r in caplog.records if r.name == "asgisock.access"]
    assert lines and lines[0].endswith(' - "GET /path?q=1 HTTP/1.1" 200')


def test_access_log_format(loop: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "asgisock.access")
    with serve(hello, loop=loop, access_log_format="%(m)s %(U)s %(s)s %(B)s %({user-agent}i)s %(L)s") as server:
        httpx.get(server.url + "/p", headers={"User-Agent": "tester"})
    line = next(r.getMessage() for r in caplog.records if r.name == "asgisock.access")
    method, path, status, size, agent, duration = line.split()
    assert (method, path, status, size, agent) == ("GET", "/p", "200", "13", "tester")
    assert float(duration) >= 0


def test_no_access_log(loop: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "asgisock.access")
    with serve(hello, loop=loop, access_log=False) as server:
        httpx.get(server.url)
    assert not [r for r in caplog.records if r.name == "asgisock.access"]


def test_app_runs_in_a_task_of_its_own_per_request(loop: str) -> None:
    """A fresh task, and so a fresh copy of the context, for every request on a connection."""
    seen: list[tuple[str, bool]] = []
    marker = contextvars.ContextVar("marker", default=False)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        seen.append((task.get_name(), marker.get()))
        marker.set(True)  # must not leak into the next request's context
        await respond(send, 200, b"ok")

    with serve(app, loop=loop) as server, httpx.Client() as client:
        for _ in range(2):
            assert client.get(server.url).text == "ok"
    assert seen == [("asgisock: HTTP request", False)] * 2


def test_a_task_factory_set_by_the_app_is_used(loop: str) -> None:
    """An app (or its instrumentation) may install a task factory at startup: request tasks are
    made through it."""
    made: list[str] = []

    def factory(event_loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(getattr(coro, "__qualname__", ""))
        return asyncio.Task(coro, loop=event_loop, **kwargs)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            asyncio.get_running_loop().set_task_factory(factory)
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await respond(send, 200, b"ok")

    with serve(app, loop=loop, lifespan="on") as server:
        assert httpx.get(server.url).text == "ok"
    assert "HTTPCycle.run" in made


def test_answer_without_reading_a_full_body_then_next_request(loop: str) -> None:
    """The app answers once the server has paused reading for its unread body: the rest of the
    body must still be read (and dropped), and the request pipelined after it answered."""
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == "/upload":
            await release.wait()
        await respond(send, 200, scope["path"].encode())

    body = b"x" * 2_000_000
    requests = (b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n" % (len(body), body))
    with serve(app, loop=loop) as server, server.connect() as sock:
        sender = threading.Thread(target=sock.sendall, args=(requests,), daemon=True)
        sender.start()
        state = server.server.state
        assert state is not None

        def reading_paused() -> bool:
            return any(getattr(c, "read_paused", False) for c in state.connections)

        deadline = time.monotonic() + timeout(5)
        while not server.call(reading_paused):  # each call is a loop round trip
            assert time.monotonic() < deadline, "reading never paused"
        server.loop.call_soon_threadsafe(release.set)
        sock.settimeout(timeout(5))
        data = b""
        while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b"/next"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        sender.join(timeout(5))
    assert data.index(b"/upload") < data.index(b"/next")


def test_protocol_instances_have_no_dict(loop: str) -> None:
    """The protocols keep their attributes in slots (fewer instructions per request and per
    connection than an instance dict): a class in their bases without ``__slots__`` would give
    every connection a dict again, and a slot left out would fail where it is first set."""
    with serve(hello, loop=loop) as server, server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        state = server.server.state
        assert state is not None
        dicts = server.call(lambda: [hasattr(c, "__dict__") for c in state.connections])
    assert dicts == [False]
