"""The ASGI lifespan protocol: startup and shutdown events, and the shared ``state``.

https://asgi.readthedocs.io/en/latest/specs/lifespan.html
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any, Final

from asgisock.logging import error_logger
from asgisock.types import ASGIApp, Message

LIFESPAN_VERSIONS: Final = {"version": "3.0", "spec_version": "2.0"}


class Phase(enum.Enum):
    STARTING = enum.auto()
    STARTED = enum.auto()
    STOPPING = enum.auto()
    STOPPED = enum.auto()


_EXPECTED: Final = {
    Phase.STARTING: ("lifespan.startup.complete", "lifespan.startup.failed"),
    Phase.STOPPING: ("lifespan.shutdown.complete", "lifespan.shutdown.failed"),
}


class Lifespan:
    """Runs the app's lifespan task; ``mode`` is the ``--lifespan`` setting (auto, on, off)."""

    def __init__(self, app: ASGIApp, mode: str, state: dict[str, Any]) -> None:
        self.app = app
        self.mode = mode
        self.state = state
        self.phase = Phase.STARTING
        self.unsupported = mode == "off"
        self.failed = False
        self.error_message = ""
        self._receive_queue: asyncio.Queue[Message] = asyncio.Queue()
        self._answered = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> bool:
        """True when the app started (or does not speak lifespan and mode allows it)."""
        if self.mode == "off":
            return True
        error_logger.info("Waiting for application startup.")
        self._task = asyncio.get_running_loop().create_task(self._main())
        await self._exchange({"type": "lifespan.startup"})
        if self.failed or (self.unsupported and self.mode == "on"):
            error_logger.error("Application startup failed. Exiting.")
            return False
        if not self.unsupported:
            error_logger.info("Application startup complete.")
        self.phase = Phase.STARTED
        return True

    async def shutdown(self) -> None:
        if self.unsupported or self._task is None or self._task.done():
            return
        error_logger.info("Waiting for application shutdown.")
        self.phase = Phase.STOPPING
        await self._exchange({"type": "lifespan.shutdown"})
        if self.failed:
            error_logger.error("Application shutdown failed.")
        else:
            error_logger.info("Application shutdown complete.")
        self.phase = Phase.STOPPED

    def cancel(self) -> None:
        """Stop the lifespan task (startup was interrupted)."""
        if self._task is not None:
            self._task.cancel()

    async def _exchange(self, message: Message) -> None:
        self._answered.clear()
        await self._receive_queue.put(message)
        await self._answered.wait()

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": LIFESPAN_VERSIONS, "state": self.state}
        try:
            await self.app(scope, self.receive, self.send)
        except asyncio.CancelledError:
            raise  # a forced exit: nothing to report
        except BaseException as exc:
            if not self.failed:
                self._report_crash(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._answered.set()

    def _report_crash(self, exc: BaseException) -> None:
        if self.phase is Phase.STARTING:
            self.unsupported = True
            if self.mode == "auto":
                error_logger.info("ASGI 'lifespan' protocol appears unsupported.")
                return
        else:
            self.failed = True
        error_logger.error("Exception in 'lifespan' protocol", exc_info=exc)

    async def receive(self) -> Message:
        return await self._receive_queue.get()

    async def send(self, message: Message) -> None:
        kind = message.get("type")
        expected = _EXPECTED.get(self.phase, ())
        if kind not in expected:
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}; expected one of {expected}")
        if isinstance(kind, str) and kind.endswith(".failed"):
            self.failed = True
            self.error_message = str(message.get("message", ""))
            if self.error_message:
                error_logger.error(self.error_message)
        self._answered.set()
