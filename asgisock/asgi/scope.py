"""Build ``http`` and ``websocket`` scopes from a parsed request head."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import unquote_to_bytes

import httptools

from asgisock.http11.events import Request

ASGI_VERSIONS: Final = {"version": "3.0", "spec_version": "2.5"}
"""HTTP/WebSocket spec 2.5: ``reason`` in ``websocket.disconnect``, ``send()`` after close raises
``OSError``, Denial Response, ``state``; all honoured, so it is advertised."""


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """``raw_path`` and ``query_string`` of an origin-form or absolute-form target (RFC 9112 §3.2)."""
    if target[:1] != b"/" and target != b"*":
        parsed = httptools.parse_url(target)
        return parsed.path or b"/", parsed.query or b""
    if b"#" in target:  # never sent by a conforming client; dropped as a browser would
        target = target.partition(b"#")[0]
    path, _, query = target.partition(b"?")
    return path, query


def decode_path(raw_path: bytes) -> str:
    """Percent-decode, then decode UTF-8 (ASGI: "with percent-encoded sequences and UTF-8 byte
    sequences decoded into characters"); undecodable bytes become U+FFFD."""
    if b"%" not in raw_path and raw_path.isascii():
        return raw_path.decode("ascii")
    return unquote_to_bytes(raw_path).decode("utf-8", "replace")


def http_scope(
    request: Request,
    *,
    scheme: str,
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
    root_path: str,
    state: dict[str, Any],
) -> dict[str, Any]:
    target = request.target
    if target[0] == 0x2F and b"#" not in target:  # origin-form "/...": the common case, inlined
        mark = target.find(b"?")
        raw_path, query = (target, b"") if mark < 0 else (target[:mark], target[mark + 1 :])
    else:
        raw_path, query = split_target(target)
    path = raw_path.decode("ascii") if b"%" not in raw_path and raw_path.isascii() else decode_path(raw_path)
    if root_path:
        # The path an app sees includes its mount point (ASGI "root_path"; Starlette relies on it).
        path = root_path + path
        raw_path = root_path.encode("utf-8") + raw_path
    return {
        "type": "http",
        "asgi": ASGI_VERSIONS,
        "http_version": request.http_version,
        "server": server,
        "client": client,
        "scheme": scheme,
        "method": request.method.decode("ascii"),
        "root_path": root_path,
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "headers": request.headers,
        "state": state.copy(),
        "extensions": {},
    }


def websocket_scope(
    request: Request,
    *,
    scheme: str,
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
    root_path: str,
    state: dict[str, Any],
    subprotocols: list[str],
) -> dict[str, Any]:
    scope = http_scope(request, scheme=scheme, client=client, server=server, root_path=root_path, state=state)
    del scope["method"]
    scope["type"] = "websocket"
    scope["subprotocols"] = subprotocols
    scope["extensions"] = {"websocket.http.response": {}}
    return scope
