"""Responses to pipelined requests, written together: in order, whole, and never kept back by an
app that waits. A real server on a real socket; the responses are read back with h11."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path
from typing import Any

import h11
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgisock.transport.http import HOLD_LIMIT
from asgisock.types import Receive, Send
from tests.apps import respond
from tests.support import read_response, serve, timeout

KINDS = ("plain", "streamed", "large", "large-streamed", "file", "after-a-turn", "fails", "no-body")
LARGE = HOLD_LIMIT + 1000  # more than is held at once


def body_of(kind: str, index: int) -> bytes:
    if kind in ("large", "large-streamed"):
        return bytes([65 + index % 26]) * LARGE
    if kind == "fails":
        return b"Internal Server Error\n"
    return b"%s %d" % (kind.encode(), index)


def app_for(file_dir: Path) -> Any:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind, index = scope["path"].strip("/").rsplit("/", 1)
        body = body_of(kind, int(index))
        if kind == "after-a-turn":
            await asyncio.sleep(0)
        if kind == "fails":
            raise RuntimeError("a failing app, on purpose")
        if kind in ("streamed", "large-streamed"):  # chunked; large parts apart from their framing
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for part in (body[:3], body[3:-3], body[-3:], b""):
                await send({"type": "http.response.body", "body": part, "more_body": part != b""})
            return
        if kind == "file":
            path = file_dir / f"{index}.txt"
            path.write_bytes(body)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.pathsend", "path": str(path)})
            return
        if kind == "no-body":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body"})
            return
        await respond(send, 200, body)

    return app


def read_all(data: bytes, methods: list[bytes]) -> list[tuple[int, bytes]]:
    """Status and body of each response in ``data``, parsed as a client that sent ``methods``."""
    client = h11.Connection(h11.CLIENT)
    responses: list[tuple[int, bytes]] = []
    client.receive_data(data)
    client.receive_data(b"")
    for method in methods:
        client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        client.send(h11.EndOfMessage())
        status, body = 0, b""
        while True:
            event = client.next_event()
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"unexpected {event!r} after {len(responses)} responses")
        responses.append((status, body))
        if client.our_state is h11.MUST_CLOSE or client.their_state is h11.MUST_CLOSE:
            break
        client.start_next_cycle()
    return responses


def test_any_pipelined_batch_is_answered_whole_and_in_order(loop: str, tmp_path: Path) -> None:
    with serve(app_for(tmp_path), loop=loop) as server:

        @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(st.lists(st.sampled_from(KINDS), min_size=1, max_size=20))
        def check(kinds: list[str]) -> None:
            batch = b"".join(b"GET /%s/%d HTTP/1.1\r\nHost: x\r\n\r\n" % (kind.encode(), index)
                             for index, kind in enumerate(kinds))
            with socket.create_connection(("127.0.0.1", server.port), timeout=timeout(10)) as sock:
                sock.sendall(batch + b"GET /plain/%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % len(kinds))
                data = read_response(sock)
            expected = []
            for index, kind in enumerate([*kinds, "plain"]):
                if kind == "fails":  # a 500, and the connection closes: the rest are not answered
                    expected.append((500, body_of(kind, index)))
                    break
                expected.append((204, b"") if kind == "no-body" else (200, body_of(kind, index)))
            assert read_all(data, [b"GET"] * len(expected)) == expected

        check()


def test_responses_before_an_app_that_waits_are_not_kept_back(loop: str) -> None:
    released = threading.Event()

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == "/waits":
            # Until the client has the responses before this one: were they held for this one
            # to complete, the client would wait for them and the app for the client.
            await asyncio.get_running_loop().run_in_executor(None, released.wait, timeout(10))
        await respond(send, 200, scope["path"].encode())

    paths = (b"/a", b"/b", b"/waits", b"/c")
    batch = b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path for path in paths)
    with serve(app, loop=loop) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=timeout(5)) as sock:
        sock.sendall(batch + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while received.count(b"HTTP/1.1 200 OK\r\n") < 2 or not received.endswith(b"/b"):
            chunk = sock.recv(65536)  # a timeout here: the first two were kept back
            assert chunk, "the connection closed early"
            received += chunk
        released.set()
        received += read_response(sock)
    assert [body for _, body in read_all(received, [b"GET"] * 5)] == [*paths, b"/last"]
