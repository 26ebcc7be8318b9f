"""Run a corpus case through :class:`HTTP11Connection` alone and describe what came out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from asgisock.asgi.scope import split_target
from asgisock.http11.connection import HTTP11Connection
from asgisock.http11.events import EndOfMessage, Request, RequestError
from tests.corpus.http_cases import LIMIT, Case, Seen


@dataclass
class Parsed:
    """What the server would act on: the requests it dispatches and the error it answers."""

    requests: list[Seen] = field(default_factory=list)
    status: int | None = None
    upgraded: bool = False


def feed(chunks: Iterable[bytes], *, websocket: bool = True) -> Parsed:
    """Feed ``chunks`` one by one and interpret the events as the transport does: nothing after
    an error, after a request that ends the connection, or after a protocol switch."""
    conn = HTTP11Connection(max_header_size=LIMIT, websocket=websocket)
    parsed = Parsed()
    request: Request | None = None
    body = b""
    done = False
    for chunk in chunks:
        conn.receive_data(chunk)
        for event in conn.events_received():
            if done:
                continue
            if isinstance(event, Request):
                request, body = event, b""
                if event.upgrade:
                    parsed.upgraded = done = True
                    parsed.requests.append(_seen(event, b"", complete=True))
            elif isinstance(event, bytes):
                body += event
            elif isinstance(event, EndOfMessage):
                assert request is not None
                parsed.requests.append(_seen(request, body, complete=True))
                done = not request.keep_alive
                request = None
            else:
                assert isinstance(event, RequestError)
                if request is not None:
                    parsed.requests.append(_seen(request, b"", complete=False))
                parsed.status = event.status
                done = True
    return parsed


def _seen(request: Request, body: bytes, *, complete: bool) -> Seen:
    path, query = split_target(request.target)
    target = (path + (b"?" + query if query else b"")).decode("latin-1")
    headers = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers)
    return Seen(request.method.decode("ascii"), target, body, headers, complete)


def matches(seen: Seen, expected: Seen) -> bool:
    """Whether a request seen matches an expected one (headers: the expected ones among all)."""
    if (seen.method, seen.target, seen.complete) != (expected.method, expected.target, expected.complete):
        return False
    if expected.complete and seen.body != expected.body:
        return False
    return all(header in seen.headers for header in expected.headers)


def check(case: Case, parsed: Parsed) -> list[str]:
    """Differences between a case's expectations and a parse; empty when it matches."""
    problems = []
    if parsed.status != case.status:
        problems.append(f"status {parsed.status}, expected {case.status}")
    if len(parsed.requests) != len(case.seen):
        problems.append(f"requests {parsed.requests}, expected {case.seen}")
    else:
        for got, expected in zip(parsed.requests, case.seen, strict=True):
            if not matches(got, expected):
                problems.append(f"request {got}, expected {expected}")
    return problems
