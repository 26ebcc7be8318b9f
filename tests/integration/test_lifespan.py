"""The ASGI lifespan protocol as served: startup before requests, shutdown after, shared state."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from asgisock import Config, Server
from asgisock.server import loop_factory
from asgisock.types import Receive, Send
from tests.apps import respond
from tests.support import serve, timeout


class RecordingApp:
    """Answers lifespan events as told and records everything it sees, in order."""

    def __init__(self, *, startup: str = "complete", shutdown: str = "complete") -> None:
        self.startup = startup
        self.shutdown = shutdown
        self.events: list[str] = []
        self.lifespan_scope: dict[str, Any] = {}

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(scope, receive, send)
        else:
            self.events.append(f"request {scope['path']}")
            await respond(send, 200, b"ok")

    async def lifespan(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        self.lifespan_scope = scope
        message = await receive()
        assert message["type"] == "lifespan.startup"
        self.events.append("startup")
        scope["state"]["started"] = True
        await send(self.reply("startup", self.startup))
        if self.startup != "complete":
            return
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        self.events.append("shutdown")
        await send(self.reply("shutdown", self.shutdown))

    @staticmethod
    def reply(phase: str, outcome: str) -> dict[str, Any]:
        if outcome == "complete":
            return {"type": f"lifespan.{phase}.complete"}
        return {"type": f"lifespan.{phase}.failed", "message": outcome}


async def http_only(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        raise RuntimeError(f"unsupported scope type {scope['type']}")
    await respond(send, 200, b"served")


def run_embedded(app: Any, loop: str, *, record: list[Server] | None = None, **settings: Any) -> Server:
    """Run a server in this thread's own loop until it starts (then stop it) or gives up."""
    server = Server(Config(app, port=0, loop=loop, **settings))
    if record is not None:
        record.append(server)

    async def main() -> None:
        started = asyncio.Event()
        server.on_started = lambda _server: started.set()
        task = asyncio.create_task(server.serve())
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait([task, waiter], timeout=timeout(10), return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        server.should_exit = True
        await asyncio.wait_for(task, timeout(10))

    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(main())
    return server


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_startup_before_requests_and_shutdown_after(loop: str, mode: str) -> None:
    app = RecordingApp()
    with serve(app, loop=loop, lifespan=mode) as server:
        assert app.events == ["startup"]
        httpx.get(server.url + "/one")
        assert app.events == ["startup", "request /one"]
    assert app.events == ["startup", "request /one", "shutdown"]
    assert app.lifespan_scope["type"] == "lifespan"
    assert app.lifespan_scope["asgi"] == {"version": "3.0", "spec_version": "2.0"}


def test_lifespan_off_never_sends_lifespan_events(loop: str) -> None:
    app = RecordingApp()
    with serve(app, loop=loop, lifespan="off") as server:
        httpx.get(server.url)
    assert app.events == ["request /"]


def test_state_is_copied_into_every_request(loop: str) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            scope["state"].update(db="connected", counter=0)
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        seen.append(dict(scope["state"]))
        scope["state"]["counter"] += 1
        scope["state"]["leaked"] = scope["path"]
        await respond(send, 200, b"ok")

    with serve(app, loop=loop, lifespan="on") as server, httpx.Client() as client:
        client.get(server.url + "/first")
        client.get(server.url + "/second")  # same connection: keep-alive must not share state either
        httpx.get(server.url + "/third")
        lifespan_state = server.call(lambda: dict(server.server.state.app_state))  # type: ignore[union-attr]
    assert seen == [{"db": "connected", "counter": 0}] * 3
    assert lifespan_state == {"db": "connected", "counter": 0}


def test_auto_serves_app_that_rejects_lifespan(loop: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "asgisock.error")
    with serve(http_only, loop=loop, lifespan="auto") as server:
        response = httpx.get(server.url)
    assert response.text == "served"
    assert "ASGI 'lifespan' protocol appears unsupported." in caplog.messages
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_on_stops_when_app_rejects_lifespan(loop: str, caplog: pytest.LogCaptureFixture) -> None:
    server = run_embedded(http_only, loop, lifespan="on")
    assert (server.started, server.exit_code) == (False, 3)
    assert "Application startup failed. Exiting." in caplog.messages
    crash = next(r for r in caplog.records if r.getMessage() == "Exception in 'lifespan' protocol")
    assert crash.exc_info is not None and "unsupported scope type lifespan" in str(crash.exc_info[1])


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_startup_failed_stops_with_the_message(loop: str, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    app = RecordingApp(startup="no database")
    server = run_embedded(app, loop, lifespan=mode)
    assert (server.started, server.exit_code) == (False, 3)
    assert not server.servers  # never listened
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["no database", "Application startup failed. Exiting."]


def test_shutdown_failed_is_logged(loop: str, caplog: pytest.LogCaptureFixture) -> None:
    app = RecordingApp(shutdown="could not flush the cache")
    with serve(app, loop=loop, lifespan="on") as server:
        httpx.get(server.url)
    assert app.events[-1] == "shutdown"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["could not flush the cache", "Application shutdown failed."]


def test_exception_during_shutdown_is_logged(loop: str, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        raise ValueError("shutdown went wrong")

    with serve(app, loop=loop, lifespan="on"):
        pass
    crash = next(r for r in caplog.records if r.getMessage() == "Exception in 'lifespan' protocol")
    assert crash.exc_info is not None and str(crash.exc_info[1]) == "shutdown went wrong"
    assert "Application shutdown failed." in caplog.messages


def test_startup_happens_before_listening(loop: str) -> None:
    listening_during_startup: list[bool] = []
    servers: list[Server] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        listening_during_startup.append(servers[0].started or bool(servers[0].sockets))
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    server = run_embedded(app, loop, record=servers, lifespan="on")
    assert server.started
    assert listening_during_startup == [False]
