"""The counters of ``--metrics-port``, how snapshots add up, and their exposition: every family
named, typed and labelled as ``docs/howto/metrics.md`` says, in a format Prometheus parses."""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from asgisock import metrics
from asgisock.exposition import STATUS_CLASSES, SnapshotCollector
from asgisock.extensions import extensions_disabled
from asgisock.metrics import (
    BUCKETS,
    CLASSES,
    DURATION_BOUNDS,
    REJECT_STATUSES,
    CResponses,
    Metrics,
    PythonResponses,
    Snapshot,
    add,
    empty_snapshot,
    total,
    zero_counters,
)
from tests.scrape import Figures

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "howto" / "metrics.md"


IMPLEMENTATIONS = [pytest.param(PythonResponses, id="python"),
                   pytest.param(CResponses, id="c", marks=pytest.mark.skipif(CResponses is None,
                                                                             reason="asgisock._metrics is not built"))]


@pytest.fixture(params=IMPLEMENTATIONS)
def responses(request: pytest.FixtureRequest) -> Any:
    return request.param(DURATION_BOUNDS)


def test_a_response_is_counted_by_method_status_class_and_duration(responses: Any) -> None:
    responses.response("GET", 200, time.monotonic())
    responses.response("GET", 404, time.monotonic() - 100)  # over a minute: above the last bound
    responses.response("POST", 0, time.monotonic())
    counts = responses.by_method()
    get, post = counts["GET"], counts["POST"]
    assert len(get) == CLASSES * BUCKETS
    assert sum(get[2 * BUCKETS:3 * BUCKETS - 1]) == 1  # 2xx, within a minute
    assert get[5 * BUCKETS - 1] == 1  # 4xx, its last bucket
    assert sum(get) == 2
    assert sum(post[:BUCKETS - 1]) == 1 and sum(post) == 1  # no status: the first class
    assert 100 <= responses.duration_sum < 100 + 60


def test_a_bound_belongs_to_its_bucket(responses: Any) -> None:
    """Prometheus buckets are "less than or equal": a duration on a bound counts in it."""
    for bound in (*DURATION_BOUNDS, DURATION_BOUNDS[-1] + 1):
        responses.add("GET", 200, bound)
    assert responses.by_method()["GET"][2 * BUCKETS:3 * BUCKETS] == [1] * BUCKETS


def test_each_bucket_counts_the_durations_inside_it(responses: Any) -> None:
    """A duration in the middle of each bucket lands in that bucket."""
    lows = (0.0, *DURATION_BOUNDS)
    highs = (*DURATION_BOUNDS, DURATION_BOUNDS[-1] * 2)
    for bucket, (low, high) in enumerate(zip(lows, highs, strict=True)):
        responses.add("GET", 200, (low + high) / 2)
        counts = responses.by_method()["GET"][2 * BUCKETS:3 * BUCKETS]
        assert counts[bucket] == 1 and sum(counts) == bucket + 1, (low, high, counts)


def test_the_metrics_count_with_the_selected_implementation() -> None:
    """What ``.ci/run`` relies on: under ASGISOCK_NO_EXTENSIONS=1 the fallback counts."""
    expected = "python" if extensions_disabled(os.environ) or CResponses is None else "c"
    assert expected == metrics.RESPONSES_IMPLEMENTATION
    counting = Metrics()
    chosen: Any = PythonResponses if expected == "python" else CResponses
    assert type(counting.responses) is chosen
    counting.response("GET", 204, time.monotonic())
    assert sum(counting.snapshot(requests_in_flight=0, http_connections=0,
                                 websocket_connections=0)["counters"]["requests"]["GET"]) == 1


@pytest.mark.skipif(CResponses is None, reason="asgisock._metrics is not built")
def test_either_implementation_can_be_selected() -> None:
    try:
        assert metrics.select("python") == "python" and type(Metrics().responses) is PythonResponses
        assert metrics.select("c") == "c" and type(Metrics().responses) is CResponses
    finally:
        metrics.select("python" if extensions_disabled(os.environ) else "auto")


DURATIONS = st.one_of(st.floats(allow_nan=False), st.sampled_from(DURATION_BOUNDS),
                      st.floats(min_value=0, max_value=70))
METHODS = st.sampled_from(["GET", "POST", "HEAD", "PROPFIND", "M-SEARCH"])


@pytest.mark.skipif(CResponses is None, reason="asgisock._metrics is not built")
@given(st.lists(st.tuples(METHODS, st.integers(min_value=0, max_value=599), DURATIONS), max_size=40),
       st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), min_size=0, max_size=8, unique=True))
def test_the_c_counting_gives_what_the_python_one_gives(requests: list[tuple[str, int, float]],
                                                        bounds: list[float]) -> None:
    """Any requests, counted with the server's bounds and with any others: the same counts, in
    the same buckets, and the same sum to the last bit (the additions happen in the same order)."""
    assert CResponses is not None
    for chosen in (DURATION_BOUNDS, tuple(sorted(bounds))):
        python, c = PythonResponses(chosen), CResponses(chosen)
        for method, status, duration in requests:
            python.add(method, status, duration)
            c.add(method, status, duration)
        assert c.by_method() == python.by_method()
        assert c.duration_sum == python.duration_sum or (math.isnan(c.duration_sum)
                                                         and math.isnan(python.duration_sum))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_what_cannot_be_counted_is_refused(implementation: Any) -> None:
    responses = implementation(DURATION_BOUNDS)
    for status in (-1, 600, 10**30):
        with pytest.raises((ValueError, OverflowError)):
            responses.add("GET", status, 0.1)
    with pytest.raises(ValueError, match="increase"):
        implementation((1.0, 1.0))
    with pytest.raises(TypeError):
        responses.add("GET", 200, "slow")
    assert responses.by_method() == {} and responses.duration_sum == 0


@pytest.mark.skipif(CResponses is None, reason="asgisock._metrics is not built")
def test_the_c_counting_checks_its_own_limits() -> None:
    c_type: Any = CResponses
    with pytest.raises(ValueError, match="at most"):
        c_type([float(bound) for bound in range(1, 100)])
    with pytest.raises(TypeError):
        c_type(DURATION_BOUNDS).add("GET", 200)
    uninitialised = c_type.__new__(c_type)
    with pytest.raises(RuntimeError):
        uninitialised.add("GET", 200, 0.1)
    with pytest.raises(RuntimeError):
        uninitialised.by_method()


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
