"""Build ``http`` and ``websocket`` scopes from a parsed request head."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import unquote_to_bytes

import httptools

from asgisock.http11.events import Request

# Single bytes are looked for by value: ``b"?" in target`` first tries ``b"?"`` as an integer and
# raises (and clears) a TypeError inside, several times the cost of the search itself.
_SLASH: Final = ord("/")
_HASH: Final = ord("#")
_QUESTION: Final = ord("?")
_PERCENT: Final = ord("%")

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
    if _PERCENT not in raw_path and raw_path.isascii():
        return raw_path.decode("ascii")
    return unquote_to_bytes(raw_path).decode("utf-8", "replace")


_PATHS: dict[bytes, str] = {}
"""Decoded paths a server sees over and over (its routes); bounded, see :func:`_path`."""
_MAX_PATHS: Final = 1024
_MAX_CACHED_PATH: Final = 256
_METHODS: Final = {method: method.decode("ascii") for method in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE",
                                                                   b"OPTIONS", b"PATCH", b"TRACE")}


def _path(raw_path: bytes) -> str:
    path = _PATHS.get(raw_path)
    if path is None:
        path = decode_path(raw_path)
        if len(raw_path) <= _MAX_CACHED_PATH and len(_PATHS) < _MAX_PATHS:
            _PATHS[raw_path] = path
    return path


def http_scope(
    request: Request,
    *,
    scheme: str,
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
    root_path: str,
    state: dict[str, Any],
) -> dict[str, Any]:
    # One unpacking instead of an attribute lookup per field: a named tuple's fields are slower
    # to read one by one than a slotted class's.
    method, target, http_version, headers, _, _, _ = request
    if target[0] == _SLASH and _HASH not in target:  # origin-form "/...": the common case, inlined
        if _QUESTION in target:
            raw_path, _, query = target.partition(b"?")
        else:
            raw_path, query = target, b""
    else:
        raw_path, query = split_target(target)
    path = _PATHS.get(raw_path) or _path(raw_path)
    if root_path:
        # The path an app sees includes its mount point (ASGI "root_path"; Starlette relies on it).
        path = root_path + path
        raw_path = root_path.encode("utf-8") + raw_path
    return {
        "type": "http",
        "asgi": ASGI_VERSIONS,
        "http_version": http_version,
        "server": server,
        "client": client,
        "scheme": scheme,
        "method": _METHODS.get(method) or method.decode("ascii"),
        "root_path": root_path,
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "headers": headers,
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
