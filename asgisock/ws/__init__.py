"""The WebSocket protocol (RFC 6455, RFC 7692), server side, without I/O.

The transport feeds bytes to a WebSocketConnection and writes out what it
returns; nothing in this package does I/O or imports asyncio.
"""

from typing import TYPE_CHECKING, Any

from asgisock.ws.connection import (
    BytesMessage,
    Closed,
    ConnectionClosedError,
    Event,
    PingReceived,
    PongReceived,
    State,
    TextMessage,
    WebSocketConnection,
)
from asgisock.ws.deflate import DeflateSettings, PerMessageDeflate, negotiate
from asgisock.ws.frames import (
    CloseCode,
    Opcode,
    ProtocolError,
    build_frame,
    decode_close,
    encode_close,
    is_valid_close_code,
)
from asgisock.ws.handshake import (
    ExtensionOffer,
    Handshake,
    HandshakeError,
    accept_key,
    accept_response,
    is_upgrade_request,
    reject_response,
    response_headers,
    validate_handshake,
)

if TYPE_CHECKING:
    from asgisock.ws.mask import MASK_IMPLEMENTATION, apply_mask

__all__ = [
    "MASK_IMPLEMENTATION",
    "BytesMessage",
    "CloseCode",
    "Closed",
    "ConnectionClosedError",
    "DeflateSettings",
    "Event",
    "ExtensionOffer",
    "Handshake",
    "HandshakeError",
    "Opcode",
    "PerMessageDeflate",
    "PingReceived",
    "PongReceived",
    "ProtocolError",
    "State",
    "TextMessage",
    "WebSocketConnection",
    "accept_key",
    "accept_response",
    "apply_mask",
    "build_frame",
    "decode_close",
    "encode_close",
    "is_upgrade_request",
    "is_valid_close_code",
    "negotiate",
    "reject_response",
    "response_headers",
    "validate_handshake",
]


def __getattr__(name: str) -> Any:
    """``apply_mask`` and ``MASK_IMPLEMENTATION`` as :func:`asgisock.ws.mask.select` left them,
    not as they were when this package was first imported."""
    if name in ("apply_mask", "MASK_IMPLEMENTATION"):
        from asgisock.ws import mask

        return getattr(mask, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
