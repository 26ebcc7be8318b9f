"""asgisock: a fast ASGI 3 server for HTTP/1.1 and WebSocket."""

from __future__ import annotations

__version__ = "0.1.0"

# First, before any frame can be unmasked: reads ASGISOCK_NO_EXTENSIONS, picks the masking.
from asgisock import extensions as _extensions  # noqa: F401
from asgisock.config import Config
from asgisock.exceptions import ClientDisconnected
from asgisock.server import Server, run

__all__ = ["ClientDisconnected", "Config", "Server", "__version__", "run"]
