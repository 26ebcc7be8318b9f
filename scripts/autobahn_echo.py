"""The application the Autobahn TestSuite talks to: a WebSocket echo server in raw ASGI 3.

The fuzzing client's cases send messages and expect each one back unchanged, so the app
accepts every WebSocket and returns every ``websocket.receive`` as a ``websocket.send`` of
the same kind (text stays text, bytes stay bytes). Everything the suite judges beyond that —
framing, UTF-8 validation, fragmentation, pings, the close handshake — is the server's job,
which is why the app uses no framework and does nothing clever.

It imports nothing from asgisock so that the same file runs under any ASGI server, for a
side-by-side comparison (``scripts/autobahn.py --server uvicorn``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

NOT_FOUND_BODY = b"Not Found: this server only echoes WebSocket messages.\n"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Dispatch on the scope type; every type the ASGI spec defines is answered."""
    kind = scope["type"]
    if kind == "websocket":
        await echo(receive, send)
    elif kind == "lifespan":
        await lifespan(receive, send)
    elif kind == "http":
        await not_found(send)
    else:
        raise RuntimeError(f"unsupported ASGI scope type {kind!r}")


async def echo(receive: Receive, send: Send) -> None:
    """Accept, then send each message back as it came until the client disconnects."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        # ASGI: "Exactly one of bytes or text must be non-None." Checking text first keeps
        # an empty text message a text message.
        text = message.get("text")
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def lifespan(receive: Receive, send: Send) -> None:
    """Answer startup and shutdown; the app holds no resources, so both always succeed."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def not_found(send: Send) -> None:
    """Plain HTTP requests get a 404: the suite only ever opens WebSockets."""
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(NOT_FOUND_BODY)).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": NOT_FOUND_BODY})
