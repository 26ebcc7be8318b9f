"""The ASGI response extensions end to end, over plain TCP and TLS on both loops: bodies read
from files (``zerocopysend``, ``pathsend``), early hints and trailers, as a client reads them.

Over plain TCP a file goes out through ``os.sendfile``, on either loop; over TLS it is copied
through the process: every test of a file body runs on all four.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Route

from asgisock.types import Receive, Send
from tests.apps import hello
from tests.responses import Response, read_responses
from tests.support import RunningServer, read_response, serve, timeout
from tests.transport.test_tls import Certs

App = Callable[[dict[str, Any], Receive, Send], Any]


@pytest.fixture(params=["tcp", "tls"])
def wire(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


class Served:
    """A server for one test and a way to open connections to it, plain or TLS."""

    def __init__(self, server: RunningServer, certs: Certs | None) -> None:
        self.server = server
        self.certs = certs

    def connect(self, receive_buffer: int | None = None) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(timeout(10))
        sock.connect((self.server.host, self.server.port))
        if self.certs is None:
            return sock
        context: ssl.SSLContext = self.certs.client_context()
        return context.wrap_socket(sock, server_hostname="127.0.0.1")

    def exchange(self, data: bytes, count: int) -> list[Response]:
        with self.connect() as sock:
            sock.sendall(data)
            return read_responses(sock, count)

    def write_buffers(self) -> list[int]:
        """The write buffer of each open connection, read in the server's loop."""
        state = self.server.server.state
        assert state is not None
        return self.server.call(lambda: [c.transport.get_write_buffer_size() for c in state.connections])  # type: ignore[no-any-return]


@contextmanager
def served(app: Any, loop: str, wire: str, tmp_path: Path, **settings: Any) -> Iterator[Served]:
    certs = Certs(tmp_path) if wire == "tls" else None
    with serve(app, loop=loop, **(certs.settings() if certs else {}), **settings) as server:
        yield Served(server, certs)


def get(path: str, *more: str, version: str = "1.1") -> bytes:
    lines = [f"GET {path} HTTP/{version}", "Host: x", *more, "", ""]
    return "\r\n".join(lines).encode()


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(300_000))  # several pieces of the copy through the process
    return path


# -- pathsend --------------------------------------------------------------------------------------

def pathsend_app(path: Path) -> App:
    """``/file`` sends ``path`` (``?path=`` another; ``?length=`` sets a Content-Length that
    many bytes off the file's size); ``/hello`` answers as usual."""
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == "/hello":
            await hello(scope, receive, send)
            return
        assert "http.response.pathsend" in scope["extensions"]
        query = dict(parse_qsl(scope["query_string"].decode()))
        headers = [(b"content-type", b"application/octet-stream")]
        if "length" in query:
            headers.append((b"content-length", b"%d" % (path.stat().st_size + int(query["length"]))))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": query.get("path", str(path))})

    return app


def test_the_kernel_sends_the_file_over_plain_tcp(loop: str, wire: str, tmp_path: Path, data_file: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """On both loops a file never passes through the process over plain TCP: ``os.sendfile``
    and no ``os.pread``; over TLS it must be read, to be encrypted."""
    calls: list[str] = []

    def counting(name: str) -> Callable[..., Any]:
        call = getattr(os, name)

        def counted(*args: Any) -> Any:
            calls.append(name)
            return call(*args)
        return counted

    for name in ("sendfile", "pread"):
        monkeypatch.setattr(os, name, counting(name))
    with served(pathsend_app(data_file), loop, wire, tmp_path) as server, server.connect() as sock:
        sock.sendall(get("/file"))
        assert read_responses(sock, 1)[0].body == data_file.read_bytes()
    if wire == "tcp":
        assert "sendfile" in calls and "pread" not in calls
    else:
        assert "pread" in calls and "sendfile" not in calls


def test_what_the_transport_holds_goes_before_the_file(loop: str, wire: str, tmp_path: Path,
                                                      data_file: Path) -> None:
    """A body part that a slow reader left in the transport's buffer is written before the
    kernel sends the file after it."""
    before = os.urandom(4 * 2**20)  # more than the socket takes: the rest waits in the transport

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": before, "more_body": True})
        with data_file.open("rb") as file:
            await send({"type": "http.response.zerocopysend", "file": file})

    with served(app, loop, wire, tmp_path) as server, server.connect(receive_buffer=65536) as sock:
        sock.sendall(get("/"))
        response = read_responses(sock, 1)[0]
    assert response.header(b"transfer-encoding") == b"chunked"
    assert response.body == before + data_file.read_bytes()


@pytest.mark.parametrize("query", ["", "length=0"])
def test_pathsend_sends_the_file_and_the_connection_goes_on(loop: str, wire: str, tmp_path: Path, data_file: Path,
                                                            query: str) -> None:
    expected = data_file.read_bytes()
    with served(pathsend_app(data_file), loop, wire, tmp_path) as server, server.connect() as sock:
        # Pipelined: the next request waits while the file goes out.
        sock.sendall(get(f"/file?{query}") + get("/hello"))
        file, after = read_responses(sock, 2)
        assert file.status == 200 and file.header(b"content-length") == b"%d" % len(expected)
        assert file.body == expected and after.body == b"Hello, world!"
        # Reading goes on after the file: a request sent only now is answered too.
        sock.sendall(get("/file"))
        assert read_responses(sock, 1)[0].body == expected


def test_head_gets_none_of_the_file(loop: str, wire: str, tmp_path: Path, data_file: Path) -> None:
    with served(pathsend_app(data_file), loop, wire, tmp_path) as server, server.connect() as sock:
        sock.sendall(b"HEAD /file?length=0 HTTP/1.1\r\nHost: x\r\n\r\n" + get("/hello", "Connection: close"))
        data = read_response(sock)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert b"content-length: %d" % data_file.stat().st_size in head
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b"Hello, world!")


@pytest.mark.parametrize("length", [1, -1])
def test_a_file_that_does_not_match_its_content_length_closes_the_connection(
        loop: str, wire: str, tmp_path: Path, data_file: Path, caplog: pytest.LogCaptureFixture, length: int) -> None:
    with served(pathsend_app(data_file), loop, wire, tmp_path) as server, server.connect() as sock:
        sock.sendall(get(f"/file?length={length}") + get("/hello"))
        assert read_response(sock) == b""  # as for a body of bytes: the response cannot be framed
    assert "content-length says" in caplog.text


@pytest.mark.parametrize(("target", "reason"), [
    ("path=data.bin", "the path is not absolute"),
    ("path=/nowhere/data.bin", "No such file or directory"),
    ("path=/", "not a regular file"),
])
def test_a_path_that_cannot_be_sent_is_a_500_and_the_server_goes_on(loop: str, wire: str, tmp_path: Path,
                                                                    data_file: Path, target: str, reason: str,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    with served(pathsend_app(data_file), loop, wire, tmp_path) as server:
        answer = server.exchange(get(f"/file?{target}"), 1)[0]
        assert answer.status == 500 and answer.body == b"Internal Server Error\n"
        assert server.exchange(get("/file"), 1)[0].body == data_file.read_bytes()
    assert f"http.response.pathsend cannot send '{target.removeprefix('path=')}': {reason}" in caplog.text


# -- zerocopysend ----------------------------------------------------------------------------------

def zerocopy_app(path: Path) -> App:
    """The body as bytes and parts of the app's own file, with and without offsets and counts."""
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == "/hello":
            await hello(scope, receive, send)
            return
        assert "http.response.zerocopysend" in scope["extensions"]
        size = path.stat().st_size
        headers = [(b"content-length", b"%d" % (size + 25))] if scope["query_string"] == b"length" else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        with path.open("rb") as file:
            def part(**fields: Any) -> dict[str, Any]:
                return {"type": "http.response.zerocopysend", "file": file, "more_body": True, **fields}

            await send({"type": "http.response.body", "body": b"<", "more_body": True})
            await send(part(offset=10, count=5))
            await send(part(count=3))  # from the file's position: just after the part before
            await send(part(offset=size - 4, count=100))  # past the end: what there is
            await send({"type": "http.response.body", "body": b"|", "more_body": True})
            await send(part(offset=0, count=0))
            file.seek(200_000)
            await send(part(count=10))
            await send({"type": "http.response.body", "body": b">", "more_body": True})
            await send({"type": "http.response.zerocopysend", "file": file.fileno(), "offset": 0})  # a descriptor
            assert file.tell() == size  # the position ends after the bytes sent

    return app


def zerocopy_expected(data: bytes) -> bytes:
    return b"<" + data[10:15] + data[15:18] + data[-4:] + b"|" + data[200_000:200_010] + b">" + data


@pytest.mark.parametrize("query", ["", "length"])
def test_zerocopysend_parts_mix_with_body_messages(loop: str, wire: str, tmp_path: Path, data_file: Path,
                                                   query: str) -> None:
    expected = zerocopy_expected(data_file.read_bytes())
    with served(zerocopy_app(data_file), loop, wire, tmp_path) as server, server.connect() as sock:
        sock.sendall(get(f"/?{query}") + get("/hello"))
        body, after = read_responses(sock, 2)
    assert body.body == expected and after.body == b"Hello, world!"
    if query:
        assert body.header(b"content-length") == b"%d" % len(expected)
    else:
        assert body.header(b"transfer-encoding") == b"chunked"


def test_a_file_that_is_not_a_regular_file_is_a_500(loop: str, wire: str, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        reading, writing = os.pipe()
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.zerocopysend", "file": reading})
        finally:
            os.close(reading)
            os.close(writing)

    with served(app, loop, wire, tmp_path) as server:
        assert server.exchange(get("/"), 1)[0].status == 500
    assert "http.response.zerocopysend cannot send" in caplog.text and "not a regular file" in caplog.text


# -- a large file to a slow reader -----------------------------------------------------------------

def test_a_large_file_waits_for_a_slow_reader(loop: str, wire: str, tmp_path: Path) -> None:
    """10 MiB read by a client that takes 64 KiB at a time: the server never holds much of it in
    memory (the kernel's sendfile holds none; the copy through the process waits on the
    connection's write flow control)."""
    path = tmp_path / "large.bin"
    path.write_bytes(os.urandom(10 * 2**20))
    expected = path.read_bytes()
    buffered: list[int] = []
    with served(pathsend_app(path), loop, wire, tmp_path) as server, \
            server.connect(receive_buffer=65536) as sock:
        sock.sendall(get("/file", "Connection: close"))
        received = bytearray()
        reads = 0
        while chunk := sock.recv(65536):
            received += chunk
            reads += 1
            if reads % 8 == 0:
                buffered += server.write_buffers()
    _, _, body = bytes(received).partition(b"\r\n\r\n")
    assert body == expected
    assert len(buffered) > 10
    assert max(buffered) < 2**20, max(buffered)


# -- early hints ------------------------------------------------------------------------------------

def test_early_hints_reach_the_client_before_the_final_head(loop: str, wire: str, tmp_path: Path) -> None:
    gate: list[asyncio.Event] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == "/hello":
            await hello(scope, receive, send)
            return
        assert "http.response.early_hint" in scope["extensions"]
        gate.append(asyncio.Event())
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload; as=style"]})
        await gate[0].wait()  # the client has the 103 before anything else is sent
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": False})
        await send({"type": "http.response.early_hint", "links": [b"</a.js>; rel=preload", b"</b.js>; rel=preload"]})
        await send({"type": "http.response.body", "body": b"page", "more_body": True})
        await send({"type": "http.response.early_hint", "links": [b"</late.js>"]})  # too late: dropped
        await send({"type": "http.response.body", "body": b""})

    with served(app, loop, wire, tmp_path) as server, server.connect() as sock:
        sock.sendall(get("/") + get("/hello"))
        first = read_responses(sock, 1)[0]
        assert first.status == 103 and first.headers == [(b"link", b"</style.css>; rel=preload; as=style")]
        server.server.call(gate[0].set)
        second, final, after = read_responses(sock, 3)
    assert second.status == 103
    assert second.headers == [(b"link", b"</a.js>; rel=preload"), (b"link", b"</b.js>; rel=preload")]
    assert final.status == 200 and final.body == b"page" and after.body == b"Hello, world!"


def test_no_early_hints_for_http10(loop: str, wire: str, tmp_path: Path) -> None:
    extensions: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        extensions.append(scope["extensions"])
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload"]})  # sent anyway
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"page"})

    with served(app, loop, wire, tmp_path) as server, server.connect() as sock:
        sock.sendall(get("/", version="1.0"))
        data = read_response(sock)
    assert data.startswith(b"HTTP/1.0 200 OK\r\n") and b"Early Hints" not in data and data.endswith(b"page")
    assert "http.response.early_hint" not in extensions[0]
    assert "http.response.pathsend" in extensions[0]


def test_invalid_links_are_a_500(loop: str, wire: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.early_hint", "links": [b"</a>\r\nSet-Cookie: x=1"]})

    with served(app, loop, wire, tmp_path) as server:
        answer = server.exchange(get("/"), 1)[0]
    assert answer.status == 500 and not answer.header(b"set-cookie")
    assert "invalid http.response.early_hint" in caplog.text


# -- trailers ---------------------------------------------------------------------------------------

def trailers_app(order: list[str]) -> App:
    """Trailers after a body in two messages; ``order`` records the app's progress."""
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == "/hello":
            order.append("next request")
            await hello(scope, receive, send)
            return
        assert "http.response.trailers" in scope["extensions"]
        query = scope["query_string"]
        headers = [(b"trailer", b"x-checksum, x-more")]
        if query == b"length":
            headers.append((b"content-length", b"6"))
        await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": True})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"def"})
        for _ in range(5):
            await asyncio.sleep(0)  # time for a wrongly started next request to run
        order.append("body sent")
        more = query == b"more"
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"42")], "more_trailers": more})
        if more:
            await send({"type": "http.response.trailers", "headers": [(b"x-more", b"1")]})
        order.append("trailers sent")

    return app


@pytest.mark.parametrize(("te", "query", "expected"), [
    (True, "", [(b"x-checksum", b"42")]),
    (True, "more", [(b"x-checksum", b"42"), (b"x-more", b"1")]),
    (False, "", []),
    (True, "length", []),
])
def test_trailers_and_the_request_after_them(loop: str, wire: str, tmp_path: Path, te: bool, query: str,
                                             expected: list[tuple[bytes, bytes]]) -> None:
    order: list[str] = []
    with served(trailers_app(order), loop, wire, tmp_path) as server:
        request = get(f"/?{query}", *(["TE: trailers", "Connection: TE"] if te else []))
        response, after = server.exchange(request + get("/hello"), 2)
    assert response.body == b"abcdef" and response.trailers == expected
    assert (response.header(b"content-length") == b"6") is (query == "length")
    assert (response.header(b"transfer-encoding") == b"chunked") is (query != "length")
    assert after.body == b"Hello, world!"
    assert order == ["body sent", "trailers sent", "next request"]


# -- a framework that uses them ---------------------------------------------------------------------

def test_starlette_file_response_and_early_hints(loop: str, wire: str, tmp_path: Path, data_file: Path) -> None:
    async def page(request: Request) -> FileResponse:
        await request.send_early_hints("</style.css>; rel=preload; as=style")
        return FileResponse(data_file)  # sent with pathsend, as the scope offers it

    app = Starlette(routes=[Route("/", page)])
    with served(app, loop, wire, tmp_path) as server:
        hint, response = server.exchange(get("/"), 2)
    assert hint.status == 103 and hint.headers == [(b"link", b"</style.css>; rel=preload; as=style")]
    assert response.status == 200 and response.body == data_file.read_bytes()


def test_the_access_log_counts_a_files_bytes_and_an_unread_body_is_dropped(
        loop: str, wire: str, tmp_path: Path, data_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "asgisock.access")
    upload = b"POST /file HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde"  # never read by the app
    with served(pathsend_app(data_file), loop, wire, tmp_path, access_log_format="%(m)s %(s)s %(B)s") as server:
        file, after = server.exchange(upload + get("/hello"), 2)
    assert file.body == data_file.read_bytes() and after.body == b"Hello, world!"
    lines = [r.getMessage() for r in caplog.records if r.name == "asgisock.access"]
    assert lines == [f"POST 200 {len(file.body)}", "GET 200 13"]


def test_a_client_that_leaves_during_a_file_is_no_error(loop: str, wire: str, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "large.bin"
    path.write_bytes(os.urandom(8 * 2**20))
    with served(pathsend_app(path), loop, wire, tmp_path) as server:
        with server.connect(receive_buffer=65536) as sock:
            sock.sendall(get("/file"))
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset
        assert server.exchange(get("/hello"), 1)[0].body == b"Hello, world!"
        state = server.server.server.state
        assert state is not None
        deadline = time.monotonic() + timeout(5)
        while server.server.call(lambda: len(state.connections)):  # each call is a loop round trip
            assert time.monotonic() < deadline, "the connection of the client that left stayed open"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
