"""The hostile-request corpus against a real server on a real socket, on both event loops.

For every case: the exact responses (the app's 200s, then the server's own error), whether the
connection is closed or still serves a request, what the app saw (nothing for a rejected
request), and that a new client is served normally afterwards.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from asgisock.types import Receive, Send
from tests.corpus.client import PROBE, expect
from tests.corpus.http_cases import CASES, LIMIT, Case, Seen
from tests.corpus.sansio import matches
from tests.support import RunningServer, serve, timeout


@dataclass
class Call:
    """One call of the app, filled in as it goes."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    complete: bool = False

    def seen(self) -> Seen:
        return Seen(self.method, self.target, self.body, self.headers, self.complete)


@dataclass
class Recorder:
    """Records what the app is given; answers 200 after reading the body, or at once."""

    calls: list[Call] = field(default_factory=list)
    read_body: bool = True
    disconnected: threading.Event = field(default_factory=threading.Event)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == "/__probe":
            await respond(send)
            return
        query = scope["query_string"].decode("latin-1")
        target = scope["raw_path"].decode("latin-1") + ("?" + query if query else "")
        headers = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"])
        call = Call(scope["method"], target, headers)
        self.calls.append(call)
        if self.read_body and not await read_into(call, receive):
            self.disconnected.set()
            return
        await respond(send)


async def read_into(call: Call, receive: Receive) -> bool:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        call.body += message["body"]
        if not message.get("more_body"):
            call.complete = True
            return True


async def respond(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def corpus_server(request: pytest.FixtureRequest) -> Iterator[tuple[RunningServer, Recorder]]:
    recorder = Recorder()
    with serve(recorder, loop=request.param, max_header_size=LIMIT, timeout_graceful_shutdown=1) as server:
        yield server, recorder


def body_fails(case: Case) -> bool:
    return any(not seen.complete for seen in case.seen)


def corpus_params() -> list[Any]:
    params = []
    for case in CASES:
        params.append(pytest.param(case, id=case.name))
    return params


@pytest.mark.parametrize("case", corpus_params())
def test_corpus(corpus_server: tuple[RunningServer, Recorder], case: Case) -> None:
    server, recorder = corpus_server
    recorder.calls.clear()
    address = (server.host, server.port)
    if body_fails(case):
        # The app answers at once, without reading the body; the body turns out malformed, so
        # the connection cannot carry another request: it closes. Whoever is first answers: the
        # server's error if the bad bytes arrive before the app's response, else the app's 200,
        # with nothing after it.
        recorder.read_body = False
        statuses, close = [200], True
        expected_seen = tuple(Seen(s.method, s.target, b"", s.headers, complete=False) for s in case.seen)
    else:
        recorder.read_body = True
        statuses = [200] * case.app_responses + ([case.status] if case.status is not None else [])
        close, expected_seen = case.close, case.seen
    outcome = expect(address, case.data, responses=len(statuses), close=close, timeout=timeout(5))
    if body_fails(case):
        assert outcome.statuses in ([200], [case.status])
    else:
        assert outcome.statuses == statuses
    assert not outcome.garbage
    assert outcome.closed is close
    assert outcome.reused is not close
    seen = [call.seen() for call in recorder.calls]
    assert len(seen) == len(expected_seen), seen
    for got, wanted in zip(seen, expected_seen, strict=True):
        assert matches(got, wanted), (got, wanted)
    # The next client is served normally.
    assert expect(address, PROBE, responses=1, close=False, timeout=timeout(5)).statuses == [200]


def test_every_framing_doubt_closes() -> None:
    """An error answer always ends the connection: after it, the framing cannot be trusted."""
    assert all(case.close for case in CASES if case.status is not None)


@pytest.mark.parametrize("name", ["chunk-size-plus", "trailer-unterminated"])
def test_body_error_while_the_app_reads(loop: str, name: str) -> None:
    """The app is waiting for the body when it turns out malformed: it gets http.disconnect, and
    the client gets the error answer and a close, promptly."""
    case = next(case for case in CASES if case.name == name)
    recorder = Recorder()
    with serve(recorder, loop=loop, max_header_size=LIMIT, timeout_graceful_shutdown=0.5) as server:
        outcome = expect((server.host, server.port), case.data, responses=1, close=True, timeout=timeout(1))
        assert recorder.disconnected.wait(timeout(1))
    assert outcome.statuses == [case.status]
    assert outcome.closed


def test_app_is_not_called_for_an_unanswered_error(loop: str) -> None:
    """A rejected request never starts a cycle, even when the app would answer anything."""
    called = threading.Event()

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        called.set()
        await asyncio.sleep(0)
        await respond(send)

    with serve(app, loop=loop) as server:
        outcome = expect((server.host, server.port), b"GET / HTTP/1.1\r\n\r\n", responses=1, close=True,
                         timeout=timeout(5))
    assert outcome.statuses == [400]
    assert not called.is_set()
