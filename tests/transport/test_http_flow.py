"""HTTP/1.1 pipelining and body flow control as a stateful property: whatever requests a client
pipelines (bodies of every size, Content-Length or chunked, split anywhere), however late it
reads, and whether or not the app reads each body, every request is answered once, in order,
and the connection never goes quiet while responses are owed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass
from typing import Any

import httptools
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from asgisock.types import Receive, Send
from tests.support import serve, timeout
from tests.transport.peer import FLOW_SETTINGS, Peer, wait_for_answers

SIZES = [0, 1, 100, 65536, 300_000]
"""Around the 256 KiB body buffer at which reading pauses, and below."""


@dataclass(frozen=True)
class Step:
    """What the app does with one request."""

    read_body: bool
    work: int
    """0: nothing; 1: a few loop iterations; 2: a short sleep (other work on the loop)."""
    pieces: int
    """The response body goes out in this many ``http.response.body`` messages."""
    chunked: bool
    """Without a Content-Length: chunked, its large pieces written after their chunk-size lines."""


class PlannedApp:
    """Answers each request with its ``x-seq`` header and, when the plan says to read the
    body, the body itself; otherwise it answers without calling ``receive()``."""

    def __init__(self, plan: list[Step]) -> None:
        self.plan = plan

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        seq = dict(scope["headers"])[b"x-seq"]
        step = self.plan[int(seq) % len(self.plan)]
        if step.work == 1:
            for _ in range(3):
                await asyncio.sleep(0)
        elif step.work == 2:
            await asyncio.sleep(0.002)
        body = b"-"
        if step.read_body:
            chunks = []
            while True:
                message = await receive()
                assert message["type"] == "http.request", message
                chunks.append(message["body"])
                if not message.get("more_body"):
                    break
            body = b"".join(chunks)
        answer = seq + b":" + body
        length = [] if step.chunked else [(b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": length})
        size = -(-len(answer) // step.pieces)
        pieces = [answer[i : i + size] for i in range(0, len(answer), size)]
        for index, piece in enumerate(pieces):
            await send({"type": "http.response.body", "body": piece, "more_body": index < len(pieces) - 1})


class Responses:
    """The responses read so far, parsed by httptools (llhttp) as a client would."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.statuses: list[int] = []
        self._body: list[bytes] = []
        self.parser = httptools.HttpResponseParser(self)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.statuses.append(self.parser.get_status_code())
        self.bodies.append(b"".join(self._body))
        self._body = []

    def feed(self, buffer: bytearray) -> None:
        if buffer:
            self.parser.feed_data(bytes(buffer))
            buffer.clear()


def request(seq: int, size: int, chunked: bool, cuts: list[float]) -> tuple[bytes, bytes]:
    """A request and the body it carries."""
    body = (f"{seq:07d}|".encode() + bytes(range(256)) * (size // 256 + 1))[:size]
    if size == 0 and not chunked:
        return f"GET / HTTP/1.1\r\nHost: x\r\nx-seq: {seq}\r\n\r\n".encode(), body
    if not chunked:
        return f"POST / HTTP/1.1\r\nHost: x\r\nx-seq: {seq}\r\nContent-Length: {size}\r\n\r\n".encode() + body, body
    points = sorted({0, *(round(cut * size) for cut in cuts), size})
    chunks = b"".join(b"%x\r\n%s\r\n" % (b - a, body[a:b]) for a, b in itertools.pairwise(points) if b > a)
    head = f"POST / HTTP/1.1\r\nHost: x\r\nx-seq: {seq}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    return head + chunks + b"0\r\n\r\n", body


class HTTPFlow(RuleBasedStateMachine):
    loop = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self.stack = contextlib.ExitStack()
        self.expected: list[bytes] = []
        self.owed_at: list[int] = []

    @initialize(
        plan=st.lists(st.builds(Step, st.booleans(), st.sampled_from([0, 0, 1, 2]), st.integers(1, 3), st.booleans()),
                      min_size=1, max_size=5),
        write_buffer=st.sampled_from([None, 1, 4096]),
        receive_buffer=st.sampled_from([None, 4096]),
    )
    def start(self, plan: list[Step], write_buffer: int | None, receive_buffer: int | None) -> None:
        self.plan = plan
        server = self.stack.enter_context(serve(PlannedApp(plan), loop=self.loop, access_log=False,
                                                timeout_graceful_shutdown=1))
        self.peer = peer = Peer(server, receive_buffer=receive_buffer)
        self.stack.callback(peer.close)
        self.responses = Responses()
        self.write_buffer = write_buffer
        self.server = server
        # Wait for the connection to be accepted even when nothing is set on it: from Python 3.12,
        # a connection that asyncio accepted but had not yet made a transport for when the
        # server closed is left to the garbage collector, open (Server._attach() asserts), and
        # an example with no steps would end that soon.
        state = server.server.state
        assert state is not None
        deadline = time.monotonic() + timeout(5)
        while not server.call(lambda: len(state.connections)):  # each call is a loop round trip
            assert time.monotonic() < deadline, "the server did not accept the connection"
        if write_buffer is not None:
            server.call(lambda: [c.transport.set_write_buffer_limits(high=write_buffer)
                                 for c in state.connections])

    @rule(size=st.sampled_from(SIZES), chunked=st.booleans(), cuts=st.lists(st.floats(0, 1), max_size=3))
    def send_request(self, size: int, chunked: bool, cuts: list[float]) -> None:
        seq = len(self.expected)
        data, body = request(seq, size, chunked, cuts)
        step = self.plan[seq % len(self.plan)]
        self.expected.append(str(seq).encode() + b":" + (body if step.read_body else b"-"))
        self.owed_at.append(self.peer.queue(data))

    @rule(limit=st.sampled_from([1, 7, 100, 5000, 1 << 20]))
    def write_some(self, limit: int) -> None:
        self.peer.write(limit)

    @rule(limit=st.sampled_from([1, 100, 70000]))
    def read_some(self, limit: int) -> None:
        self.peer.read(limit)
        self._parse()

    @rule(count=st.integers(1, 5))
    def read_responses(self, count: int) -> None:
        self._pump_until(min(len(self.responses.bodies) + count, len(self.expected)))

    def _parse(self) -> None:
        self.responses.feed(self.peer.incoming)
        got = self.responses.bodies
        assert got == self.expected[: len(got)], "responses lost, repeated or out of order"
        assert set(self.responses.statuses) <= {200}, self.responses.statuses

    def _received(self) -> int:
        self._parse()
        return len(self.responses.bodies)

    def _pump_until(self, target: int) -> None:
        wait_for_answers(self.peer, self._received, target, self.owed_at, "responses")

    def teardown(self) -> None:
        try:
            if hasattr(self, "peer"):
                self._pump_until(len(self.expected))
                assert self.responses.bodies == self.expected
        finally:
            self.stack.close()


class HTTPFlowUvloop(HTTPFlow):
    loop = "uvloop"


TestHTTPFlowAsyncio = HTTPFlow.TestCase
TestHTTPFlowAsyncio.settings = FLOW_SETTINGS
TestHTTPFlowUvloop = HTTPFlowUvloop.TestCase
TestHTTPFlowUvloop.settings = FLOW_SETTINGS
