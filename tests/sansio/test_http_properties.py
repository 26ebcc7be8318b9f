"""Property tests of the HTTP/1.1 request side: however a stream is split into reads, the same
requests come out, and they are the requests that were sent.

The frame codec's equivalents (round trip, arbitrary splits) live in test_ws_frames.py,
test_ws_connection.py and test_ws_deflate.py.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asgisock.http11.connection import HTTP11Connection
from asgisock.http11.events import END_OF_MESSAGE, Event, Request, RequestError

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
PCHAR = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@%"
VCHAR = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
FRAMING = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "expect", "te", "trailer"}

names = st.text(TCHAR, min_size=1, max_size=12).filter(lambda n: n.lower() not in FRAMING)
values = st.lists(st.sampled_from([*VCHAR, 0x20, 0x09]), max_size=20).map(lambda v: bytes(v).strip(b" \t"))
paths = st.lists(st.text(PCHAR.replace("%", ""), max_size=8), min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
queries = st.one_of(st.just(""), st.text(PCHAR.replace("%", "") + "/?", max_size=12).map(lambda q: "?" + q))


@dataclass(frozen=True)
class Sent:
    method: bytes
    target: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    framing: str
    """"none", "length" or "chunked"."""
    chunks: tuple[int, ...]
    """Where a chunked body is cut into chunks."""
    extension: bytes
    trailer: bool

    def encode(self) -> bytes:
        lines = [self.method + b" " + self.target + b" HTTP/1.1", b"Host: example.com"]
        lines += [name + b": " + value for name, value in self.headers]
        if self.framing == "length":
            lines.append(b"Content-Length: %d" % len(self.body))
        elif self.framing == "chunked":
            lines.append(b"Transfer-Encoding: chunked")
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        if self.framing != "chunked":
            return head + self.body
        cuts = sorted({min(c, len(self.body)) for c in self.chunks} | {0, len(self.body)})
        parts = [self.body[a:b] for a, b in itertools.pairwise(cuts) if b > a]
        chunked = b"".join(b"%x%s\r\n%s\r\n" % (len(p), self.extension, p) for p in parts)
        return head + chunked + b"0\r\n" + (b"X-Trailer: yes\r\n" if self.trailer else b"") + b"\r\n"


requests = st.builds(
    Sent,
    method=st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"QUERY"]),
    target=st.builds(lambda p, q: (p + q).encode(), paths, queries),
    headers=st.lists(st.tuples(names.map(str.encode), values), max_size=6).map(tuple),
    body=st.binary(max_size=300),
    framing=st.sampled_from(["none", "length", "chunked"]),
    chunks=st.lists(st.integers(0, 300), max_size=5).map(tuple),
    extension=st.sampled_from([b"", b";a=b", b';name="q s"']),
    trailer=st.booleans(),
).map(lambda s: s if s.framing != "none" else Sent(s.method, s.target, s.headers, b"", "none", (), b"", False))


def feed(chunks: list[bytes]) -> list[Event]:
    conn = HTTP11Connection(max_header_size=1 << 20)
    events: list[Event] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        events += conn.events_received()
    return events


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def normalise(events: list[Event]) -> list[object]:
    """Requests as comparable tuples with their whole bodies (reads split bodies differently)."""
    out: list[object] = []
    body: bytes | None = None
    for event in events:
        if isinstance(event, Request):
            out.append((event.method, event.target, event.http_version, tuple(event.headers), event.keep_alive,
                        event.expect_continue, event.upgrade))
            body = b""
        elif isinstance(event, bytes):
            assert body is not None
            body += event
        elif event is END_OF_MESSAGE:
            out.append(body)
            body = None
        else:
            assert isinstance(event, RequestError)
            out.append(event.status)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(requests, min_size=1, max_size=5), st.integers(0, 3), st.lists(st.integers(0, 10_000), max_size=12))
@example([Sent(b"POST", b"/", (), b"x" * 200, "chunked", (1, 2, 3, 100), b";a=b", True)], 1, list(range(0, 400, 3)))
def test_any_split_of_a_pipelined_stream_gives_the_requests_sent(sent: list[Sent], blank_lines: int,
                                                                  cuts: list[int]) -> None:
    data = b"".join(b"\r\n" * blank_lines + request.encode() for request in sent)
    whole = normalise(feed([data]))
    assert normalise(feed(split(data, cuts))) == whole
    expected: list[object] = []
    for request in sent:
        headers = ((b"host", b"example.com"), *((n.lower(), v) for n, v in request.headers))
        if request.framing == "length":
            headers += ((b"content-length", b"%d" % len(request.body)),)
        elif request.framing == "chunked":
            headers += ((b"transfer-encoding", b"chunked"),)
        expected += [(request.method, request.target, "1.1", headers, True, False, False), request.body]
    assert whole == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(requests, min_size=1, max_size=3), st.binary(min_size=1, max_size=40), st.integers(0, 2000),
       st.lists(st.integers(0, 10_000), max_size=8))
def test_any_split_of_a_corrupted_stream_gives_the_same_outcome(sent: list[Sent], garbage: bytes, where: int,
                                                                 cuts: list[int]) -> None:
    """Bytes overwritten anywhere: requests before the damage, then the same error or none,
    whatever the reads; never an exception."""
    data = bytearray(b"".join(request.encode() for request in sent))
    position = where % (len(data) + 1)
    data[position : position + len(garbage)] = garbage
    whole = normalise(feed([bytes(data)]))
    assert normalise(feed(split(bytes(data), cuts))) == whole
    assert normalise(feed([bytes(data[i : i + 1]) for i in range(len(data))])) == whole


large_bodies = st.builds(lambda pattern, size: (pattern * (size // len(pattern) + 1))[:size],
                         st.sampled_from([b"x", b"\r\n\r\n", b"0\r\n\r\n", bytes(range(256))]),
                         st.integers(0, 300_000))
large_requests = st.builds(
    Sent,
    method=st.sampled_from([b"GET", b"POST"]),
    target=st.just(b"/upload"),
    headers=st.just(()),
    body=large_bodies,
    framing=st.sampled_from(["none", "length", "chunked"]),
    chunks=st.lists(st.integers(0, 300_000), max_size=3).map(tuple),
    extension=st.sampled_from([b"", b";a=b"]),
    trailer=st.booleans(),
).map(lambda s: s if s.framing != "none" else Sent(s.method, s.target, s.headers, b"", "none", (), b"", False))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(large_requests, min_size=1, max_size=5), st.lists(st.integers(0, 2_000_000), max_size=6))
def test_reads_longer_than_a_slice_give_the_requests_sent(sent: list[Sent], cuts: list[int]) -> None:
    """Reads of up to megabytes are fed to llhttp in slices, a Content-Length body whole and a
    slice between requests ending at the next head: the same requests and bodies as any split."""
    data = b"".join(request.encode() for request in sent)
    whole = normalise(feed([data]))
    assert normalise(feed(split(data, cuts))) == whole
    assert [item for item in whole if isinstance(item, bytes)] == [request.body for request in sent]
