"""The chat's routes: the page, its static files, ``/ws`` for the rooms and ``/health``.

Nothing here depends on which worker a request lands on: every URL the page uses is relative
(so it works under a path prefix behind a proxy), and with ``REDIS_URL`` set every piece of
shared state is in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from .brokers import MemoryBroker, RedisBroker
from .hub import POLICY_VIOLATION, Broker, Close, Connection, Hub, Unavailable

STATIC: Final = Path(__file__).parent / "static"
NAME: Final = re.compile(r"[^\x00-\x1f\x7f]{1,24}")
ROOM: Final = re.compile(r"[\w-]{1,32}")


def create_app(redis_url: str | None = None) -> Starlette:
    """The chat, with rooms in Redis when ``redis_url`` is given, else in this process."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        broker: Broker = RedisBroker(redis_url) if redis_url else MemoryBroker()
        app.state.hub = hub = Hub(broker)
        await hub.start()
        try:
            yield
        finally:
            await hub.close()

    return Starlette(
        routes=[
            Route("/", page),
            Route("/health", health),
            WebSocketRoute("/ws", chat),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=lifespan,
    )


async def page(request: Request) -> FileResponse:
    return FileResponse(STATIC / "index.html")


async def health(request: Request) -> JSONResponse:
    """For a load balancer: 503 while this worker cannot reach its broker."""
    hub: Hub = request.app.state.hub
    try:
        await hub.broker.check()
    except Unavailable as error:
        return JSONResponse({"broker": hub.broker.kind, "error": str(error)}, status_code=503)
    return JSONResponse({"broker": hub.broker.kind, "connections": hub.count()})


async def chat(websocket: WebSocket) -> None:
    """One person in one room (``/ws?room=lobby&name=Ann``) until either side closes.

    Refusals are sent as close frames after accepting: a browser shows the page nothing of a
    refused handshake but code 1006, while a close frame's code and reason reach ``onclose``.
    """
    hub: Hub = websocket.app.state.hub
    await websocket.accept()
    name = websocket.query_params.get("name", "").strip()
    room = websocket.query_params.get("room", "").strip()
    if not NAME.fullmatch(name) or not ROOM.fullmatch(room):
        reason = "pick a name of 1-24 characters and a room of 1-32 letters, digits, - or _"
        await websocket.close(POLICY_VIOLATION, reason)
        return
    connection = Connection(name, room)
    connection.push(json.dumps({"type": "welcome", "id": connection.id, "name": name,
                                "room": room, "broker": hub.broker.kind}))
    writer = asyncio.create_task(send_outbox(connection, websocket))
    try:
        await hub.join(connection)
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            await hub.receive(connection, message.get("text"))
    finally:
        connection.closing = True
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        await hub.leave(connection)


async def send_outbox(connection: Connection, websocket: WebSocket) -> None:
    """The only writer of the socket: events in order, then the close if one is queued."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            item = await connection.outbox.get()
            if isinstance(item, Close):
                await websocket.close(item.code, item.reason)
                return
            await websocket.send_text(item)


app = create_app(os.environ.get("REDIS_URL"))
