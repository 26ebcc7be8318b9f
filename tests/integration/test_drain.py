"""The graceful drain, end to end: a real process, real signals, real clients.

The listening socket closes at once, idle keep-alive connections close, a response in flight
finishes with ``Connection: close``, WebSockets get 1001 (going away); at the deadline what is
left is cut (the apps see the disconnect, then the tasks of those that ignore it are
cancelled), the lifespan shutdown still runs and the process exits 0.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from asgisock.config import Config
from tests.processes import Cli, Launcher, read_until_closed
from tests.support import serve, timeout

APP_SOURCE = '''
import asyncio


def say(text):
    print(text, flush=True)


async def lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            say("lifespan shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def websocket(receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    say("ws open")
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            say(f"ws disconnect {message['code']}")
            return
        await send({"type": "websocket.send", "text": message.get("text") or ""})


async def stream(receive, send):
    """A streaming response that watches for http.disconnect while it sends."""
    async def watch():
        while (message := await receive())["type"] == "http.request":
            pass
        say(f"stream saw {message['type']}")

    watcher = asyncio.ensure_future(watch())
    await send({"type": "http.response.start", "status": 200, "headers": []})
    say("stream started")
    try:
        while not watcher.done():
            await send({"type": "http.response.body", "body": b"tick\\n", "more_body": True})
            await asyncio.sleep(0.02)
    except OSError:
        say("stream send raised")
    await watcher


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    if scope["type"] == "websocket":
        return await websocket(receive, send)
    path = scope["path"]
    if path == "/slow":
        say("slow started")
        while (await receive()).get("more_body"):
            pass
    elif path == "/stream":
        return await stream(receive, send)
    elif path == "/poll":
        say("poll started")
        message = await receive()  # the request: no body
        message = await receive()
        say(f"poll saw {message['type']}")
        return
    elif path == "/ignore":
        say("ignore started")
        try:
            while True:
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            say("ignore cancelled")
            raise
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})
'''


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    (tmp_path / "drainapp.py").write_text(APP_SOURCE)
    launcher = Launcher(tmp_path)
    yield launcher
    for cli in launcher.started:
        cli.stop()


def get(sock: socket.socket, path: str) -> None:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length, leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"done"):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def test_the_default_deadline_is_finite() -> None:
    assert Config("drainapp:app").timeout_graceful_shutdown == 25.0


def test_drain_closes_idle_connections_and_finishes_the_one_in_flight(launch: Launcher, loop: str) -> None:
    cli = launch("drainapp:app", "--port", "0", "--loop", loop)
    with cli.connect() as idle, cli.connect() as busy:
        get(idle, "/")
        assert b"connection: close" not in read_response(idle)  # kept alive, now idle
        busy.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
        cli.stdout.wait_for("slow started")
        cli.send_signal(signal.SIGTERM)
        assert idle.recv(1) == b""  # closed by the server at once
        cli.stderr.wait_for("Waiting for connections to close")
        with pytest.raises(ConnectionRefusedError):
            cli.connect()  # the listening socket is closed
        busy.sendall(b"hello")
        data = read_until_closed(busy)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close\r\n" in data.lower()
    assert cli.wait() == 0, cli.stderr.text
    assert "Draining 2 connections: 1 requests in flight, 0 awaited, 0 WebSockets, 1 idle closed" in cli.stderr.text
    assert "Drain done: 2 of 2 connections finished, 0 cut" in cli.stderr.text
    assert cli.stdout.lines[-1] == "lifespan shutdown"


def test_drain_answers_a_connection_that_had_not_sent_its_request_yet(launch: Launcher, loop: str) -> None:
    cli = launch("drainapp:app", "--port", "0", "--loop", loop, "--log-level", "trace")
    with cli.connect() as fresh, cli.connect() as partial:
        partial.sendall(b"GET / HTTP/1.1\r\n")
        cli.stderr.wait_count("HTTP connection made", 2)  # both accepted by the server
        cli.send_signal(signal.SIGTERM)
        cli.stderr.wait_for("Waiting for connections to close")
        get(fresh, "/")
        partial.sendall(b"Host: x\r\n\r\n")
        for sock in (fresh, partial):
            data = read_until_closed(sock)
            assert data.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"connection: close\r\n" in data.lower()
    assert cli.wait() == 0, cli.stderr.text
    assert "Draining 2 connections: 0 requests in flight, 2 awaited, 0 WebSockets, 0 idle closed" in cli.stderr.text


def test_the_deadline_disconnects_streams_and_long_polls_and_cancels_the_rest(launch: Launcher, loop: str) -> None:
    cli = launch("drainapp:app", "--port", "0", "--loop", loop, "--timeout-graceful-shutdown", "0.3")
    with cli.connect() as stream, cli.connect() as poll, cli.connect() as ignore:
        get(stream, "/stream")
        get(poll, "/poll")
        get(ignore, "/ignore")
        for started in ("stream started", "poll started", "ignore started"):
            cli.stdout.wait_for(started)
        assert stream.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
        cli.send_signal(signal.SIGTERM)
        assert cli.wait() == 0, cli.stderr.text
        for sock in (stream, poll, ignore):
            read_until_closed(sock)
    output = cli.stdout.lines
    assert "stream saw http.disconnect" in output
    assert "poll saw http.disconnect" in output
    assert "ignore cancelled" in output  # it never looked: cancelled after a short grace
    assert output[-1] == "lifespan shutdown"
    assert "Graceful shutdown timed out after 0.3 s" in cli.stderr.text
    assert "Drain done: 0 of 3 connections finished, 3 cut" in cli.stderr.text


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_websockets_get_1001_going_away(launch: Launcher, loop: str, sig: signal.Signals) -> None:
    cli = launch("drainapp:app", "--port", "0", "--loop", loop)
    with ws_connect(cli.url.replace("http", "ws") + "/ws", open_timeout=timeout(5)) as ws:
        ws.send("hi")
        assert ws.recv(timeout(5)) == "hi"
        cli.send_signal(sig)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout(5))
        assert ws.close_code == 1001
    assert cli.wait() == 0, cli.stderr.text
    assert "ws disconnect 1001" in cli.stdout.lines
    assert "Draining 1 connections: 0 requests in flight, 0 awaited, 1 WebSockets, 0 idle closed" in cli.stderr.text
    assert "Drain done: 1 of 1 connections finished, 0 cut" in cli.stderr.text


def test_a_second_sigterm_stops_at_once(launch: Launcher, loop: str) -> None:
    cli: Cli = launch("drainapp:app", "--port", "0", "--loop", loop)  # the default 25 s deadline
    with cli.connect() as sock:
        get(sock, "/ignore")
        cli.stdout.wait_for("ignore started")
        cli.send_signal(signal.SIGTERM)
        cli.stderr.wait_for("Waiting for connections to close")
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(seconds=5) == 0
        read_until_closed(sock)
    assert "Graceful shutdown timed out" not in cli.stderr.text


async def echo_until_closed(scope: dict[str, object], receive: object, send: object) -> None:
    from typing import Any, cast
    rcv, snd = cast(Any, receive), cast(Any, send)
    await rcv()
    await snd({"type": "websocket.accept"})
    while (await rcv())["type"] != "websocket.disconnect":
        pass


def test_a_restart_closes_websockets_with_1012(loop: str) -> None:
    with serve(echo_until_closed, loop=loop) as server, \
            ws_connect(server.ws_url, open_timeout=timeout(5)) as ws:
        server.server.request_exit(server.loop, restart=True)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout(5))
        assert ws.close_code == 1012
