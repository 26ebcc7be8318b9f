"""Small raw ASGI apps shared by the tests."""

from __future__ import annotations

import json
from typing import Any

from asgisock.types import Receive, Send


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        body += bytes(message["body"])
        if not message.get("more_body"):
            return body


async def respond(send: Send, status: int = 200, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


async def stream_chunks(send: Send, chunk: bytes, count: int, sent: list[int]) -> None:
    """A response of ``count`` copies of ``chunk`` in as many ``more_body`` messages; ``sent`` gets an
    entry as each ``send()`` returns, so a test sees how far the app got."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for _ in range(count):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        sent.append(1)
    await send({"type": "http.response.body", "body": b""})


async def hello(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await respond(send, 200, b"Hello, world!", [(b"content-type", b"text/plain")])


async def echo_body(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    body = await read_body(receive)
    await respond(send, 200, body)


async def echo_scope(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    shown = {k: v for k, v in scope.items() if k not in ("headers", "raw_path", "query_string", "state")}
    shown["headers"] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
    shown["raw_path"] = scope["raw_path"].decode("latin-1")
    shown["query_string"] = scope["query_string"].decode("latin-1")
    shown["state"] = sorted(scope.get("state", {}))
    await respond(send, 200, json.dumps(shown).encode(), [(b"content-type", b"application/json")])
