"""The two brokers: rooms in this process's memory, or rooms in Redis shared by every worker.

Redis carries two things. Events go through pub/sub, one channel per room (``chat:room:NAME``),
which each worker subscribes to while it has someone in that room. Presence is a set of
member ids per room, each id with a key holding the name that expires unless its worker keeps
refreshing it: a worker that dies without saying goodbye drops out of the lists by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any, Final

import redis.asyncio as redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .hub import Event, Unavailable

if TYPE_CHECKING:
    from .hub import Hub

logger = logging.getLogger("examples.chat")

PRESENCE_TTL: Final = 30
"""Seconds a member stays listed after their worker last refreshed them."""
REDIS_DOWN: Final = "the chat cannot reach Redis; try again later"


class MemoryBroker:
    """One process on its own: a room's events go straight to the hub, presence is a dict."""

    kind = "memory"

    def __init__(self) -> None:
        self.members: dict[str, dict[str, str]] = {}
        self.rooms: set[str] = set()
        self.hub: Hub | None = None

    async def start(self, hub: Hub) -> None:
        self.hub = hub

    async def close(self) -> None:
        self.hub = None

    def subscribed(self, room: str) -> bool:
        return room in self.rooms

    async def subscribe(self, room: str) -> None:
        self.rooms.add(room)

    async def unsubscribe(self, room: str) -> None:
        self.rooms.discard(room)

    async def publish(self, room: str, event: Event) -> None:
        if self.hub is not None and room in self.rooms:
            await self.hub.deliver(room, event)

    async def add(self, room: str, member_id: str, name: str) -> None:
        self.members.setdefault(room, {})[member_id] = name

    async def remove(self, room: str, member_id: str) -> None:
        members = self.members.get(room, {})
        members.pop(member_id, None)
        if not members:
            self.members.pop(room, None)

    async def people(self, room: str) -> list[str]:
        return sorted(self.members.get(room, {}).values(), key=str.casefold)

    async def check(self) -> None:
        pass

    def forget(self) -> None:
        pass


class RedisBroker:
    """Rooms shared by every worker that uses the same Redis.

    Any Redis error is reported as :class:`Unavailable` and nothing is retried here: the hub
    then closes this worker's connections with 1013 (try again later), their pages reconnect
    with back-off, and whoever comes back once Redis answers again rejoins from scratch. That
    one path serves a Redis restart, a network cut and a failover alike.
    """

    kind = "redis"

    def __init__(self, url: str) -> None:
        # A command is retried once, at once, on a new connection: that replaces a pooled
        # connection that went stale while Redis restarted, and fails fast while it is down.
        self.client = client(url, retries=1)
        # The subscriber is never retried: a reconnect it hid would have lost the messages
        # published meanwhile (say, after Redis dropped it for falling behind) unnoticed.
        self.subscriber = client(url, retries=0)
        self.hub: Hub | None = None
        self.local: dict[tuple[str, str], str] = {}  # (room, id) → name, refreshed in Redis
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self, hub: Hub) -> None:
        self.hub = hub
        self._refresher = asyncio.create_task(self._refresh_presence())

    async def close(self) -> None:
        self.hub = None
        for task in (self._refresher, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._reader = None
        if self._pubsub is not None:
            await self._close_pubsub(self._pubsub)
        for closing in list(self._closing):
            await closing
        await self.client.aclose()
        await self.subscriber.aclose()

    def subscribed(self, room: str) -> bool:
        return self._pubsub is not None and channel(room) in self._pubsub.channels

    async def subscribe(self, room: str) -> None:
        """Return once Redis has confirmed the subscription, so nothing published after this
        returns can be missed."""
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmed[channel(room)] = confirmed
        try:
            if self._pubsub is None:
                self._pubsub = self.subscriber.pubsub()
            pubsub = self._pubsub
            await pubsub.subscribe(channel(room))
            if self._reader is None:
                self._reader = asyncio.create_task(self._read(pubsub))
            await asyncio.wait_for(confirmed, 5)
        except (RedisError, OSError, TimeoutError) as error:
            raise self._unavailable(error) from error
        finally:
            self._confirmed.pop(channel(room), None)
        if self._pubsub is not pubsub:  # failed meanwhile: forget() woke us up
            raise Unavailable(REDIS_DOWN)

    async def unsubscribe(self, room: str) -> None:
        if self._pubsub is not None:
            try:
                await self._pubsub.unsubscribe(channel(room))
            except (RedisError, OSError) as error:
                raise self._unavailable(error) from error

    async def publish(self, room: str, event: Event) -> None:
        await self._command(self.client.publish(channel(room), json.dumps(event)))

    async def add(self, room: str, member_id: str, name: str) -> None:
        self.local[room, member_id] = name
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.sadd(members_key(room), member_id)
            pipe.set(member_key(room, member_id), name, ex=PRESENCE_TTL)
            await self._command(pipe.execute())

    async def remove(self, room: str, member_id: str) -> None:
        self.local.pop((room, member_id), None)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.srem(members_key(room), member_id)
            pipe.delete(member_key(room, member_id))
            await self._command(pipe.execute())

    async def people(self, room: str) -> list[str]:
        """The names in the room, on every worker; ids whose key expired are pruned."""
        ids = sorted(await self._command(self.client.smembers(members_key(room))))
        if not ids:
            return []
        names = await self._command(self.client.mget([member_key(room, i) for i in ids]))
        gone = [member_id for member_id, name in zip(ids, names, strict=True) if name is None]
        if gone:
            await self._command(self.client.srem(members_key(room), *gone))
        return sorted((name for name in names if name is not None), key=str.casefold)

    async def check(self) -> None:
        await self._command(self.client.ping())

    def forget(self) -> None:
        """After a failure: drop the subscriptions and the members this worker listed; the
        pages that reconnect list themselves again."""
        self.local.clear()
        pubsub, self._pubsub = self._pubsub, None
        reader, self._reader = self._reader, None
        for future in self._confirmed.values():
            if not future.done():
                future.set_result(None)
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        if pubsub is not None:
            closing = asyncio.create_task(self._close_pubsub(pubsub))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def _command(self, pending: Any) -> Any:
        try:
            return await pending
        except (RedisError, OSError) as error:
            raise self._unavailable(error) from error

    async def _read(self, pubsub: PubSub) -> None:
        """Hand each message to the hub; on a broken connection, fail everything over."""
        try:
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    future = self._confirmed.get(message["channel"])
                    if future is not None and not future.done():
                        future.set_result(None)
                elif message["type"] == "message" and self.hub is not None:
                    room = message["channel"].removeprefix(CHANNEL_PREFIX)
                    await self.hub.deliver(room, json.loads(message["data"]))
        except (RedisError, OSError, Unavailable) as error:
            unavailable = self._unavailable(error)
            if self.hub is not None:
                self.hub.fail(str(unavailable))

    async def _refresh_presence(self) -> None:
        """Keep this worker's members listed; also notices a Redis that went away quietly."""
        while True:
            await asyncio.sleep(PRESENCE_TTL / 3)
            if not self.local:
                continue
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for (room, member_id), name in self.local.items():
                        pipe.set(member_key(room, member_id), name, ex=PRESENCE_TTL)
                    await self._command(pipe.execute())
            except Unavailable as error:
                if self.hub is not None:
                    self.hub.fail(str(error))

    async def _close_pubsub(self, pubsub: PubSub) -> None:
        with contextlib.suppress(RedisError, OSError):
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py

    def _unavailable(self, error: BaseException) -> Unavailable:
        if isinstance(error, Unavailable):
            return error
        logger.warning("cannot reach Redis: %s", error or type(error).__name__)
        return Unavailable(REDIS_DOWN)


CHANNEL_PREFIX: Final = "chat:room:"


def client(url: str, *, retries: int) -> redis.Redis:
    """A client whose every command is bounded in time (seconds)."""
    return redis.Redis.from_url(url, decode_responses=True, retry=Retry(NoBackoff(), retries),
                                socket_connect_timeout=5, socket_timeout=5)


def channel(room: str) -> str:
    return CHANNEL_PREFIX + room


def members_key(room: str) -> str:
    return f"chat:members:{room}"


def member_key(room: str, member_id: str) -> str:
    return f"chat:member:{room}:{member_id}"
