"""The routes of ``tests/integration/frameworks`` in Quart."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Quart, Response, jsonify, request, send_file, url_for, websocket

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

app = Quart(__name__)


@app.before_serving
async def startup() -> None:
    say("lifespan startup")
    app.config["STARTED"] = STATE["started"]


@app.after_serving
async def shutdown() -> None:
    say("lifespan shutdown")


@app.get("/items/<int:item_id>")
async def get_item(item_id: int) -> dict[str, Any]:
    return item(item_id, request.args.get("q"), request.args.get("limit", 10, type=int))


@app.post("/items")
async def create_item() -> tuple[dict[str, Any], int]:
    try:
        return stored(await request.get_json()), 201
    except ValueError as error:
        return {"error": str(error)}, 422


@app.get("/headers")
async def headers() -> Response:
    token = request.headers.get("x-token")
    response = jsonify({"token": token, "session": request.cookies.get("session")})
    response.headers["x-echo"] = token or ""
    response.set_cookie("seen", "yes", httponly=True)
    return response


@app.get("/stream")
async def stream() -> Response:
    return Response(numbered_chunks(), mimetype="text/plain")


@app.get("/events")
async def events() -> Response:
    response = Response(event_stream(), mimetype="text/event-stream")
    response.timeout = None
    return response


@app.get("/endless")
async def endless_events() -> Response:
    response = Response(endless(), mimetype="text/event-stream")
    response.timeout = None  # Quart ends a streamed response after RESPONSE_TIMEOUT otherwise
    return response


@app.post("/upload")
async def upload() -> dict[str, Any]:
    files, form = await request.files, await request.form
    return uploaded(files["file"].filename, files["file"].read(), form.get("note"))


@app.get("/file")
async def file() -> Response:
    return await send_file(payload())


@app.get("/state")
async def state() -> dict[str, Any]:
    return {"started": app.config["STARTED"]}


@app.get("/whoami")
async def who() -> dict[str, Any]:
    assert request.scope["client"] is not None
    return {"client": list(request.scope["client"]), "url": request.url,
            "root_path": request.root_path, "item_url": url_for("get_item", item_id=3, _external=True)}


@app.get("/teapot")
async def teapot() -> str:
    raise Teapot


@app.get("/crash")
async def crash() -> str:
    raise RuntimeError("unhandled in the route")


@app.post("/jobs")
async def job() -> tuple[dict[str, str], int]:
    app.add_background_task(background_job, "quart")
    return {"status": "queued"}, 202


@app.post("/release")
async def release() -> dict[str, str]:
    released().set()
    return {}


@app.errorhandler(Teapot)
async def on_teapot(error: Teapot) -> tuple[dict[str, str], int]:
    return {"error": "teapot"}, 500


@app.websocket("/ws")
async def ws() -> None:
    """Quart cancels the route when the client leaves, and does not say with which code."""
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in websocket.requested_subprotocols
                           else None)
    try:
        while True:
            message = await websocket.receive()
            text, data = (message, None) if isinstance(message, str) else (None, message)
            action, reply = echo_reply(text, data)
            if action == "close":
                await websocket.close(CLOSE_CODE, CLOSE_REASON)
                return
            await websocket.send(reply)
    except asyncio.CancelledError:
        say("client left")
        raise
