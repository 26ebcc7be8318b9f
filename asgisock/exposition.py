"""``--metrics-port``: the Prometheus text format, on a listener of its own.

The figures are read from a :data:`~asgisock.metrics.Snapshot` at scrape time and turned
into metric families by a custom collector, so that ``prometheus_client`` writes the format
(and answers OpenMetrics and gzip when asked) without its counters ever being touched on the
server's hot paths. Its process collector adds the standard ``process_*`` metrics of the
process that serves the endpoint: the server, or with ``--workers`` the supervisor, whose
snapshot is the sum over its workers.

The listener is ``prometheus_client``'s own: a small threaded WSGI server in a daemon thread,
off the server's event loop and the supervisor's ``select()`` alike.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

from asgisock.exceptions import ConfigError
from asgisock.metrics import BUCKETS, DURATION_BOUNDS, Snapshot

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.metrics_core import Metric

NAMESPACE: Final = "asgisock"
METRICS_PATH: Final = "/metrics"
STATUS_CLASSES: Final = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")
"""The ``status`` label's values, in the order of :data:`asgisock.metrics.CLASSES`; ``none``:
the request ended (the client left, the drain cut it) before a response started."""


def families(snapshot: Snapshot) -> Iterator[Metric]:
    """The metric families of one snapshot: every name, type and label documented in
    ``docs/howto/metrics.md``."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    counters, gauges = snapshot["counters"], snapshot["gauges"]
    requests = CounterMetricFamily(f"{NAMESPACE}_http_requests", "HTTP requests answered by the app, by "
                                   "method and status class ('none': the client left, or the drain cut "
                                   "the request, before a response started).", labels=["method", "status"])
    durations = [0] * BUCKETS
    for method, counts in sorted(counters["requests"].items()):
        for index, status in enumerate(STATUS_CLASSES):
            by_duration = counts[index * BUCKETS:(index + 1) * BUCKETS]
            if any(by_duration):
                requests.add_metric([method, status], sum(by_duration))
                durations = [a + b for a, b in zip(durations, by_duration, strict=True)]
    yield requests
    yield _duration_histogram(durations, counters["duration_sum"])
    yield GaugeMetricFamily(f"{NAMESPACE}_http_requests_in_flight", "HTTP requests read and not yet "
                            "completely answered.", value=gauges["requests_in_flight"])
    yield GaugeMetricFamily(f"{NAMESPACE}_http_connections", "Open HTTP connections, idle keep-alive "
                            "ones included.", value=gauges["http_connections"])
    yield GaugeMetricFamily(f"{NAMESPACE}_websocket_connections", "Open WebSocket connections.",
                            value=gauges["websocket_connections"])
    yield _labelled(CounterMetricFamily(f"{NAMESPACE}_websocket_messages", "WebSocket messages received "
                                        "from clients and sent by the app.", labels=["direction"]),
                    counters["websocket_messages"])
    yield _labelled(CounterMetricFamily(f"{NAMESPACE}_websocket_bytes", "Bytes of WebSocket frames read "
                                        "from and written to the sockets, after the opening handshake.",
                                        labels=["direction"]), counters["websocket_bytes"])
    yield _labelled(CounterMetricFamily(f"{NAMESPACE}_http_requests_rejected", "Requests the server "
                                        "refused itself, by the status it answered with (408: also a head "
                                        "or body that stalled, closed without an answer).", labels=["reason"]),
                    dict(sorted(counters["rejected"].items(), key=lambda item: int(item[0]))))
    yield _labelled(CounterMetricFamily(f"{NAMESPACE}_keepalive_timeouts", "Idle connections closed: "
                                        "HTTP ones after --timeout-keep-alive, WebSockets whose ping got no "
                                        "pong within --ws-ping-timeout.", labels=["protocol"]),
                    counters["keepalive_timeouts"])
    yield CounterMetricFamily(f"{NAMESPACE}_process_cpu_seconds", "CPU time of the processes that serve "
                              "(every worker, those gone included, with --workers).", value=counters["cpu_seconds"])
    yield GaugeMetricFamily(f"{NAMESPACE}_process_resident_memory_bytes", "Resident memory of the "
                            "processes that serve (every worker, with --workers).", value=gauges["resident_bytes"])


def _labelled(family: Any, values: dict[str, int]) -> Metric:
    for label, value in values.items():
        family.add_metric([label], value)
    metric: Metric = family
    return metric


def _duration_histogram(durations: list[int], duration_sum: float) -> Metric:
    from prometheus_client.core import HistogramMetricFamily

    buckets: list[tuple[str, float]] = []
    cumulative = 0
    for bound, count in zip([*map(repr, DURATION_BOUNDS), "+Inf"], durations, strict=True):
        cumulative += count
        buckets.append((bound, cumulative))
    return HistogramMetricFamily(f"{NAMESPACE}_http_request_duration_seconds", "Time from a request's "
                                 "head being read to its response being complete (or the request ending "
                                 "without one).", buckets=buckets, sum_value=duration_sum)


class SnapshotCollector:
    """A ``prometheus_client`` collector that takes a snapshot at each scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        return families(self.snapshot())


def require_client() -> None:
    """ConfigError, naming the option, unless prometheus_client can be imported."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ConfigError("--metrics-port", "needs prometheus_client: pip install 'asgisock[metrics]'") from None


class MetricsListener:
    """The metrics endpoint: ``prometheus_client``'s WSGI server in a daemon thread, until
    :meth:`close`. OSError when the port cannot be bound."""

    def __init__(self, host: str, port: int, snapshot: Callable[[], Snapshot]) -> None:
        require_client()
        from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

        registry = CollectorRegistry()
        registry.register(SnapshotCollector(snapshot))
        ProcessCollector(registry=registry)
        self.server: WSGIServer
        self.thread: threading.Thread
        self.server, self.thread = start_http_server(port, addr=host, registry=registry)
        self.thread.name = "asgisock-metrics"

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{f'[{name}]' if ':' in name else name}:{port}{METRICS_PATH}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
