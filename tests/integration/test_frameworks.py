"""FastAPI and Starlette apps served by asgisock, on both event loops.

Both frameworks get the same routes, so every test runs against each of them: path and query
parameters, JSON bodies checked by pydantic, streaming, files, lifespan state, the URL as the
app rebuilds it, exception handlers and background tasks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from asgisock.types import Receive, Send
from tests.support import read_response, serve, timeout

CHUNKS = [f"chunk {i}\n".encode() for i in range(5)]


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


class StoredItem(Item):
    id: int


class Teapot(Exception):
    """Raised by /teapot; the apps' own exception handler turns it into a 500."""


class Harness:
    """What the tests observe from outside the app: lifespan events and background work."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.events: list[str] = []
        self.release_background = threading.Event()
        self.background_done = threading.Event()

    async def endless(self) -> AsyncIterator[bytes]:
        """A server-sent-events style stream that only the client's disconnect ends."""
        while True:
            yield b"tick\n"
            await asyncio.sleep(0.01)

    def background_job(self, name: str) -> None:
        """Runs after the response is sent; it waits for the test, which already has the response."""
        if self.release_background.wait(timeout(5)):
            self.events.append(f"background {name}")
            self.background_done.set()

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[dict[str, Any]]:
        app.state.started_by = "lifespan"
        self.events.append("startup")
        yield {"greeting": "hello from lifespan"}
        self.events.append("shutdown")


async def numbered_chunks() -> AsyncIterator[bytes]:
    for chunk in CHUNKS:
        yield chunk


def whoami(request: Request) -> dict[str, Any]:
    assert request.client is not None
    return {
        "client": [request.client.host, request.client.port],
        "url": str(request.url),
        "root_path": request.scope["root_path"],
        "item_url": str(request.url_for("item", item_id=3)),
    }


def fastapi_app(harness: Harness) -> FastAPI:
    app = FastAPI(lifespan=harness.lifespan)

    @app.get("/items/{item_id}", name="item")
    async def get_item(item_id: int, q: str | None = None, limit: int = 10) -> dict[str, Any]:
        return {"item_id": item_id, "q": q, "limit": limit}

    @app.post("/items", status_code=201)
    async def create_item(item: Item) -> StoredItem:
        return StoredItem(id=1, **item.model_dump())

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        return StreamingResponse(numbered_chunks(), media_type="text/plain")

    @app.get("/endless")
    async def endless() -> StreamingResponse:
        return StreamingResponse(harness.endless(), media_type="text/event-stream")

    @app.get("/file")
    async def file() -> FileResponse:
        return FileResponse(harness.file)

    @app.get("/state")
    async def state(request: Request) -> dict[str, Any]:
        return {"app": request.app.state.started_by, "lifespan": request.state.greeting}

    @app.get("/whoami")
    async def who(request: Request) -> dict[str, Any]:
        return whoami(request)

    @app.get("/teapot")
    async def teapot() -> None:
        raise Teapot

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("unhandled in the route")

    @app.post("/jobs", status_code=202)
    async def job(background: BackgroundTasks) -> dict[str, str]:
        background.add_task(harness.background_job, "from fastapi")
        return {"status": "queued"}

    @app.exception_handler(Teapot)
    async def on_teapot(request: Request, exc: Teapot) -> JSONResponse:
        return JSONResponse({"error": "teapot"}, status_code=500)

    return app


def starlette_app(harness: Harness) -> Starlette:
    async def get_item(request: Request) -> JSONResponse:
        params = request.query_params
        return JSONResponse({"item_id": int(request.path_params["item_id"]), "q": params.get("q"),
                             "limit": int(params.get("limit", 10))})

    async def create_item(request: Request) -> JSONResponse:
        item = Item.model_validate(await request.json())
        return JSONResponse(StoredItem(id=1, **item.model_dump()).model_dump(), status_code=201)

    async def stream(request: Request) -> StreamingResponse:
        return StreamingResponse(numbered_chunks(), media_type="text/plain")

    async def endless(request: Request) -> StreamingResponse:
        return StreamingResponse(harness.endless(), media_type="text/event-stream")

    async def file(request: Request) -> FileResponse:
        return FileResponse(harness.file)

    async def state(request: Request) -> JSONResponse:
        return JSONResponse({"app": request.app.state.started_by, "lifespan": request.state.greeting})

    async def who(request: Request) -> JSONResponse:
        return JSONResponse(whoami(request))

    async def teapot(request: Request) -> Response:
        raise Teapot

    async def crash(request: Request) -> Response:
        raise RuntimeError("unhandled in the route")

    async def job(request: Request) -> JSONResponse:
        task = BackgroundTask(harness.background_job, "from starlette")
        return JSONResponse({"status": "queued"}, status_code=202, background=task)

    async def on_teapot(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": "teapot"}, status_code=500)

    routes = [
        Route("/items/{item_id:int}", get_item, name="item"),
        Route("/items", create_item, methods=["POST"]),
        Route("/stream", stream),
        Route("/endless", endless),
        Route("/file", file),
        Route("/state", state),
        Route("/whoami", who),
        Route("/teapot", teapot),
        Route("/crash", crash),
        Route("/jobs", job, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=harness.lifespan, exception_handlers={Teapot: on_teapot})


FRAMEWORKS: dict[str, Callable[[Harness], Any]] = {"fastapi": fastapi_app, "starlette": starlette_app}


@pytest.fixture(params=sorted(FRAMEWORKS))
def framework(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    file = tmp_path / "payload.bin"
    file.write_bytes(os.urandom(3 * 2**20 + 17))
    return Harness(file)


@pytest.fixture
def served(framework: str, harness: Harness, loop: str) -> Iterator[str]:
    """The base URL of the framework's app, served with lifespan on."""
    with serve(FRAMEWORKS[framework](harness), loop=loop, lifespan="on") as server:
        yield server.url
    assert harness.events[0] == "startup"
    assert harness.events[-1] == "shutdown"


def get(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, timeout=timeout(5), **kwargs)


def test_path_and_query_parameters(served: str) -> None:
    response = get(served + "/items/42?q=caf%C3%A9&limit=3")
    assert response.status_code == 200
    assert response.json() == {"item_id": 42, "q": "café", "limit": 3}
    assert get(served + "/items/7").json() == {"item_id": 7, "q": None, "limit": 10}
    assert get(served + "/items/not-a-number").status_code in (404, 422)


def test_json_body_validated_by_pydantic(served: str) -> None:
    item = {"name": "lamp", "price": 12.5, "tags": ["light", "desk"]}
    response = httpx.post(served + "/items", json=item, timeout=timeout(5))
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {**item, "id": 1}


def test_streaming_response_is_chunked(served: str) -> None:
    port = int(served.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(5)) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = read_response(sock)
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"transfer-encoding: chunked" in head.lower()
    # each chunk the app yields is its own chunk on the wire, and the stream is terminated
    assert body == b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in CHUNKS) + b"0\r\n\r\n"
    with httpx.stream("GET", served + "/stream", timeout=timeout(5)) as response:
        assert b"".join(response.iter_bytes()) == b"".join(CHUNKS)


def finished_when_done(app: Any, finished: threading.Event) -> Any:
    """Wrap ``app`` to tell the test when an HTTP call of it has returned or raised."""

    async def wrapper(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                finished.set()

    return wrapper


def leave_endless_stream(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(5)) as sock:
        sock.sendall(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while received.count(b"tick") < 2:
            received += sock.recv(65536)
    assert b"transfer-encoding: chunked" in received


def test_client_leaving_an_endless_stream_ends_the_request(framework: str, harness: Harness, loop: str) -> None:
    finished = threading.Event()
    app = finished_when_done(FRAMEWORKS[framework](harness), finished)
    with serve(app, loop=loop, lifespan="on") as server:
        leave_endless_stream(server.port)
        assert finished.wait(timeout(5))
        assert get(server.url + "/items/1").status_code == 200


def test_client_leaving_a_stream_is_not_an_error(framework: str, harness: Harness, loop: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    finished = threading.Event()
    app = finished_when_done(FRAMEWORKS[framework](harness), finished)
    with serve(app, loop=loop, lifespan="on") as server:
        leave_endless_stream(server.port)
        assert finished.wait(timeout(5))
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_file_response(served: str, harness: Harness) -> None:
    expected = harness.file.read_bytes()
    with httpx.Client(timeout=timeout(10)) as client:
        response = client.get(served + "/file")
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(expected))
        assert response.content == expected
        partial = client.get(served + "/file", headers={"Range": "bytes=100-199"})
        assert partial.status_code == 206
        assert partial.content == expected[100:200]
        assert client.get(served + "/items/1").status_code == 200  # the connection is still usable


def test_lifespan_state_visible_in_routes(served: str) -> None:
    assert get(served + "/state").json() == {"app": "lifespan", "lifespan": "hello from lifespan"}


def test_client_and_url(served: str) -> None:
    port = int(served.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(5)) as sock:
        sock.sendall(b"GET /whoami?x=1 HTTP/1.1\r\nHost: example.test:8080\r\nConnection: close\r\n\r\n")
        body = read_response(sock).split(b"\r\n\r\n", 1)[1]
        client_port = sock.getsockname()[1]
    assert httpx.Response(200, content=body).json() == {
        "client": ["127.0.0.1", client_port],
        "url": "http://example.test:8080/whoami?x=1",  # built from the Host header
        "root_path": "",
        "item_url": "http://example.test:8080/items/3",
    }


def test_root_path(framework: str, harness: Harness, loop: str) -> None:
    app = FRAMEWORKS[framework](harness)
    with serve(app, loop=loop, lifespan="on", root_path="/api") as server:
        response = get(server.url + "/whoami")  # a proxy stripped the /api prefix
    assert response.status_code == 200
    shown = response.json()
    assert shown["root_path"] == "/api"
    assert shown["url"] == server.url + "/api/whoami"
    assert shown["item_url"] == server.url + "/api/items/3"


def test_exception_handler_answers_500(served: str) -> None:
    response = get(served + "/teapot")
    assert response.status_code == 500
    assert response.json() == {"error": "teapot"}


def test_unhandled_exception_is_500_and_logged(served: str, caplog: pytest.LogCaptureFixture) -> None:
    with httpx.Client(timeout=timeout(5)) as client:
        response = client.get(served + "/crash")
        assert response.status_code == 500
        assert response.text == "Internal Server Error"
        assert client.get(served + "/items/1").status_code == 200
    errors = [r for r in caplog.records if r.name == "asgisock.error" and r.levelno == logging.ERROR]
    assert errors and errors[0].exc_info is not None
    assert str(errors[0].exc_info[1]) == "unhandled in the route"


def test_background_task_runs_after_the_response(served: str, framework: str, harness: Harness) -> None:
    response = httpx.post(served + "/jobs", timeout=timeout(5))
    assert (response.status_code, response.json()) == (202, {"status": "queued"})
    assert not harness.background_done.is_set()  # the response came first
    harness.release_background.set()
    assert harness.background_done.wait(timeout(5))
    assert f"background from {framework}" in harness.events
