"""WebSocket connections, after the HTTP/1.1 upgrade."""

from __future__ import annotations

from typing import TYPE_CHECKING

from asgisock.http11.events import Request

if TYPE_CHECKING:
    from asgisock.transport.http import HTTPProtocol


def upgrade_to_websocket(protocol: HTTPProtocol, request: Request) -> bool:
    """Take over the connection for a WebSocket handshake; False serves the request as HTTP."""
    return False
