"""ASGI 3 message and scope types (https://asgi.readthedocs.io/en/latest/specs/).

The server builds scopes and messages as plain dicts for speed; these ``TypedDict``s
describe their shape for the type checker and for readers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal, NotRequired, TypedDict

Headers = list[tuple[bytes, bytes]]
"""Header names lower-cased; order and duplicates kept (ASGI spec, "HTTP" scope)."""


class ASGIVersions(TypedDict):
    version: str
    spec_version: str


class _RequestScope(TypedDict):
    """What the ``http`` and ``websocket`` scopes share: the request head they start from."""

    asgi: ASGIVersions
    http_version: str
    scheme: str
    path: str
    raw_path: bytes
    query_string: bytes
    root_path: str
    headers: Headers
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    state: NotRequired[dict[str, Any]]
    extensions: NotRequired[dict[str, dict[object, object]]]


class HTTPScope(_RequestScope):
    type: Literal["http"]
    method: str


class WebSocketScope(_RequestScope):
    type: Literal["websocket"]
    subprotocols: list[str]


class LifespanScope(TypedDict):
    type: Literal["lifespan"]
    asgi: ASGIVersions
    state: NotRequired[dict[str, Any]]


Scope = HTTPScope | WebSocketScope | LifespanScope
Message = dict[str, Any]
"""Messages are checked field by field when they arrive from the app, so they stay loosely typed."""

Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Any, Receive, Send], Awaitable[None]]
"""An ASGI 3 application: ``await app(scope, receive, send)``."""

HeaderPairs = Iterable[tuple[bytes, bytes]]
