"""The fast path of HTTP input (a read holding one whole request) changes nothing.

The same stream of requests, cut into the same reads, is fed to two real ``HTTPProtocol``s on
real sockets: one through ``data_received`` as the transport calls it, the other through the
general path alone. The app must see the same requests, the client the same bytes, and after
every read both protocols must be in the same state.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from dataclasses import dataclass, field
from typing import Any

import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgisock.config import Config
from asgisock.transport.http import HTTPProtocol
from asgisock.transport.state import ServerState
from asgisock.types import Receive, Send

START = 1000.0
STEP = 0.001
KINDS = ("get", "head", "post-read", "post-unread", "chunked-read", "wait", "close")


def encode(kind: str, index: int, body: bytes) -> bytes:
    """One request of ``kind``; its path names the kind, so the app knows what to do."""
    target = b"/%s/%d" % (kind.encode(), index)
    if kind == "head":
        return b"HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n" % target
    if kind in ("get", "wait"):
        return b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target
    if kind == "close":
        return b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target
    if kind == "chunked-read":
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:1], body[1:]) if part)
        return b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%s0\r\n\r\n" % (target, chunks)
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (target, len(body), body)


@dataclass
class Run:
    """What one protocol did: the requests the app saw, the bytes sent, its state after each read."""

    seen: list[tuple[str, str, bytes]] = field(default_factory=list)
    states: list[tuple[Any, ...]] = field(default_factory=list)
    output: bytes = b""
    fast: int = 0
    """Reads that took the fast path (counted in the run through ``data_received`` only)."""


class SteppedClock:
    """A loop whose clock moves only when the test moves it: one millisecond a read, so that
    the protocol's times say during which read they were taken."""

    now = START

    def time(self) -> float:
        return self.now


def stepped_loop(name: str) -> asyncio.AbstractEventLoop:
    base: type[asyncio.AbstractEventLoop] = uvloop.Loop if name == "uvloop" else asyncio.SelectorEventLoop
    return type(f"Stepped{base.__name__}", (SteppedClock, base), {})()  # type: ignore[no-any-return]


def read_number(time: float) -> int:
    """Which read (-1 for the connection's start) a protocol's time was taken in."""
    return round((time - START) / STEP) - 1


def snapshot(protocol: HTTPProtocol, state: ServerState) -> tuple[Any, ...]:
    return (
        tuple(type(event).__name__ for event in protocol.pending),
        protocol.cycle is None,
        protocol.body_cycle is None,
        protocol.body_clock is None,
        protocol.read_paused,
        protocol.held is None,
        protocol.closed,
        read_number(protocol.idle_since),
        len(protocol.tasks),
        state.requests,
    )


async def drive(reads: list[bytes], settles: list[bool], through_data_received: bool) -> Run:
    run = Run()

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["path"].split("/")[1]
        body = b""
        if kind.endswith("-read"):
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
        if kind == "wait":
            await asyncio.sleep(0)  # the app lets a turn of the loop pass before it answers
        run.seen.append((scope["method"], scope["path"], body))
        answer = scope["path"].encode() + b" " + body
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % len(answer))]})
        await send({"type": "http.response.body", "body": answer})

    loop = asyncio.get_running_loop()
    state = ServerState(Config(app=app, date_header=False, access_log=False), app, loop)
    server_end, client_end = socket.socketpair()
    client_end.setblocking(False)

    class Counted(HTTPProtocol):
        """Counts the reads that ``data_received`` hands to the general path."""

        def _receive_events(self, events: list[Any]) -> None:
            run.fast -= 1
            super()._receive_events(events)

    transport, protocol = await loop.connect_accepted_socket(lambda: Counted(state), server_end)

    def general(events: list[Any]) -> None:
        HTTPProtocol._receive_events(protocol, events)

    async def settle() -> None:
        """Let the loop turn until ten turns in a row change nothing the test can see (an app
        may be waiting for a body still to be fed, so its task is not awaited)."""
        unchanged, last = 0, None
        while unchanged < 10:
            await asyncio.sleep(0)
            seen = (snapshot(protocol, state), len(run.seen), sum(task.done() for task in protocol.tasks))
            unchanged, last = (unchanged + 1 if seen == last else 0), seen

    try:
        for number, (data, wait) in enumerate(zip(reads, settles, strict=True)):
            if protocol.read_paused and not protocol.closed:
                await settle()  # the transport reads no more while reading is paused
                assert not protocol.read_paused or protocol.closed, "reading stays paused"
            if protocol.closed or transport.is_closing():
                break
            loop.now = START + (number + 1) * STEP  # type: ignore[attr-defined]
            if through_data_received:
                run.fast += 1
                protocol.data_received(data)
            else:
                protocol.conn.receive_data(data)
                general(protocol.conn.events_received())
            if wait:
                await settle()
            run.states.append(snapshot(protocol, state))
        await settle()
        run.states.append(snapshot(protocol, state))
        chunks = []
        while chunk := read_some(client_end):
            chunks.append(chunk)
        run.output = b"".join(chunks)
    finally:
        transport.close()
        await settle()
        client_end.close()
    return run


def read_some(sock: socket.socket) -> bytes:
    """What has arrived; empty when nothing has, or at the end."""
    try:
        return sock.recv(65536)
    except BlockingIOError:
        return b""


def run_on(loop_name: str, reads: list[bytes], settles: list[bool], through_data_received: bool) -> Run:
    loop = stepped_loop(loop_name)
    try:
        return loop.run_until_complete(drive(reads, settles, through_data_received))
    finally:
        loop.close()


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], list[bool]]:
    """Requests cut into reads: mostly at request boundaries (where the fast path can apply),
    sometimes anywhere."""
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=10))
    requests = [encode(kind, index, draw(st.binary(min_size=1, max_size=40)))
                for index, kind in enumerate(kinds)]
    stream = b"".join(requests)
    cuts: set[int] = set()
    offset = 0
    for request in requests[:-1]:
        offset += len(request)
        if draw(st.booleans()):
            cuts.add(offset)
    cuts |= set(draw(st.lists(st.integers(1, len(stream) - 1), max_size=4)))
    bounds = [0, *sorted(cuts), len(stream)]
    reads = [stream[start:end] for start, end in itertools.pairwise(bounds)]
    settles = draw(st.lists(st.booleans(), min_size=len(reads), max_size=len(reads)))
    return reads, settles


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=streams())
def test_fast_path_changes_nothing(loop: str, stream: tuple[list[bytes], list[bool]]) -> None:
    reads, settles = stream
    fast = run_on(loop, reads, settles, through_data_received=True)
    general = run_on(loop, reads, settles, through_data_received=False)
    assert fast.seen == general.seen
    assert fast.output == general.output
    assert fast.states == general.states


def test_a_read_of_one_whole_request_takes_the_fast_path(loop: str) -> None:
    """Else the property above compares the general path with itself."""
    requests = [encode("get", 0, b""), encode("get", 1, b""), encode("post-read", 2, b"abc"),
                encode("chunked-read", 3, b"def")]
    run = run_on(loop, requests, [True] * 4, through_data_received=True)
    assert run.fast == 3  # not the chunked body, which comes in two pieces
    assert run.output.count(b"HTTP/1.1 200 OK") == 4
    assert [path for _, path, _ in run.seen] == ["/get/0", "/get/1", "/post-read/2", "/chunked-read/3"]
