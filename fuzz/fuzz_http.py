"""Fuzz target: HTTP11Connection.receive_data, on any bytes, split into reads any way.

Input layout: byte 0 sets ``max_header_size`` (64 to 16384), byte 1 bit 0 turns WebSocket
upgrades on, bytes 2-3 seed the split into reads, the rest is the stream. Besides "no exception",
every input is checked for:

- the same outcome (requests, bodies, whether an error ends them) in one read and in the split
  reads. The status of an error may differ (a head both too large and malformed is refused for
  whichever shows first), and a size limit may trip earlier in one than in the other: limits are
  checked at the end of each feed on the bytes read so far (raw bytes, optional whitespace
  included), or on the whole head once complete (without it); chunk extensions and trailers
  are bounded between feeds of up to 64 KiB;
- events in a valid order: Request, body bytes, END_OF_MESSAGE; at most one RequestError, last;
- nothing more once the connection has failed or switched protocols;
- bounded state: a target and a head within ``max_header_size``, at most 100 fields;
- error statuses from the documented set.

    python fuzz/fuzz_http.py -max_total_time=60 -dict=fuzz/http.dict SEED_DIR
"""

from __future__ import annotations

import random
import sys

import atheris

with atheris.instrument_imports():
    from asgisock.http11.connection import MAX_HEADER_COUNT, HTTP11Connection
    from asgisock.http11.events import END_OF_MESSAGE, Event, Request, RequestError

STATUSES = {400, 414, 417, 431, 501, 505}
ERROR = "error"
LIMIT = "a size limit"
LIMIT_ERRORS = {RequestError(400, "Chunk extension too long"), RequestError(431, "Trailer fields too large"),
                RequestError(431, "Request header fields too large"), RequestError(414, "URI too long")}


def parameters(data: bytes) -> tuple[int, bool, random.Random, bytes]:
    head = data[:4].ljust(4, b"\0")
    return 64 + head[0] * 64, bool(head[1] & 1), random.Random(int.from_bytes(head[2:4], "big")), data[4:]


def reads(stream: bytes, rng: random.Random) -> list[bytes]:
    chunks = []
    position = 0
    while position < len(stream):
        size = rng.choice((1, 2, 3, 7, 64, 1000, 70_000))
        chunks.append(stream[position : position + size])
        position += size
    return chunks


def run(chunks: list[bytes], limit: int, websocket: bool) -> list[object]:
    conn = HTTP11Connection(max_header_size=limit, websocket=websocket)
    outcome: list[object] = []
    body: bytes | None = None
    finished = False
    for chunk in chunks:
        conn.receive_data(chunk)
        events = conn.events_received()
        if finished:
            assert not events, events
        for event in events:
            body = check_event(event, body, outcome, limit)
        finished = conn.errored or conn.upgrade_data is not None
        if not conn.errored:
            assert len(conn._url) <= limit, len(conn._url)
            assert len(conn._headers) <= MAX_HEADER_COUNT
    return outcome


def check_event(event: Event, body: bytes | None, outcome: list[object], limit: int) -> bytes | None:
    assert not outcome or not isinstance(outcome[-1], str), "an event after an error"
    if isinstance(event, Request):
        assert body is None, "a request inside another"
        assert len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers) <= limit
        assert len(event.headers) <= MAX_HEADER_COUNT
        assert event.http_version in ("1.0", "1.1")
        outcome.append((event.method, event.target, tuple(event.headers), event.keep_alive, event.upgrade))
        return b""
    if isinstance(event, bytes):
        assert body is not None, "body bytes outside a request"
        return body + event
    if event is END_OF_MESSAGE:
        if body is None:
            # After a protocol switch, llhttp ends the upgrade request where its head ends.
            return None
        outcome.append(body)
        return None
    assert isinstance(event, RequestError), event
    assert event.status in STATUSES, event
    outcome.append(LIMIT if event in LIMIT_ERRORS else ERROR)
    return None


def agree(one: list[object], other: list[object]) -> bool:
    """Equal, or equal up to where a size limit tripped in one of them."""
    if [ERROR if e == LIMIT else e for e in one] == [ERROR if e == LIMIT else e for e in other]:
        return True
    for first, second in ((one, other), (other, one)):
        if LIMIT in first:
            index = first.index(LIMIT)
            if second[:index] == first[:index]:
                return True
    return False


def test_one_input(data: bytes) -> None:
    limit, websocket, rng, stream = parameters(data)
    whole = run([stream], limit, websocket)
    split = run(reads(stream, rng), limit, websocket)
    assert agree(whole, split), (whole, split)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
