"""The routes of ``tests/integration/frameworks`` in Litestar."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from litestar import Litestar, MediaType, Request, Response, WebSocket, get, post, websocket
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import Cookie, UploadFile
from litestar.enums import RequestEncodingType
from litestar.exceptions import WebSocketDisconnect
from litestar.params import Body, Parameter
from litestar.response import File, ServerSentEvent, Stream

from tests.integration.frameworks import (
    CLOSE_CODE,
    CLOSE_REASON,
    EVENTS,
    STATE,
    SUBPROTOCOL,
    Teapot,
    background_job,
    echo_reply,
    endless,
    item,
    numbered_chunks,
    payload,
    released,
    say,
    uploaded,
)


@dataclass
class Item:
    name: str
    price: float
    tags: list[str] = field(default_factory=list)


@dataclass
class StoredItem(Item):
    id: int = 0


@dataclass
class UploadForm:
    file: UploadFile
    note: str


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    say("lifespan startup")
    app.state.started = STATE["started"]
    yield
    say("lifespan shutdown")


@get("/items/{item_id:int}", name="item")
async def get_item(item_id: int, q: str | None = None, limit: int = 10) -> dict[str, Any]:
    return item(item_id, q, limit)


@post("/items", status_code=201)
async def create_item(data: Item) -> StoredItem:
    return StoredItem(name=data.name, price=data.price, tags=data.tags, id=1)


@get("/headers")
async def headers(token: Annotated[str | None, Parameter(header="x-token")] = None,
                  session: Annotated[str | None, Parameter(cookie="session")] = None,
                  ) -> Response[dict[str, Any]]:
    return Response({"token": token, "session": session}, headers={"x-echo": token or ""},
                    cookies=[Cookie(key="seen", value="yes", httponly=True)])


@get("/stream")
async def stream() -> Stream:
    return Stream(numbered_chunks(), media_type=MediaType.TEXT)


@get("/events")
async def events() -> ServerSentEvent:
    return ServerSentEvent(iter(EVENTS))


@get("/endless")
async def endless_events() -> Stream:
    return Stream(endless(), media_type="text/event-stream")


@post("/upload", status_code=200)
async def upload(data: Annotated[UploadForm, Body(media_type=RequestEncodingType.MULTI_PART)],
                 ) -> dict[str, Any]:
    return uploaded(data.file.filename, await data.file.read(), data.note)


@get("/file")
async def file() -> File:
    return File(payload())


@get("/state")
async def state(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return {"started": request.app.state.started}


@get("/whoami")
async def who(request: Request[Any, Any, Any]) -> dict[str, Any]:
    assert request.client is not None
    return {"client": [request.client.host, request.client.port], "url": str(request.url),
            "root_path": request.scope["root_path"],
            "item_url": request.url_for("item", item_id=3)}


@get("/teapot")
async def teapot() -> None:
    raise Teapot


@get("/crash")
async def crash() -> None:
    raise RuntimeError("unhandled in the route")


@post("/jobs", status_code=202)
async def job() -> Response[dict[str, str]]:
    return Response({"status": "queued"}, status_code=202,
                    background=BackgroundTask(background_job, "litestar"))


@post("/release", status_code=200)
async def release() -> dict[str, str]:
    released().set()
    return {}


@websocket("/ws")
async def ws(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept(subprotocols=SUBPROTOCOL if SUBPROTOCOL in socket.scope["subprotocols"]
                        else None)
    try:
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                say(f"client left: {message['code']}")
                return
            text, data = message.get("text"), message.get("bytes")
            assert isinstance(text, str | None) and isinstance(data, bytes | None)
            action, reply = echo_reply(text, data)
            if action == "close":
                await socket.close(CLOSE_CODE, CLOSE_REASON)
                return
            await socket.send_data(reply, mode="text" if isinstance(reply, str) else "binary")
    except WebSocketDisconnect as left:
        say(f"client left: {left.code}")


def on_teapot(request: Request[Any, Any, Any], exc: Teapot) -> Response[dict[str, str]]:
    return Response({"error": "teapot"}, status_code=500)


app = Litestar(
    route_handlers=[get_item, create_item, headers, stream, events, endless_events, upload, file,
                    state, who, teapot, crash, job, release, ws],
    lifespan=[lifespan],
    exception_handlers={Teapot: on_teapot},
)
