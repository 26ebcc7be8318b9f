"""``--metrics-port`` end to end, in real processes: one server, and two workers whose figures
the supervisor sums, through a rolling restart and a worker killed outright."""

from __future__ import annotations

import os
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from tests.integration.test_supervisor import (
    get,
    kill_workers,
    pid_of,
    served_by,
    stop,
    wait_serving,
)
from tests.processes import LIFESPAN_AND_ECHO, Cli, Launcher
from tests.scrape import Figures, scrape, wait_for
from tests.support import timeout

APP_SOURCE = '''
import os


def say(text):
    os.write(1, f"{text}\\n".encode())


say(f"imported in {os.getpid()}")


async def app(scope, receive, send):
''' + LIFESPAN_AND_ECHO + '''    await receive()
    status = int(scope["path"].rpartition("/")[2]) if scope["path"].startswith("/status/") else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
'''

METRICS = re.compile(r"Metrics on (http://\S+/metrics)")
REQUESTS = "asgisock_http_requests_total"


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    (tmp_path / "mtapp.py").write_text(APP_SOURCE)
    launcher = Launcher(tmp_path)
    yield launcher
    for cli in launcher.started:
        kill_workers(cli)
        cli.stop()


def metrics_url(cli: Cli) -> str:
    match = METRICS.search(cli.stderr.wait_for("Metrics on "))
    assert match is not None
    return match.group(1)


def assert_no_counter_went_back(before: Figures, after: Figures) -> None:
    """Every counter, and every histogram series, at least what it was."""
    for (name, labels), value in before.samples.items():
        if name.startswith("asgisock_") and name.endswith(("_total", "_bucket", "_count", "_sum")):
            assert after.samples.get((name, labels), 0.0) >= value, (name, dict(labels))


def test_one_process(launch: Launcher, loop: str) -> None:
    cli = launch("mtapp:app", "--port", "0", "--metrics-port", "0", "--loop", loop)
    url = metrics_url(cli)
    for path in ("/", "/status/404", "/status/503"):
        get(cli.port, path)
    figures = wait_for(url, lambda figures: figures.total(REQUESTS) == 3)
    assert figures(REQUESTS, method="GET", status="5xx") == 1
    assert figures("asgisock_process_cpu_seconds_total") > 0
    assert httpx.get(url.removesuffix("/metrics") + "/", timeout=timeout(5)).status_code == 200  # any path
    stop(cli)
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=timeout(5))


def test_two_workers_are_summed_and_a_rolling_restart_takes_nothing_away(launch: Launcher, loop: str) -> None:
    cli = launch("mtapp:app", "--port", "0", "--workers", "2", "--reuse-port", "--metrics-port", "0",
                 "--no-access-log", "--loop", loop)
    url = metrics_url(cli)
    port = cli.port
    old = set(wait_serving(cli, 2))
    served = {pid_of(port) for _ in range(40)}  # each on a new connection, which the kernel spreads
    assert served == old  # so both workers counted some
    with ws_connect(f"ws://127.0.0.1:{port}/ws", open_timeout=timeout(5)) as ws:
        for text in ("a", "b", "c"):
            ws.send(text)
            assert ws.recv(timeout(5)) == text
        before = wait_for(url, lambda figures: figures.total(REQUESTS) == 40
                          and figures("asgisock_websocket_messages_total", direction="sent") == 3)
        assert before("asgisock_websocket_connections") == 1
        assert before(REQUESTS, method="GET", status="2xx") == 40
        assert before("asgisock_process_resident_memory_bytes") > 2 * 10 * 2**20  # two workers' worth
        cli.send_signal(signal.SIGHUP)
        cli.stderr.wait_for("Restart done: every worker replaced", seconds=20)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout(10))
    for pid in old:
        cli.stderr.wait_for(f"Worker [{pid}] stopped (exit code 0)")
    after = scrape(url)
    assert_no_counter_went_back(before, after)
    # What the old workers counted to the end of their drain was handed over as they stopped.
    assert after.total(REQUESTS) == 40
    assert after("asgisock_websocket_messages_total", direction="received") == 3
    assert after("asgisock_websocket_connections") == 0  # gauges are the live workers' only
    assert after("asgisock_process_cpu_seconds_total") > before("asgisock_process_cpu_seconds_total")
    new = set(served_by(cli)) - old
    assert {pid_of(port) for _ in range(20)} == new
    later = wait_for(url, lambda figures: figures.total(REQUESTS) == 60)
    assert_no_counter_went_back(after, later)
    stop(cli)


def test_a_worker_killed_outright_keeps_what_was_scraped(launch: Launcher) -> None:
    cli = launch("mtapp:app", "--port", "0", "--workers", "1", "--metrics-port", "0", "--no-access-log")
    url = metrics_url(cli)
    [first] = wait_serving(cli, 1)
    for _ in range(10):
        get(cli.port)
    before = wait_for(url, lambda figures: figures.total(REQUESTS) == 10)
    os.kill(first, signal.SIGKILL)
    cli.stderr.wait_for(f"Worker [{first}] died (killed by signal SIGKILL)")
    wait_serving(cli, 2)
    after = scrape(url)
    assert_no_counter_went_back(before, after)
    assert after.total(REQUESTS) == 10  # kept from the figures it last sent
    get(cli.port)
    wait_for(url, lambda figures: figures.total(REQUESTS) == 11)
    stop(cli)


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]])
def test_without_prometheus_client_the_setting_is_refused(launch: Launcher, tmp_path: Path,
                                                          workers: list[str]) -> None:
    stub = tmp_path / "stub" / "prometheus_client"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('raise ImportError("not installed")\n')
    path = os.pathsep.join([str(stub.parent), *filter(None, [os.environ.get("PYTHONPATH")])])
    cli = launch("mtapp:app", "--port", "0", "--metrics-port", "0", *workers, env={"PYTHONPATH": path})
    assert cli.wait() == 2
    assert ("Error: Invalid value for '--metrics-port': needs prometheus_client: "
            "pip install 'asgisock[metrics]'") in cli.stderr.text
    assert not any(line.startswith("imported in") for line in cli.stdout.lines)  # checked first


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]])
def test_a_metrics_port_in_use_stops_the_server(launch: Launcher, workers: list[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cli = launch("mtapp:app", "--port", "0", "--metrics-port", str(port), *workers)
        assert cli.wait(seconds=20) == 1
    assert f"Cannot serve metrics on 127.0.0.1 port {port}: " in cli.stderr.text
    assert "asgisock running on" not in cli.stderr.text
