"""The server's own figures for ``--metrics-port``: counted where each event happens, read at
scrape time.

Counting is plain arithmetic on one :class:`Metrics` per process. A response costs one call,
into C (``asgisock._metrics``, with :class:`PythonResponses` as its fallback): a dictionary
look-up, the clock, an increment and a float addition. A WebSocket message costs two
increments in the transport. Nothing on these paths takes a lock or looks up a label, as a
``prometheus_client`` ``Counter.inc()`` would, and nothing is counted at all when the setting
is off. What can be read from the live connections instead (how many are open, how many
requests are in flight) is not counted: the transport reads it when asked.

A :data:`Snapshot` is the figures at one moment, as plain JSON-able data, so that a worker can
hand its own to the supervisor over the link, and snapshots add up (:func:`add`): the counters
of every worker, and of the workers gone, sum to the server's counters, which therefore never
go backwards while the supervisor runs. Gauges describe the live processes only.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from itertools import pairwise
from time import monotonic
from typing import Any, Final, Literal, Protocol, TypedDict

from asgisock.implementations import Implementation, choose

DURATION_BOUNDS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                          1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""The upper bounds, in seconds, of the request duration histogram's buckets (then +Inf):
prometheus_client's defaults, with three below 5 ms, where a fast app's responses fall, and
two above 10 s for long polls and slow uploads."""
REJECT_STATUSES: Final = (400, 408, 413, 414, 431, 503)
"""The reasons a request is refused before the app answers it, always exported (as 0 until
one happens) so that a rate over them starts at once; any other status the server refuses
with (417, 426, 501, 505) is exported from the first time it is."""
STATUSES: Final = 600
"""Statuses are counted in lists this long, indexed by the status (0: no response started)."""
BUCKETS: Final = len(DURATION_BOUNDS) + 1
CLASSES: Final = 6
"""Status classes: none (the request ended before a response started), then 1xx to 5xx."""


class Counters(TypedDict):
    """What only grows while a process lives; summed over the workers, and kept for those gone."""

    requests: dict[str, list[int]]
    """For each method, the requests of each status class (none, 1xx ... 5xx) that took the
    time of each bucket of :data:`DURATION_BOUNDS` or more (not cumulative): the counter by
    method and class and the histogram are sums of these."""
    duration_sum: float
    rejected: dict[str, int]
    """By the status the server answered with itself."""
    keepalive_timeouts: dict[str, int]
    """``http``: idle keep-alive connections closed; ``websocket``: pings without a pong."""
    websocket_messages: dict[str, int]
    """``received`` from and ``sent`` to clients."""
    websocket_bytes: dict[str, int]
    cpu_seconds: float


class Gauges(TypedDict):
    """What the live processes hold now."""

    requests_in_flight: int
    http_connections: int
    websocket_connections: int
    resident_bytes: int


class Snapshot(TypedDict):
    counters: Counters
    gauges: Gauges


class ResponseCounts(Protocol):
    """What :class:`Metrics` counts responses with: :class:`PythonResponses`, or its C twin."""

    @property
    def duration_sum(self) -> float: ...
    def add(self, method: str, status: int, duration: float, /) -> None: ...
    def response(self, method: str, status: int, started: float, /) -> None: ...
    def by_method(self) -> dict[str, list[int]]: ...


class PythonResponses:
    """Requests counted by method, status class and duration bucket (the upper bounds
    ``bounds``, then +Inf), and the sum of their durations: the pure-Python twin of
    ``asgisock._metrics.Responses``, with the same methods and the same results."""

    __slots__ = ("bounds", "buckets", "counts", "duration_sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(float(bound) for bound in bounds)
        if any(low >= high for low, high in pairwise(self.bounds)):
            raise ValueError("bounds must increase")
        self.buckets = len(self.bounds) + 1
        self.counts: dict[str, list[int]] = {}
        self.duration_sum = 0.0

    def add(self, method: str, status: int, duration: float) -> None:
        """Count one request of ``method`` answered with ``status`` (0: no response started)
        that took ``duration`` seconds."""
        if not 0 <= status < STATUSES:
            raise ValueError(f"status {status} is not in 0..{STATUSES - 1}")
        # The first bound at or above the duration: Prometheus buckets are "less or equal".
        bucket = bisect_left(self.bounds, duration)
        try:
            counts = self.counts[method]
        except KeyError:
            counts = self.counts[method] = [0] * (CLASSES * self.buckets)
        counts[status // 100 * self.buckets + bucket] += 1
        self.duration_sum += duration

    def response(self, method: str, status: int, started: float) -> None:
        """:meth:`add` with the time since ``started``, a ``time.monotonic()`` value."""
        self.add(method, status, monotonic() - started)

    def by_method(self) -> dict[str, list[int]]:
        """A copy of the counts: for each method, by status class, then by bucket."""
        return {method: list(counts) for method, counts in list(self.counts.items())}


ResponsesType = Callable[[Sequence[float]], ResponseCounts]

CResponses: ResponsesType | None
try:
    from asgisock._metrics import Responses as CResponses
except ImportError:  # not built for this interpreter
    CResponses = None


def select(implementation: Implementation | Literal["auto"]) -> Implementation:
    """Make ``implementation`` the counting that :class:`Metrics` created from now on use, and
    return its name: "auto" is the C one if it is built, else the pure-Python one; asking for
    "c" where it is not built raises ImportError. Chosen with the masking, by
    ``asgisock.extensions``."""
    global Responses, RESPONSES_IMPLEMENTATION
    Responses, RESPONSES_IMPLEMENTATION = choose(implementation, CResponses, PythonResponses, "asgisock._metrics")
    return RESPONSES_IMPLEMENTATION


Responses: ResponsesType
RESPONSES_IMPLEMENTATION: Implementation
select("auto")


class Metrics:
    """The counters of one server process; the transport counts into them directly."""

    __slots__ = ("http_keepalive_timeouts", "rejected", "response", "responses", "ws_bytes_in",
                 "ws_bytes_out", "ws_keepalive_timeouts", "ws_messages_in", "ws_messages_out")

    def __init__(self) -> None:
        self.responses: ResponseCounts = Responses(DURATION_BOUNDS)
        """For each method, requests by status class and duration bucket: one count per request
        serves both the counter and the histogram."""
        self.response: Callable[[str, int, float], None] = self.responses.response
        """``response(method, status, started)``: one request is over, its response complete or
        the client gone (``status`` 0 when no response had started); ``started`` is its
        ``time.monotonic()`` when it was read. The counting's own method, so that a response
        costs one call."""
        self.rejected = [0] * STATUSES
        self.http_keepalive_timeouts = 0
        self.ws_keepalive_timeouts = 0
        self.ws_messages_in = 0
        self.ws_messages_out = 0
        self.ws_bytes_in = 0
        self.ws_bytes_out = 0

    def reject(self, status: int) -> None:
        """The server refused a request itself with ``status`` (or, for a 408, closed on it)."""
        self.rejected[status] += 1

    def snapshot(self, *, requests_in_flight: int, http_connections: int, websocket_connections: int) -> Snapshot:
        """The figures now, with the gauges the transport read from its connections."""
        responses = self.responses.by_method()
        rejected = _nonzero(self.rejected)
        for status in REJECT_STATUSES:
            rejected.setdefault(str(status), 0)
        return {
            "counters": {
                "requests": responses,
                "duration_sum": self.responses.duration_sum,
                "rejected": rejected,
                "keepalive_timeouts": {"http": self.http_keepalive_timeouts,
                                       "websocket": self.ws_keepalive_timeouts},
                "websocket_messages": {"received": self.ws_messages_in, "sent": self.ws_messages_out},
                "websocket_bytes": {"received": self.ws_bytes_in, "sent": self.ws_bytes_out},
                "cpu_seconds": time.process_time(),
            },
            "gauges": {
                "requests_in_flight": requests_in_flight,
                "http_connections": http_connections,
                "websocket_connections": websocket_connections,
                "resident_bytes": resident_bytes(),
            },
        }


def _nonzero(counts: list[int]) -> dict[str, int]:
    return {str(index): count for index, count in enumerate(counts) if count}


def empty_snapshot() -> Snapshot:
    """The figures of a process that counts nothing yet (a worker still loading the app): its
    CPU time and memory."""
    return Metrics().snapshot(requests_in_flight=0, http_connections=0, websocket_connections=0)


def resident_bytes() -> int:
    """This process's resident memory (Linux: from ``/proc``; elsewhere 0, unknown)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def add(one: Any, other: Any) -> Any:
    """Two snapshots (or parts of them) summed: numbers added, lists element by element,
    mappings key by key (a key on one side only keeps its value)."""
    if isinstance(one, dict):
        return {key: add(one[key], other[key]) if key in one and key in other else one.get(key, other.get(key))
                for key in {**one, **other}}
    if isinstance(one, list):
        return [a + b for a, b in zip(one, other, strict=True)]
    return one + other


def zero_counters() -> Counters:
    return {"requests": {}, "duration_sum": 0.0,
            "rejected": {}, "keepalive_timeouts": {"http": 0, "websocket": 0},
            "websocket_messages": {"received": 0, "sent": 0}, "websocket_bytes": {"received": 0, "sent": 0},
            "cpu_seconds": 0.0}


def total(snapshots: Iterable[Snapshot], retired: Counters | None = None) -> Snapshot:
    """The server's figures: the live processes' snapshots summed, plus the counters of the
    processes gone (``retired``), so that a worker replaced takes nothing away."""
    counters: Any = retired if retired is not None else zero_counters()
    gauges: Any = {"requests_in_flight": 0, "http_connections": 0, "websocket_connections": 0,
                   "resident_bytes": 0}
    for snapshot in snapshots:
        counters = add(counters, snapshot["counters"])
        gauges = add(gauges, snapshot["gauges"])
    return {"counters": counters, "gauges": gauges}
