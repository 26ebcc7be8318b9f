"""Build ``http`` and ``websocket`` scopes from a parsed request head."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import unquote_to_bytes

from asgisock.http11.events import Request
from asgisock.http11.target import split_target

__all__ = ["ASGI_VERSIONS", "decode_path", "http_scope", "split_target", "websocket_scope"]

_PERCENT: Final = ord("%")
"""Looked for by value: ``b"%" in path`` first tries ``b"%"`` as an integer, which costs more."""

ASGI_VERSIONS: Final = {"version": "3.0", "spec_version": "2.5"}
"""HTTP/WebSocket spec 2.5: ``reason`` in ``websocket.disconnect``, ``send()`` after close raises
``OSError``, Denial Response, ``state``; all honoured, so it is advertised."""


_EXTENSIONS: Final[dict[str, dict[str, object]]] = {
    "http.response.zerocopysend": {},
    "http.response.pathsend": {},
    "http.response.trailers": {},
}
"""The response extensions :mod:`asgisock.asgi.http_cycle` implements for every HTTP request
(over TLS a file is copied through the process, but sent all the same)."""
_HTTP11_EXTENSIONS: Final = {**_EXTENSIONS, "http.response.early_hint": {}}
"""Early hints are 1xx responses, which an HTTP/1.0 client never gets (RFC 9110 §15.2)."""


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
    method, target, http_version, headers, _, _, _, raw_path, query, _ = request
    if raw_path is None:
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
        # A copy per request (the transport adds "tls"); the empty dicts inside are shared.
        "extensions": (_HTTP11_EXTENSIONS if http_version == "1.1" else _EXTENSIONS).copy(),
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
