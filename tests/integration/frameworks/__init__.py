"""One small app per framework, each serving the same routes, for ``test_frameworks.py``.

Every module here (``fastapi_app``, ``starlette_app``, ``litestar_app``, ``quart_app``,
``django_app``, ``blacksheep_app``) has an ``app`` that ``asgisock`` serves in a subprocess:

- ``GET /items/{item_id}?q=&limit=``: path and query parameters, ``{"item_id", "q", "limit"}``
  (``limit`` 10 by default); a path that is not a number is refused (404 or 422).
- ``POST /items``: a JSON ``{"name", "price", "tags"}``, answered 201 with ``"id": 1`` added.
- ``GET /headers``: the ``X-Token`` header and the ``session`` cookie, sent back in the body,
  as an ``X-Echo`` header and a ``seen=yes`` cookie.
- ``GET /stream``: ``CHUNKS`` as a streamed response, one body message each.
- ``GET /events``: ``EVENTS`` as server-sent events; ``GET /endless``: an event stream that
  only the client's leaving ends (the app says ``endless stream ended``).
- ``POST /upload``: a multipart form with a ``file`` and a ``note``, answered with the file's
  name, size and SHA-256 and the note.
- ``GET /file``: the file named by ``$FRAMEWORK_PAYLOAD``.
- ``GET /state``: what the lifespan startup left (``{"started": "lifespan"}``), where the
  framework has a lifespan; the app says ``lifespan startup`` and ``lifespan shutdown``.
- ``GET /whoami``: the client and the URL as the framework rebuilds them, the ``root_path``,
  and the URL it makes for item 3.
- ``GET /teapot``: a ``Teapot`` exception, which the app's own handler answers with 500 and
  ``{"error": "teapot"}``; ``GET /crash``: an exception nothing handles.
- ``POST /jobs``: 202, and a background task that waits for ``POST /release`` and then says
  ``background from NAME`` (where the framework has background tasks).
- ``/ws``: a WebSocket that accepts the ``chat.v2`` subprotocol, echoes text as text and bytes
  as bytes, closes with ``CLOSE_CODE`` and ``CLOSE_REASON`` when sent ``close``, and says
  ``client left: CODE`` when the client closes (``client left`` where the framework does not
  tell the code).

The apps print what the test checks from outside (``say``) to stdout.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

CHUNKS = [f"chunk {i}\n".encode() for i in range(5)]
EVENTS = [f"event {i}" for i in range(3)]
SUBPROTOCOL = "chat.v2"
CLOSE_CODE = 4001
CLOSE_REASON = "asked to close"
STATE = {"started": "lifespan"}


class Teapot(Exception):
    """Raised by ``/teapot``; each app's own exception handler answers it."""


def say(text: str) -> None:
    print(text, flush=True)


def payload() -> Path:
    return Path(os.environ["FRAMEWORK_PAYLOAD"])


def item(item_id: int, q: str | None, limit: int) -> dict[str, Any]:
    return {"item_id": item_id, "q": q, "limit": limit}


def stored(body: dict[str, Any]) -> dict[str, Any]:
    """The item as created: what was sent, checked, with its id."""
    if not (isinstance(body.get("name"), str) and isinstance(body.get("price"), int | float)):
        raise ValueError(f"not an item: {body!r}")
    return {"name": body["name"], "price": float(body["price"]), "tags": list(body.get("tags", [])),
            "id": 1}


def uploaded(filename: str | None, data: bytes, note: str | None) -> dict[str, Any]:
    return {"filename": filename, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "note": note}


async def numbered_chunks() -> AsyncIterator[bytes]:
    for chunk in CHUNKS:
        yield chunk
        await asyncio.sleep(0)


async def event_stream() -> AsyncIterator[bytes]:
    for event in EVENTS:
        yield f"data: {event}\n\n".encode()
        await asyncio.sleep(0)


async def endless() -> AsyncIterator[bytes]:
    """An event stream that only the client's leaving ends."""
    try:
        while True:
            yield b"data: tick\n\n"
            await asyncio.sleep(0.01)
    finally:
        say("endless stream ended")


_released: list[asyncio.Event] = []


def released() -> asyncio.Event:
    """Set by ``POST /release``: made in the serving loop the first time it is asked for."""
    if not _released:
        _released.append(asyncio.Event())
    return _released[0]


async def background_job(name: str) -> None:
    """Runs after the response; the test already has it when it lets this job end."""
    await released().wait()
    say(f"background from {name}")


def echo_reply(text: str | None, data: bytes | None) -> tuple[str, str | bytes]:
    """What ``/ws`` does with a message: ``("close", "")``, or ``("send", the echo)``."""
    if text == "close":
        return "close", ""
    if text is not None:
        return "send", text
    assert data is not None
    return "send", data
