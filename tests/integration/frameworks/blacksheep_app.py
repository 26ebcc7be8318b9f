"""The routes of ``tests/integration/frameworks`` in BlackSheep.

BlackSheep has no background tasks, so it does not serve ``/jobs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from blacksheep import Application, Cookie, Request, Response, WebSocket, json
from blacksheep.contents import FormPart, StreamedContent
from blacksheep.messages import get_absolute_url_to_path, get_request_absolute_url
from blacksheep.server.bindings import FromCookie, FromHeader, FromJSON
from blacksheep.server.responses import file as file_response
from blacksheep.server.websocket import WebSocketDisconnectError

from tests.integration.frameworks import (
    CLOSE_CODE,
    CLOSE_REASON,
    STATE,
    SUBPROTOCOL,
    Teapot,
    echo_reply,
    endless,
    event_stream,
    item,
    numbered_chunks,
    payload,
    say,
    uploaded,
)

app = Application()
get, post = app.router.get, app.router.post


@dataclass
class Item:
    name: str
    price: float
    tags: list[str] = field(default_factory=list)


class XToken(FromHeader[str]):
    name = "X-Token"


class SessionCookie(FromCookie[str]):
    name = "session"


async def startup(application: Application) -> None:
    say("lifespan startup")
    application.services.register(dict, instance={"started": STATE["started"]})


async def shutdown(application: Application) -> None:
    say("lifespan shutdown")


app.on_start += startup
app.on_stop += shutdown


@get("/items/{int:item_id}")
async def get_item(item_id: int, q: str | None = None, limit: int = 10) -> Response:
    return json(item(item_id, q, limit))


@post("/items")
async def create_item(body: FromJSON[Item]) -> Response:
    value = body.value
    return json({"name": value.name, "price": float(value.price), "tags": value.tags, "id": 1},
                status=201)


@get("/headers")
async def headers(token: XToken | None = None, session: SessionCookie | None = None) -> Response:
    shown = token.value if token else None
    response = json({"token": shown, "session": session.value if session else None})
    response.add_header(b"x-echo", (shown or "").encode())
    response.set_cookie(Cookie("seen", "yes", http_only=True))
    return response


@get("/stream")
async def stream() -> Response:
    return Response(200, content=StreamedContent(b"text/plain", numbered_chunks))


@get("/events")
async def events() -> Response:
    return Response(200, content=StreamedContent(b"text/event-stream", event_stream))


@get("/endless")
async def endless_events() -> Response:
    return Response(200, content=StreamedContent(b"text/event-stream", endless))


@post("/upload")
async def upload(request: Request) -> Response:
    form = await request.form()
    assert form is not None
    part, note = form["file"][0], form["note"]
    assert isinstance(part, FormPart) and part.file_name is not None and isinstance(note, str)
    return json(uploaded(part.file_name.decode(), part.data, note))


@get("/file")
async def file() -> Response:
    return file_response(str(payload()), "application/octet-stream")


@get("/state")
async def state(request: Request) -> Response:
    return json(app.services.resolve(dict))


@get("/whoami")
async def who(request: Request) -> Response:
    url = get_request_absolute_url(request).value.decode()  # BlackSheep's has no query
    query = request.scope["query_string"].decode()
    assert request.scope["client"] is not None
    return json({"client": list(request.scope["client"]), "url": f"{url}?{query}" if query else url,
                 "root_path": request.scope["root_path"],
                 "item_url": get_absolute_url_to_path(request, "/items/3").value.decode()})


@get("/teapot")
async def teapot() -> Response:
    raise Teapot


@get("/crash")
async def crash() -> Response:
    raise RuntimeError("unhandled in the route")


async def on_teapot(application: Any, request: Request, exc: Teapot) -> Response:
    return json({"error": "teapot"}, status=500)


app.exceptions_handlers[Teapot] = on_teapot


@app.router.ws("/ws")
async def ws(websocket: WebSocket) -> None:
    offered: list[str] = websocket.scope["subprotocols"]  # type: ignore[typeddict-item]
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    try:
        while True:
            message = await websocket.receive()
            text, data = message.get("text"), message.get("bytes")
            assert not isinstance(data, str)
            action, reply = echo_reply(text, data)
            if action == "close":
                await websocket.close(CLOSE_CODE, CLOSE_REASON)
                return
            if isinstance(reply, str):
                await websocket.send_text(reply)
            else:
                await websocket.send_bytes(reply)
    except WebSocketDisconnectError as left:
        say(f"client left: {left.code}")
