"""The raw ASGI 3 applications every server runs in the benchmarks.

They import nothing from asgisock and use no framework, so that the same file runs under
uvicorn, granian and hypercorn and so that what is measured is the server: each app does the
least that its scenario needs. Every app answers the lifespan protocol, because some servers
log an error (and spend time on it) when an app raises on a lifespan scope.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, Final

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELLO: Final = b"Hello, world!"  # 13 bytes
PLAIN_START: Final = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}
PLAIN_BODY: Final = {"type": "http.response.body", "body": HELLO}

CHUNK: Final = b"x" * 65536
CHUNKS: Final = 16  # 16 x 64 KiB = 1 MiB, sent as a chunked response
STREAM_START: Final = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/octet-stream")],
}
STREAM_CHUNK: Final = {"type": "http.response.body", "body": CHUNK, "more_body": True}
STREAM_END: Final = {"type": "http.response.body", "body": b""}


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def plaintext(scope: Scope, receive: Receive, send: Send) -> None:
    """Scenarios 1 and 2: 13 bytes, with a Content-Length."""
    if scope["type"] == "http":
        await send(PLAIN_START)
        await send(PLAIN_BODY)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)


async def upload(scope: Scope, receive: Receive, send: Send) -> None:
    """Scenario 3a: read the whole request body, then answer with 13 bytes."""
    if scope["type"] == "http":
        more_body = True
        while more_body:
            message = await receive()
            more_body = message.get("more_body", False)
        await send(PLAIN_START)
        await send(PLAIN_BODY)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)


async def stream(scope: Scope, receive: Receive, send: Send) -> None:
    """Scenario 3b: 1 MiB as 16 chunks of 64 KiB, without Content-Length (chunked)."""
    if scope["type"] == "http":
        await send(STREAM_START)
        for _ in range(CHUNKS):
            await send(STREAM_CHUNK)
        await send(STREAM_END)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)


def bench_file() -> str:
    """The 1 MiB file the ``file`` app serves, written once with the same bytes as ``stream``
    sends (every server process imports this module, so it is replaced whole, never half written)."""
    path = Path(tempfile.gettempdir()) / "asgisock-bench-1mib.bin"
    if not path.exists() or path.stat().st_size != CHUNK_SIZE * CHUNKS:
        partial = path.with_name(f"{path.name}.{os.getpid()}")
        partial.write_bytes(CHUNK * CHUNKS)
        os.replace(partial, path)
    return str(path)


CHUNK_SIZE: Final = len(CHUNK)
FILE: Final = bench_file()
FILE_START: Final = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/octet-stream"),
                (b"content-length", str(CHUNK_SIZE * CHUNKS).encode())],
}
FILE_PATHSEND: Final = {"type": "http.response.pathsend", "path": FILE}


async def file(scope: Scope, receive: Receive, send: Send) -> None:
    """Scenario 3c: a 1 MiB file with its Content-Length. Sent with ``http.response.pathsend``
    where the server offers it, else read in 64 KiB pieces, each sent as a body message, as
    Starlette's FileResponse does (but read in the loop, without its worker thread: the
    cheapest way there is without the extension)."""
    if scope["type"] == "http":
        await send(FILE_START)
        if "http.response.pathsend" in scope.get("extensions", {}):
            await send(FILE_PATHSEND)
            return
        with open(FILE, "rb") as handle:
            while piece := handle.read(CHUNK_SIZE):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send(STREAM_END)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Scenario 4: send every WebSocket message back as it came."""
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            text = message.get("text")
            if text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)
    else:
        await plaintext(scope, receive, send)


SUBSCRIBERS: Final[dict[int, Send]] = {}


async def broadcast(scope: Scope, receive: Receive, send: Send) -> None:
    """Scenario 5: every message one connection sends goes to every open connection.

    The task of the connection that received the message does the whole fan-out, one
    ``await send()`` per subscriber, as a chat room or a pub/sub bridge written without
    framework help would.
    """
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        key = id(send)
        SUBSCRIBERS[key] = send
        try:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    return
                text = message.get("text")
                out = (
                    {"type": "websocket.send", "text": text}
                    if text is not None
                    else {"type": "websocket.send", "bytes": message["bytes"]}
                )
                for subscriber in list(SUBSCRIBERS.values()):
                    with contextlib.suppress(Exception):  # a subscriber that left meanwhile
                        await subscriber(out)
        finally:
            SUBSCRIBERS.pop(key, None)
    else:
        await plaintext(scope, receive, send)


async def idle(scope: Scope, receive: Receive, send: Send) -> None:
    """Scenario 6: accept a WebSocket and wait for its end; answer HTTP like ``plaintext``."""
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (await receive())["type"] == "websocket.receive":
            pass
    else:
        await plaintext(scope, receive, send)


async def pid(scope: Scope, receive: Receive, send: Send) -> None:
    """The kill -9 measurement of bench/workers.py: which worker process answered."""
    if scope["type"] == "http":
        import os

        body = str(os.getpid()).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)
