"""The routes of ``tests/integration/frameworks`` in Starlette."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.integration.frameworks import (
    CLOSE_CODE,
    CLOSE_REASON,
    STATE,
    SUBPROTOCOL,
    Teapot,
    background_job,
    echo_reply,
    endless,
    event_stream,
    item,
    numbered_chunks,
    payload,
    released,
    say,
    stored,
    uploaded,
)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    say("lifespan startup")
    yield {"started": STATE["started"]}
    say("lifespan shutdown")


def whoami(request: Request) -> dict[str, Any]:
    """What Starlette (and FastAPI, on top of it) makes of the scope."""
    assert request.client is not None
    return {"client": [request.client.host, request.client.port], "url": str(request.url),
            "root_path": request.scope["root_path"],
            "item_url": str(request.url_for("item", item_id=3))}


def with_echo(request: Request, response: Response) -> Response:
    token = request.headers.get("x-token")
    response.headers["x-echo"] = token or ""
    response.set_cookie("seen", "yes", httponly=True)
    return response


def shown_headers(request: Request) -> dict[str, Any]:
    return {"token": request.headers.get("x-token"), "session": request.cookies.get("session")}


async def echo(websocket: WebSocket) -> None:
    """The ``/ws`` route, shared with FastAPI."""
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in websocket.scope["subprotocols"]
                           else None)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                say(f"client left: {message['code']}")
                return
            action, reply = echo_reply(message.get("text"), message.get("bytes"))
            if action == "close":
                await websocket.close(CLOSE_CODE, CLOSE_REASON)
                return
            if isinstance(reply, str):
                await websocket.send_text(reply)
            else:
                await websocket.send_bytes(reply)
    except WebSocketDisconnect as left:
        say(f"client left: {left.code}")


async def get_item(request: Request) -> JSONResponse:
    params = request.query_params
    return JSONResponse(item(request.path_params["item_id"], params.get("q"),
                             int(params.get("limit", 10))))


async def create_item(request: Request) -> JSONResponse:
    try:
        return JSONResponse(stored(await request.json()), status_code=201)
    except ValueError as error:
        return JSONResponse({"error": str(error)}, status_code=422)


async def headers(request: Request) -> Response:
    return with_echo(request, JSONResponse(shown_headers(request)))


async def stream(request: Request) -> StreamingResponse:
    return StreamingResponse(numbered_chunks(), media_type="text/plain")


async def events(request: Request) -> StreamingResponse:
    return StreamingResponse(event_stream(), media_type="text/event-stream")


async def endless_events(request: Request) -> StreamingResponse:
    return StreamingResponse(endless(), media_type="text/event-stream")


async def upload(request: Request) -> JSONResponse:
    async with request.form() as form:
        file, note = form["file"], form.get("note")
        assert not isinstance(file, str) and isinstance(note, str)
        return JSONResponse(uploaded(file.filename, await file.read(), note))


async def file(request: Request) -> FileResponse:
    return FileResponse(payload())


async def state(request: Request) -> JSONResponse:
    return JSONResponse({"started": request.state.started})


async def who(request: Request) -> JSONResponse:
    return JSONResponse(whoami(request))


async def teapot(request: Request) -> Response:
    raise Teapot


async def crash(request: Request) -> Response:
    raise RuntimeError("unhandled in the route")


async def job(request: Request) -> JSONResponse:
    return JSONResponse({"status": "queued"}, status_code=202,
                        background=BackgroundTask(background_job, "starlette"))


async def release(request: Request) -> JSONResponse:
    released().set()
    return JSONResponse({})


async def on_teapot(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "teapot"}, status_code=500)


app = Starlette(
    routes=[
        Route("/items/{item_id:int}", get_item, name="item"),
        Route("/items", create_item, methods=["POST"]),
        Route("/headers", headers),
        Route("/stream", stream),
        Route("/events", events),
        Route("/endless", endless_events),
        Route("/upload", upload, methods=["POST"]),
        Route("/file", file),
        Route("/state", state),
        Route("/whoami", who),
        Route("/teapot", teapot),
        Route("/crash", crash),
        Route("/jobs", job, methods=["POST"]),
        Route("/release", release, methods=["POST"]),
        WebSocketRoute("/ws", echo),
    ],
    lifespan=lifespan,
    exception_handlers={Teapot: on_teapot},
)
