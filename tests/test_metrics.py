"""The counters of ``--metrics-port``, how snapshots add up, and their exposition: every family
named, typed and labelled as ``docs/howto/metrics.md`` says, in a format Prometheus parses."""

from __future__ import annotations

import json
import re
import time
from bisect import bisect_left
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from asgisock.exposition import STATUS_CLASSES, SnapshotCollector
from asgisock.metrics import (
    BUCKETS,
    CLASSES,
    DURATION_BOUNDS,
    REJECT_STATUSES,
    Metrics,
    Snapshot,
    add,
    empty_snapshot,
    total,
    zero_counters,
)
from tests.scrape import Figures

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "howto" / "metrics.md"


def test_a_response_is_counted_by_method_status_class_and_duration() -> None:
    metrics = Metrics()
    metrics.response("GET", 200, time.monotonic())
    metrics.response("GET", 404, time.monotonic() - 100)  # over a minute: above the last bound
    metrics.response("POST", 0, time.monotonic())
    get, post = metrics.responses["GET"], metrics.responses["POST"]
    assert len(get) == CLASSES * BUCKETS
    assert sum(get[2 * BUCKETS:3 * BUCKETS - 1]) == 1  # 2xx, within a minute
    assert get[5 * BUCKETS - 1] == 1  # 4xx, its last bucket
    assert sum(get) == 2
    assert sum(post[:BUCKETS - 1]) == 1 and sum(post) == 1  # no status: the first class
    assert 100 <= metrics.duration_sum < 100 + 60


def test_a_bound_belongs_to_its_bucket() -> None:
    """Prometheus buckets are "less than or equal": a duration on a bound counts in it."""
    assert [bisect_left(DURATION_BOUNDS, bound) for bound in DURATION_BOUNDS] == list(range(len(DURATION_BOUNDS)))
    assert bisect_left(DURATION_BOUNDS, DURATION_BOUNDS[-1] + 1) == BUCKETS - 1


def test_each_bucket_counts_the_durations_inside_it() -> None:
    """The first bucket is found by a comparison, the others by a search: a duration in the
    middle of each bucket lands in that bucket."""
    lows = (0.0, *DURATION_BOUNDS)
    highs = (*DURATION_BOUNDS, DURATION_BOUNDS[-1] * 2)
    for bucket, (low, high) in enumerate(zip(lows, highs, strict=True)):
        metrics = Metrics()
        metrics.response("GET", 200, time.monotonic() - (low + high) / 2)
        counts = metrics.responses["GET"][2 * BUCKETS:3 * BUCKETS]
        assert counts.index(1) == bucket, (low, high, counts)


def test_a_snapshot_holds_plain_data_and_every_reason() -> None:
    metrics = Metrics()
    metrics.reject(431)
    metrics.reject(505)
    snapshot = metrics.snapshot(requests_in_flight=1, http_connections=2, websocket_connections=3)
    assert snapshot["counters"]["rejected"] == {**{str(status): 0 for status in REJECT_STATUSES}, "431": 1, "505": 1}
    assert snapshot["gauges"]["http_connections"] == 2
    assert snapshot["counters"]["cpu_seconds"] > 0
    assert snapshot["gauges"]["resident_bytes"] > 0
    assert json.loads(json.dumps(snapshot)) == snapshot  # what crosses the link


def counters() -> st.SearchStrategy[Any]:
    count = st.integers(min_value=0, max_value=10**6)
    return st.fixed_dictionaries({
        "requests": st.dictionaries(st.sampled_from(["GET", "POST", "HEAD"]),
                                    st.lists(count, min_size=CLASSES * BUCKETS, max_size=CLASSES * BUCKETS)),
        "duration_sum": st.floats(min_value=0, max_value=10**6),
        "rejected": st.dictionaries(st.sampled_from(["400", "408", "426", "503"]), count),
        "keepalive_timeouts": st.fixed_dictionaries({"http": count, "websocket": count}),
        "websocket_messages": st.fixed_dictionaries({"received": count, "sent": count}),
        "websocket_bytes": st.fixed_dictionaries({"received": count, "sent": count}),
        "cpu_seconds": st.floats(min_value=0, max_value=10**6),
    })


def as_snapshot(counters: Any) -> Snapshot:
    return {"counters": counters, "gauges": {"requests_in_flight": 1, "http_connections": 1,
                                             "websocket_connections": 1, "resident_bytes": 1}}


def flat(counters: Any) -> dict[str, float]:
    """Every number of a snapshot's counters, by its path."""
    if isinstance(counters, dict):
        return {f"{key}/{path}": value for key, item in counters.items() for path, value in flat(item).items()}
    if isinstance(counters, list):
        return {f"{index}/": value for index, value in enumerate(counters)}
    return {"": counters}


@given(st.lists(counters(), min_size=1, max_size=4), st.data())
def test_a_worker_that_retires_takes_nothing_away(workers: list[Any], data: st.DataObject) -> None:
    """What the supervisor does when a worker goes: its last counters move into the retired
    ones. The sum is the same, and no figure is below what any one worker counted."""
    gone = data.draw(st.integers(min_value=0, max_value=len(workers) - 1))
    live = [as_snapshot(counters) for counters in workers]
    before = total(live)
    retired = add(zero_counters(), workers[gone])
    after = total(live[:gone] + live[gone + 1:], retired)
    assert flat(after["counters"]).keys() == flat(before["counters"]).keys()
    for path, value in flat(before["counters"]).items():
        assert abs(flat(after["counters"])[path] - value) <= 1e-6 * max(1.0, value), path
    for counters in workers:
        for path, value in flat(counters).items():
            assert flat(before["counters"])[path] >= value - 1e-6 * max(1.0, value)
    assert after["gauges"]["http_connections"] == len(workers) - 1  # only the live ones


def test_nothing_live_and_nothing_retired_is_all_zeros() -> None:
    figures = total([])
    assert figures["counters"] == zero_counters()
    assert set(figures["gauges"].values()) == {0}


def exposition(snapshot: Snapshot) -> Figures:
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(lambda: snapshot))
    return Figures(generate_latest(registry).decode())


def test_the_exposition_sums_the_classes_and_the_histogram() -> None:
    metrics = Metrics()
    for status in (200, 201, 404, 500, 0):
        metrics.response("GET", status, time.monotonic())
    metrics.response("POST", 200, time.monotonic() - 100)
    figures = exposition(metrics.snapshot(requests_in_flight=0, http_connections=0, websocket_connections=0))
    assert figures.labelled("asgisock_http_requests_total") == {
        frozenset({("method", "GET"), ("status", status)}): count
        for status, count in (("2xx", 2), ("4xx", 1), ("5xx", 1), ("none", 1))
    } | {frozenset({("method", "POST"), ("status", "2xx")}): 1}
    assert figures("asgisock_http_request_duration_seconds_bucket", le="0.0005") <= 5
    assert figures("asgisock_http_request_duration_seconds_bucket", le="60.0") == 5
    assert figures("asgisock_http_request_duration_seconds_bucket", le="+Inf") == 6
    assert figures("asgisock_http_request_duration_seconds_count") == 6


def documented() -> dict[str, tuple[str, list[str]]]:
    """The guide's table: each metric's name, its type and its labels."""
    rows = re.findall(r"^\| `(asgisock_\w+|process_\w+)` \| (\w+) \|([^|]*)\|", GUIDE.read_text(), re.M)
    return {name: (kind, re.findall(r"`(\w+)`", labels)) for name, kind, labels in rows}


def test_the_guide_documents_every_metric_with_its_type_and_labels() -> None:
    metrics = Metrics()
    metrics.response("GET", 200, time.monotonic())
    metrics.reject(400)
    figures = exposition(metrics.snapshot(requests_in_flight=0, http_connections=0, websocket_connections=0))
    guide = documented()
    assert {name: guide[name][0] for name in guide if name.startswith("asgisock_")} == {
        name + ("_total" if kind == "counter" else ""): kind for name, kind in figures.types.items()}
    for (sample, labels), _ in figures.samples.items():
        family = sample if sample in guide else next(
            name for name, (kind, _) in guide.items() if kind == "histogram" and sample.startswith(name + "_"))
        assert {label for label, _ in labels} - {"le"} == set(guide[family][1]), sample
    assert set(STATUS_CLASSES) <= set(re.findall(r"`(none|\dxx)`", GUIDE.read_text()))


def test_an_empty_snapshot_is_a_worker_still_starting() -> None:
    snapshot = empty_snapshot()
    assert snapshot["counters"]["requests"] == {}
    figures = exposition(snapshot)
    assert figures.total("asgisock_http_requests_total") == 0
    assert figures("asgisock_http_request_duration_seconds_count") == 0
