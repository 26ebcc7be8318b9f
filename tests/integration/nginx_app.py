"""The app served behind a real nginx in ``test_nginx.py``, by an ``asgisock`` process.

It shows the test what reached it (the scope's ``client`` and ``scheme``, the size and digest
of an upload), streams a response one chunk per ``POST /next``, so the test sees each chunk
arrive before the next is made, and reports on stdout what only the app can see: how a
WebSocket client left.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from asgisock.types import Message, Receive, Send

released: asyncio.Queue[None] | None = None
"""One item per ``POST /next``: the stream in ``/stream`` sends one more chunk for each."""


def say(text: str) -> None:
    print(text, flush=True)


async def respond(send: Send, body: bytes, content_type: bytes = b"application/json") -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})


async def lifespan(receive: Receive, send: Send) -> None:
    global released
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            released = asyncio.Queue()
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


async def upload(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """The size and SHA-256 of the request body, read as it comes, and how it was framed."""
    digest, size, messages = hashlib.sha256(), 0, 0
    while True:
        message = await receive()
        body = message.get("body", b"")
        digest.update(body)
        size, messages = size + len(body), messages + 1
        if not message.get("more_body"):
            break
    framing = {name.decode(): value.decode() for name, value in scope["headers"]
               if name in (b"content-length", b"transfer-encoding")}
    await respond(send, json.dumps({"size": size, "sha256": digest.hexdigest(),
                                    "messages": messages, "framing": framing}).encode())


async def stream(scope: dict[str, Any], send: Send) -> None:
    """``chunks`` chunks (from the query), the first at once and each other after a ``/next``."""
    assert released is not None
    count = int(scope["query_string"].decode().removeprefix("chunks=") or 3)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    for index in range(count):
        if index:
            await released.get()
        await send({"type": "http.response.body", "body": b"chunk %d\n" % index, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def request_info(scope: dict[str, Any]) -> bytes:
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
    return json.dumps({"client": scope["client"], "scheme": scope["scheme"], "path": scope["path"],
                       "query": scope["query_string"].decode(), "headers": headers}).encode()


async def http(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    path = scope["path"]
    if path == "/upload":
        await upload(scope, receive, send)
    elif path == "/stream":
        await stream(scope, send)
    elif path == "/next":
        assert released is not None
        released.put_nowait(None)
        await respond(send, b"{}")
    else:
        await respond(send, request_info(scope))


async def websocket(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Echo, after telling the client what reached the app; ``close`` asks the server to close."""
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept", "subprotocol": (scope["subprotocols"] or [None])[0]})
    await send({"type": "websocket.send", "text": request_info(scope).decode()})
    while True:
        message: Message = await receive()
        if message["type"] == "websocket.disconnect":
            say(f"client left: {message['code']} {message.get('reason', '')}")
            return
        if message.get("text") == "close":
            await send({"type": "websocket.close", "code": 4001, "reason": "asked to close"})
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "http":
        await http(scope, receive, send)
    else:
        await websocket(scope, receive, send)
