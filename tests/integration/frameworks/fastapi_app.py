"""The routes of ``tests/integration/frameworks`` in FastAPI, bodies checked by pydantic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import BackgroundTasks, Cookie, FastAPI, Form, Header, Request, UploadFile, WebSocket
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.responses import Response

from tests.integration.frameworks import (
    STATE,
    Teapot,
    background_job,
    endless,
    event_stream,
    item,
    numbered_chunks,
    payload,
    released,
    say,
    uploaded,
)
from tests.integration.frameworks.starlette_app import echo, whoami, with_echo


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


class StoredItem(Item):
    id: int


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    say("lifespan startup")
    yield {"started": STATE["started"]}
    say("lifespan shutdown")


app = FastAPI(lifespan=lifespan)


@app.get("/items/{item_id}", name="item")
async def get_item(item_id: int, q: str | None = None, limit: int = 10) -> dict[str, Any]:
    return item(item_id, q, limit)


@app.post("/items", status_code=201)
async def create_item(body: Item) -> StoredItem:
    return StoredItem(id=1, **body.model_dump())


@app.get("/headers")
async def headers(request: Request, x_token: Annotated[str | None, Header()] = None,
                  session: Annotated[str | None, Cookie()] = None) -> Response:
    return with_echo(request, JSONResponse({"token": x_token, "session": session}))


@app.get("/stream")
async def stream() -> StreamingResponse:
    return StreamingResponse(numbered_chunks(), media_type="text/plain")


@app.get("/events")
async def events() -> StreamingResponse:
    return StreamingResponse(event_stream(), media_type="text/event-stream")


@app.get("/endless")
async def endless_events() -> StreamingResponse:
    return StreamingResponse(endless(), media_type="text/event-stream")


@app.post("/upload")
async def upload(file: UploadFile, note: Annotated[str, Form()]) -> dict[str, Any]:
    return uploaded(file.filename, await file.read(), note)


@app.get("/file")
async def file() -> FileResponse:
    return FileResponse(payload())


@app.get("/state")
async def state(request: Request) -> dict[str, Any]:
    return {"started": request.state.started}


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
    background.add_task(background_job, "fastapi")
    return {"status": "queued"}


@app.post("/release")
async def release() -> dict[str, str]:
    released().set()
    return {}


@app.exception_handler(Teapot)
async def on_teapot(request: Request, exc: Teapot) -> JSONResponse:
    return JSONResponse({"error": "teapot"}, status_code=500)


@app.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    await echo(websocket)
