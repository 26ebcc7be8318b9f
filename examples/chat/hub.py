"""The rooms of one worker process: who is connected here, and the fan-out of a room's events.

A worker never sends to another worker's clients. Every event goes to the broker
(:mod:`examples.chat.brokers`), and each worker that has someone in the room gets it back and
writes it to its own connections. With the in-process broker that is a function call; with
Redis it is pub/sub, and the same code serves clients spread over many processes and machines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

logger = logging.getLogger("examples.chat")

Event = dict[str, Any]
"""A JSON object sent to the page: ``{"type": "message" | "join" | "leave" | "typing", ...}``."""

OUTBOX_LIMIT: Final = 256
"""Events waiting for one slow client before it is disconnected, so one stalled reader can
neither hold up the room nor make the worker's memory grow."""
TYPING_INTERVAL: Final = 1.0
"""A connection's typing notices are passed on at most this often (seconds)."""
MAX_TEXT: Final = 2000

# Close codes (RFC 6455 §7.4.1). 1008 tells the page that trying again is pointless.
POLICY_VIOLATION: Final = 1008
TRY_AGAIN_LATER: Final = 1013


class Unavailable(Exception):
    """The broker cannot be reached; the text is short enough for a close reason."""


class Broker(Protocol):
    """Where a room's events meet: this process's memory, or Redis shared by every worker."""

    kind: str

    async def start(self, hub: Hub) -> None: ...
    async def close(self) -> None: ...
    def subscribed(self, room: str) -> bool: ...
    async def subscribe(self, room: str) -> None: ...
    async def unsubscribe(self, room: str) -> None: ...
    async def publish(self, room: str, event: Event) -> None: ...
    async def add(self, room: str, member_id: str, name: str) -> None: ...
    async def remove(self, room: str, member_id: str) -> None: ...
    async def people(self, room: str) -> list[str]: ...
    async def check(self) -> None: ...
    def forget(self) -> None: ...


@dataclass(frozen=True)
class Close:
    """Put in an outbox: send a close frame with this code and reason, then nothing more."""

    code: int
    reason: str


@dataclass(eq=False)
class Connection:
    """One person in one room, as this worker sees them: what is waiting to be sent to them."""

    name: str
    room: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    outbox: asyncio.Queue[str | Close] = field(
        default_factory=lambda: asyncio.Queue(OUTBOX_LIMIT))
    closing: bool = False
    last_typing: float = float("-inf")

    def push(self, text: str) -> None:
        if self.closing:
            return
        try:
            self.outbox.put_nowait(text)
        except asyncio.QueueFull:
            self.close(TRY_AGAIN_LATER, "this connection fell behind the room")

    def close(self, code: int, reason: str) -> None:
        """Drop what is still waiting (the connection is going) and send the close next."""
        if self.closing:
            return
        self.closing = True
        while not self.outbox.empty():
            self.outbox.get_nowait()
        self.outbox.put_nowait(Close(code, reason))


class Hub:
    """The rooms this worker has connections in, kept subscribed at the broker while in use."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.rooms: dict[str, dict[str, Connection]] = {}
        self._subscriptions = asyncio.Lock()

    async def start(self) -> None:
        await self.broker.start(self)

    async def close(self) -> None:
        await self.broker.close()

    async def join(self, connection: Connection) -> None:
        """Enter the room everywhere: locally, in the broker's presence list, then announced."""
        self.rooms.setdefault(connection.room, {})[connection.id] = connection
        try:
            await self._update_subscription(connection.room)
            await self.broker.add(connection.room, connection.id, connection.name)
            await self.broker.publish(connection.room, event(connection, "join"))
        except Unavailable as error:
            self.fail(str(error))

    async def leave(self, connection: Connection) -> None:
        room = self.rooms.get(connection.room)
        if room is None or room.pop(connection.id, None) is not connection:
            return  # forgotten already, when the broker failed
        if not room:
            del self.rooms[connection.room]
        try:
            await self.broker.remove(connection.room, connection.id)
            await self.broker.publish(connection.room, event(connection, "leave"))
            await self._update_subscription(connection.room)
        except Unavailable as error:
            self.fail(str(error))

    async def receive(self, connection: Connection, text: str | None) -> None:
        """What the page sent: ``{"type": "message", "text": ...}`` or ``{"type": "typing"}``."""
        if connection.closing:
            return
        try:
            outgoing = parse(connection, text)
        except ValueError as error:
            connection.close(POLICY_VIOLATION, str(error))
            return
        if outgoing is None:
            return
        try:
            await self.broker.publish(connection.room, outgoing)
        except Unavailable as error:
            self.fail(str(error))

    async def deliver(self, room: str, incoming: Event) -> None:
        """An event from the broker: write it to this worker's connections in the room."""
        if not self.rooms.get(room):
            return
        if incoming.get("type") in ("join", "leave"):
            # Read after the event, so the list holds at least every change announced so far.
            incoming = {**incoming, "people": await self.broker.people(room)}
        text = json.dumps(incoming)
        for connection in list(self.rooms.get(room, {}).values()):
            connection.push(text)

    def fail(self, reason: str) -> None:
        """The broker is gone: tell every client here why, and start afresh when they return."""
        logger.warning("closing %d connection(s): %s", self.count(), reason)
        rooms, self.rooms = self.rooms, {}
        self.broker.forget()
        for room in rooms.values():
            for connection in room.values():
                connection.close(TRY_AGAIN_LATER, reason)

    def count(self) -> int:
        return sum(len(room) for room in self.rooms.values())

    async def _update_subscription(self, room: str) -> None:
        """Subscribe while someone here is in the room, unsubscribe once nobody is: decided
        under a lock from the rooms as they are then, so racing joins and leaves agree."""
        async with self._subscriptions:
            wanted = room in self.rooms
            if wanted and not self.broker.subscribed(room):
                await self.broker.subscribe(room)
            elif not wanted and self.broker.subscribed(room):
                await self.broker.unsubscribe(room)


def event(connection: Connection, kind: str, **fields: Any) -> Event:
    return {"type": kind, "id": connection.id, "name": connection.name, **fields}


def parse(connection: Connection, text: str | None) -> Event | None:
    """The event to publish for what the page sent (None: nothing); ValueError if invalid."""
    try:
        sent = json.loads(text) if text is not None else None
    except ValueError:
        sent = None
    if not isinstance(sent, dict) or sent.get("type") not in ("message", "typing"):
        raise ValueError('expected JSON {"type": "message", "text": ...} or {"type": "typing"}')
    if sent["type"] == "typing":
        now = time.monotonic()
        if now - connection.last_typing < TYPING_INTERVAL:
            return None
        connection.last_typing = now
        return event(connection, "typing")
    body = sent.get("text")
    if not isinstance(body, str) or not body.strip() or len(body) > MAX_TEXT:
        raise ValueError(f"a message's text must be 1 to {MAX_TEXT} characters")
    return event(connection, "message", text=body, time=time.time())
