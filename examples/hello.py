"""A raw ASGI app: a hello page over HTTP and an echo chat over WebSocket.

Serve it with ``asgisock examples.hello:app`` (or ``asgisock hello:app --app-dir examples``).
"""

from __future__ import annotations

from typing import Any

PAGE = b"""<!doctype html>
<title>asgisock</title>
<h1>Hello from asgisock</h1>
<p>Open the browser console and try:
<pre>ws = new WebSocket(`ws://${location.host}/chat`); ws.onmessage = e => console.log(e.data); ws.onopen = () => ws.send("hi")</pre>
"""


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html; charset=utf-8")]})
        await send({"type": "http.response.body", "body": PAGE})
    elif scope["type"] == "websocket":
        await chat(receive, send)


async def chat(receive: Any, send: Any) -> None:
    """Echo every message back, prefixed, until the client leaves."""
    message = await receive()
    assert message["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": "echo: " + message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
