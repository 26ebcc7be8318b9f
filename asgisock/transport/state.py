"""What every connection of one server shares."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from asgisock.config import Config
from asgisock.http11.writer import DefaultHeaders
from asgisock.types import ASGIApp


class ServerState:
    """Live connections and tasks (for limits and shutdown), the app and its lifespan state."""

    def __init__(self, config: Config, app: ASGIApp, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.app = app
        self.loop = loop
        self.connections: set[Any] = set()
        """Protocol instances with a live transport; each has ``shutdown()``."""
        self.tasks: set[asyncio.Task[None]] = set()
        self.app_state: dict[str, Any] = {}
        """The lifespan ``state`` namespace; every scope gets a shallow copy."""
        self.defaults = DefaultHeaders(
            server=config.server_header, clock=time.time if config.date_header else None,
            extra=config.header_pairs,
        )
