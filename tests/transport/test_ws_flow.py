"""WebSocket flow control as a stateful property: whatever a client sends, splits, reads late
or stops reading, every message is answered exactly once, in order, and the connection never
goes quiet while answers are owed.

The bugs this guards against live in interleavings (the queue limit reached while the app waits
in ``receive()``, reading paused for a slow reader and resumed for the app), which hand-picked
examples miss: a burst of small messages once stalled the connection this way.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import zlib
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from asgisock.types import Receive, Send
from tests.support import serve
from tests.transport.peer import FLOW_SETTINGS, Peer, wait_for_answers

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 65537, 300_000]
"""Around every length boundary of RFC 6455 §5.2, and past the size compressed off the loop."""


@dataclass(frozen=True)
class Step:
    """What the app does for one received message: echo it ``copies`` times, after ``work``."""

    copies: int
    work: int
    """0: nothing; 1: a few loop iterations; 2: a short sleep (other work on the loop)."""


class PlannedEcho:
    """An app that answers the n-th message as the n-th step of its plan says."""

    def __init__(self, plan: list[Step]) -> None:
        self.plan = plan

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        for step in itertools.cycle(self.plan):
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if step.work == 1:
                for _ in range(3):
                    await asyncio.sleep(0)
            elif step.work == 2:
                await asyncio.sleep(0.002)
            data = {k: v for k, v in message.items() if k != "type"}
            for _ in range(step.copies):
                await send({"type": "websocket.send", **data})


def client_frame(opcode: int, payload: bytes, *, fin: bool, rsv1: bool = False) -> bytes:
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    length = len(payload)
    if length < 126:
        head = bytes([first, 0x80 | length])
    elif length < 65536:
        head = bytes([first, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([first, 0x80 | 127]) + length.to_bytes(8, "big")
    mask = os.urandom(4)
    masked = (int.from_bytes(payload, "little") ^ int.from_bytes(mask * (length // 4 + 1), "little")
              ).to_bytes(length + 4, "little")[:length] if length else b""
    return head + mask + masked


def message_payload(index: int, size: int, text: bool) -> bytes:
    """``size`` bytes that name the message; text mixes in two-byte characters, so fragments
    split UTF-8 sequences."""
    tag = f"{index:07d}|".encode()[:size]
    if not text:
        return tag + bytes(range(256)) * ((size - len(tag)) // 256) + bytes((size - len(tag)) % 256)
    rest = size - len(tag)
    return tag + "é".encode() * (rest // 2) + b"a" * (rest % 2)


class ServerFrames:
    """Parses the server's frames, inflating permessage-deflate messages (RFC 7692 §7.2.2)."""

    def __init__(self) -> None:
        self.inflater = zlib.decompressobj(-15)
        self.messages: list[tuple[int, bytes]] = []
        self.pongs = 0
        self.close: bytes | None = None
        self._fragments: list[bytes] = []
        self._first: tuple[int, bool] | None = None

    def feed(self, buffer: bytearray) -> None:
        while len(buffer) >= 2:
            length, start = buffer[1] & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, start = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + length:
                return
            assert not buffer[1] & 0x80, "server frames are not masked"
            self._frame(buffer[0], bytes(buffer[start : start + length]))
            del buffer[: start + length]

    def _frame(self, first: int, payload: bytes) -> None:
        opcode, fin, rsv1 = first & 0x0F, bool(first & 0x80), bool(first & 0x40)
        if opcode == 0xA:
            self.pongs += 1
        elif opcode == 0x8:
            self.close = payload
        else:
            assert opcode != 0x9, "no keepalive pings in these tests"
            if opcode:
                assert self._first is None
                self._first = (opcode, rsv1)
            self._fragments.append(payload)
            if fin:
                assert self._first is not None
                data = b"".join(self._fragments)
                if self._first[1]:
                    data = self.inflater.decompress(data + b"\x00\x00\xff\xff")
                self.messages.append((self._first[0], data))
                self._first, self._fragments = None, []


class WebSocketFlow(RuleBasedStateMachine):
    loop = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self.stack = contextlib.ExitStack()
        self.expected: list[tuple[int, bytes]] = []
        self.owed_at: list[int] = []
        """For each expected answer, the stream offset after which the server owes it."""
        self.count = 0
        self.pings = 0

    @initialize(
        plan=st.lists(st.builds(Step, st.integers(1, 3), st.sampled_from([0, 0, 1, 2])), min_size=1, max_size=5),
        max_queue=st.sampled_from([1, 2, 3, 32]),
        compression=st.booleans(),
        write_buffer=st.sampled_from([None, 1, 4096]),
        receive_buffer=st.sampled_from([None, 4096]),
    )
    def start(self, plan: list[Step], max_queue: int, compression: bool, write_buffer: int | None,
              receive_buffer: int | None) -> None:
        self.plan = plan
        server = self.stack.enter_context(serve(
            PlannedEcho(plan), loop=self.loop, ws_max_queue=max_queue, ws_ping_interval=None,
            ws_per_message_deflate=compression, timeout_graceful_shutdown=1,
        ))
        self.peer = peer = Peer(server, receive_buffer=receive_buffer)
        self.stack.callback(peer.close)
        key = base64.b64encode(os.urandom(16))
        offer = b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if compression else b""
        peer.queue(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n" + offer + b"\r\n")
        peer.pump(lambda: b"\r\n\r\n" in peer.incoming, lambda: "the handshake response")
        head, _, rest = bytes(peer.incoming).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        self.compressed = b"permessage-deflate" in head
        assert self.compressed == compression
        peer.incoming[:] = rest
        self.deflater = zlib.compressobj(wbits=-15)
        self.frames = ServerFrames()
        if write_buffer is not None:
            state = server.server.state
            assert state is not None
            server.call(lambda: [c.transport.set_write_buffer_limits(high=write_buffer)
                                 for c in state.connections])

    # -- what the client does --------------------------------------------------------------
    @rule(size=st.sampled_from(SIZES), text=st.booleans(), compress=st.booleans(),
          cuts=st.lists(st.floats(0, 1), max_size=3))
    def send_message(self, size: int, text: bool, compress: bool, cuts: list[float]) -> None:
        payload = message_payload(self.count, size, text)
        opcode = 1 if text else 2
        step = self.plan[self.count % len(self.plan)]
        self.count += 1
        rsv1 = compress and self.compressed
        wire = payload
        if rsv1:
            wire = self.deflater.compress(payload) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
            wire = wire[:-4]  # RFC 7692 §7.2.1: drop the final 00 00 ff ff
        points = sorted({0, *(round(cut * len(wire)) for cut in cuts), len(wire)})
        pieces = [wire[a:b] for a, b in itertools.pairwise(points)] or [b""]
        frames = b"".join(
            client_frame(opcode if index == 0 else 0, piece, fin=index == len(pieces) - 1,
                         rsv1=rsv1 and index == 0)
            for index, piece in enumerate(pieces)
        )
        end = self.peer.queue(frames)
        for _ in range(step.copies):
            self.expected.append((opcode, payload))
            self.owed_at.append(end)

    @rule(payload=st.binary(max_size=125))
    def ping(self, payload: bytes) -> None:
        self.peer.queue(client_frame(0x9, payload, fin=True))
        self.pings += 1

    @rule(limit=st.sampled_from([1, 7, 100, 5000, 1 << 20]))
    def write_some(self, limit: int) -> None:
        self.peer.write(limit)

    @rule(limit=st.sampled_from([1, 100, 70000]))
    def read_some(self, limit: int) -> None:
        """Read what has arrived, perhaps a piece of a frame; never wait."""
        self.peer.read(limit)
        self._parse()

    @rule(count=st.integers(1, 5))
    def read_answers(self, count: int) -> None:
        """Read until ``count`` more answers came, writing what is queued meanwhile."""
        target = min(len(self.frames.messages) + count, len(self.expected))
        self._pump_until(target)

    # -- checks ----------------------------------------------------------------------------
    def _parse(self) -> None:
        self.frames.feed(self.peer.incoming)
        got = self.frames.messages
        assert got == self.expected[: len(got)], "answers lost, repeated or out of order"
        assert self.frames.close is None, f"the server closed: {self.frames.close!r}"

    def _received(self) -> int:
        self._parse()
        return len(self.frames.messages)

    def _pump_until(self, target: int) -> None:
        wait_for_answers(self.peer, self._received, target, self.owed_at, "answers")

    def teardown(self) -> None:
        try:
            if hasattr(self, "peer"):
                self._pump_until(len(self.expected))
                self.peer.queue(client_frame(0x8, (1000).to_bytes(2, "big"), fin=True))
                self.peer.pump(lambda: self._closed(), lambda: "the close frame")
                assert self.frames.messages == self.expected
                assert self.frames.pongs == self.pings
        finally:
            self.stack.close()

    def _closed(self) -> bool:
        self.frames.feed(self.peer.incoming)
        return self.frames.close is not None


class WebSocketFlowUvloop(WebSocketFlow):
    loop = "uvloop"


TestWebSocketFlowAsyncio = WebSocketFlow.TestCase
TestWebSocketFlowAsyncio.settings = FLOW_SETTINGS
TestWebSocketFlowUvloop = WebSocketFlowUvloop.TestCase
TestWebSocketFlowUvloop.settings = FLOW_SETTINGS
