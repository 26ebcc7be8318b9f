"""``--workers N``: the supervisor, end to end, with real worker processes, signals and sockets."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from tests.processes import Cli, Launcher, read_until_closed
from tests.support import timeout

APP_SOURCE = '''
import asyncio
import json
import os
import time

def say(text):
    os.write(1, f"{text}\\n".encode())  # one write: the workers share the pipe


say(f"imported in {os.getpid()}")
MODE = os.environ.get("SVAPP_MODE", "")
BALLAST = []


async def lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if MODE == "slow-start":
                time.sleep(float(os.environ["SVAPP_SLOW"]))  # blocks the event loop
            if MODE == "fail-start":
                await send({"type": "lifespan.startup.failed", "message": "no database"})
                return
            await send({"type": "lifespan.startup.complete"})
            if MODE == "crash":
                asyncio.get_running_loop().call_later(0.2, os._exit, 7)
        else:
            say("lifespan shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def websocket(receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            say(f"ws disconnect {message['code']}")
            return
        await send({"type": "websocket.send", "text": str(os.getpid())})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    if scope["type"] == "websocket":
        return await websocket(receive, send)
    body = str(os.getpid()).encode()
    if scope["path"] == "/block":
        time.sleep(600)
    elif scope["path"] == "/slow":
        say("slow started")
        while (await receive()).get("more_body"):
            pass
    elif scope["path"] == "/hang":
        say("hang started")
        await asyncio.get_running_loop().create_future()
    elif scope["path"] == "/grow":
        BALLAST.append(bytearray(os.urandom(1024)) * (160 * 1024))  # 160 MiB, touched
    elif scope["path"] == "/client":
        body = json.dumps([scope["client"], scope["scheme"]]).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
'''

SERVING = re.compile(r"Worker \[(\d+)\] serving")


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    (tmp_path / "svapp.py").write_text(APP_SOURCE)
    launcher = Launcher(tmp_path)
    yield launcher
    for cli in launcher.started:
        kill_workers(cli)
        cli.stop()


def kill_workers(cli: Cli) -> None:
    """What a failed test left of the workers (they are in their own process groups), while the
    supervisor is alive: only then is a pid it named surely still its child. Workers left by a
    supervisor that is gone stop by themselves when their link to it closes."""
    if cli.process.poll() is not None:
        return
    for pid in served_by(cli):
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            if int(stat.rpartition(")")[2].split()[1]) == cli.process.pid:  # its parent
                os.kill(pid, signal.SIGKILL)


def served_by(cli: Cli) -> list[int]:
    """Every worker pid the supervisor said was serving, in order."""
    return [int(match.group(1)) for line in cli.stderr.lines if (match := SERVING.search(line))]


def wait_serving(cli: Cli, count: int) -> list[int]:
    """The pids of the first ``count`` workers that served, waiting for them."""
    lines = cli.stderr.wait_count("] serving", count, seconds=15)
    return [int(match.group(1)) for line in lines if (match := SERVING.search(line))]


def get(port: int, path: str = "/") -> tuple[int, bytes]:
    """One request on a new connection: the status and the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(5)) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def pid_of(port: int) -> int:
    status, body = get(port)
    assert status == 200
    return int(body)


def wait_for_new_pid(port: int, old: set[int]) -> int:
    deadline = time.monotonic() + timeout(15)
    while (pid := pid_of(port)) in old:
        assert time.monotonic() < deadline, f"still served by {pid}"
    return pid


def stop(cli: Cli, sig: int = signal.SIGTERM) -> None:
    cli.send_signal(sig)
    assert cli.wait(seconds=20) == 0, cli.stderr.text


def test_workers_serve_and_the_supervisor_never_imports_the_app(launch: Launcher, loop: str) -> None:
    cli = launch("svapp:app", "--port", "0", "--workers", "2", "--loop", loop)
    port = cli.port
    workers = wait_serving(cli, 2)
    assert pid_of(port) in workers
    stop(cli)
    imported = {int(line.split()[-1]) for line in cli.stdout.lines if line.startswith("imported in")}
    assert imported == set(workers)  # never in the supervisor's own process
    assert cli.process.pid not in imported
    assert cli.stdout.lines.count("lifespan shutdown") == 2
    assert cli.stderr.text.count("stopped (exit code 0)") == 2


def test_workers_on_a_unix_socket(launch: Launcher, tmp_path: Path) -> None:
    path = tmp_path / "sv.sock"
    cli = launch("svapp:app", "--uds", str(path), "--workers", "2")
    assert cli.started() == f"unix:{path}"
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=timeout(5)) as client:
        assert int(client.get("http://localhost/").text) in wait_serving(cli, 2)
    stop(cli)
    assert not path.exists()  # removed by the supervisor, which bound it, and only at the end


def test_workers_from_web_concurrency_on_a_passed_socket(launch: Launcher) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        cli = launch("svapp:app", "--fd", str(sock.fileno()), pass_fds=(sock.fileno(),),
                     env={"WEB_CONCURRENCY": "2"})  # uvicorn's and Heroku's variable
    cli.stderr.wait_for("Started supervisor process")
    assert "for 2 workers" in cli.stderr.text
    assert pid_of(port) in wait_serving(cli, 2)
    stop(cli)


def test_workers_need_an_import_string() -> None:
    from asgisock.config import Config
    from asgisock.exceptions import ConfigError
    from asgisock.supervisor import supervise
    from tests.apps import hello

    with pytest.raises(ConfigError, match=r"--workers.*import string"):
        supervise(Config(hello, workers=2, port=0))


def test_a_killed_worker_is_replaced_at_once(launch: Launcher, loop: str) -> None:
    cli = launch("svapp:app", "--port", "0", "--workers", "1", "--loop", loop)
    port = cli.port
    first = pid_of(port)
    os.kill(first, signal.SIGKILL)
    cli.stderr.wait_for(f"Worker [{first}] died (killed by signal SIGKILL); starting a new one")
    assert wait_for_new_pid(port, {first}) != first
    stop(cli)


def test_a_crash_loop_backs_off(launch: Launcher) -> None:
    cli = launch("svapp:app", "--port", "0", "--workers", "1", env={"SVAPP_MODE": "crash"})
    first = cli.stderr.wait_for("died (exit code 7)")
    assert first.endswith("starting a new one")  # the first is replaced at once
    cli.stderr.wait_for("starting a new one in 0.5 s (it keeps dying)")
    cli.stderr.wait_for("starting a new one in 1 s (it keeps dying)")
    stop(cli)


def test_a_failed_lifespan_startup_stops_everything_with_exit_3(launch: Launcher) -> None:
    cli = launch("svapp:app", "--port", "0", "--workers", "2", env={"SVAPP_MODE": "fail-start"})
    assert cli.wait(seconds=20) == 3
    assert "no database" in cli.stderr.text
    assert "exit code 3 at startup: stopping" in cli.stderr.text
    assert "asgisock running on" not in cli.stderr.text


def test_an_app_that_cannot_be_imported_exits_1(launch: Launcher) -> None:
    cli = launch("nomodule:app", "--port", "0", "--workers", "2")
    assert cli.wait(seconds=20) == 1
    assert 'Could not import module "nomodule"' in cli.stderr.text


def test_a_blocked_worker_is_replaced_and_a_slow_starter_is_not(launch: Launcher, loop: str) -> None:
    cli = launch("svapp:app", "--port", "0", "--workers", "1", "--loop", loop,
                 "--timeout-worker-healthcheck", "1", env={"SVAPP_MODE": "slow-start", "SVAPP_SLOW": "2"})
    port = cli.port  # the startup blocked its event loop twice the health check's limit
    [first] = wait_serving(cli, 1)
    assert "heartbeat" not in cli.stderr.text
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
        cli.stderr.wait_for(f"Worker [{first}] sent no heartbeat for")
        cli.stderr.wait_for(f"Worker [{first}] died (killed by signal SIGKILL)")
    assert wait_for_new_pid(port, {first}) != first
    stop(cli)


def test_a_second_signal_stops_the_workers_at_once(launch: Launcher) -> None:
    cli = launch("svapp:app", "--port", "0", "--workers", "1")  # the default 25 s drain
    with socket.create_connection(("127.0.0.1", cli.port)) as sock:
        sock.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        cli.stdout.wait_for("hang started")
        cli.send_signal(signal.SIGINT)
        cli.stderr.wait_for("Waiting for connections to close")
        cli.send_signal(signal.SIGINT)
        assert cli.wait(seconds=5) == 0


def test_sigterm_to_every_process_at_once_still_drains(launch: Launcher) -> None:
    cli = launch("svapp:app", "--port", "0", "--workers", "1")
    [worker] = wait_serving(cli, 1)
    with socket.create_connection(("127.0.0.1", cli.port), timeout=timeout(5)) as sock:
        sock.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
        cli.stdout.wait_for("slow started")
        os.kill(worker, signal.SIGTERM)  # as systemd signals the whole control group
        cli.send_signal(signal.SIGTERM)
        cli.stderr.wait_for("Waiting for connections to close")
        sock.sendall(b"hello")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 200 OK\r\n")
    assert cli.wait(seconds=20) == 0
    assert "lifespan shutdown" in cli.stdout.lines


class Load:
    """Requests on new connections, one after another, until stopped; every outcome kept."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.served: Counter[int] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status, body = get(self.port)
                if status != 200:
                    self.failures.append(f"status {status}")
                else:
                    self.served[int(body)] += 1
            except (OSError, ValueError, IndexError) as exc:
                self.failures.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout(10))


def test_sighup_replaces_every_worker_without_a_failed_request(launch: Launcher, loop: str) -> None:
    cli = launch("svapp:app", "--port", "0", "--workers", "2", "--loop", loop, "--no-access-log")
    port = cli.port
    old = set(wait_serving(cli, 2))
    load = Load(port)
    try:
        with ws_connect(f"ws://127.0.0.1:{port}/ws", open_timeout=timeout(5)) as ws:
            ws.send("pid?")
            assert int(ws.recv(timeout(5))) in old
            cli.send_signal(signal.SIGHUP)
            cli.stderr.wait_for("Restart done: every worker replaced", seconds=20)
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout(10))
            assert ws.close_code == 1012  # service restart: the client should reconnect
        for pid in old:
            cli.stderr.wait_for(f"Worker [{pid}] stopped (exit code 0)")
        new = set(served_by(cli)) - old
        assert len(new) == 2
        wait_for_new_pid(port, old)
    finally:
        load.stop()
    assert load.failures == []
    assert sum(load.served.values()) > 20
    assert set(load.served) == old | new  # the load ran before, during and after the restart
    stop(cli)


def test_a_stop_during_a_restart_stops_the_worker_still_starting(launch: Launcher) -> None:
    cli = launch("svapp:app", "--port", "0", "--workers", "1",
                 env={"SVAPP_MODE": "slow-start", "SVAPP_SLOW": "0.5"})
    wait_serving(cli, 1)
    cli.send_signal(signal.SIGHUP)
    cli.stderr.wait_count("Started server process", 2)  # its successor is in its startup
    cli.send_signal(signal.SIGTERM)
    assert cli.wait(seconds=10) == 0, cli.stderr.text
    assert "killing it" not in cli.stderr.text
    assert cli.stderr.text.count("] stopped (") == 2


def test_sigttin_adds_a_worker_and_sigttou_removes_one(launch: Launcher) -> None:
    cli = launch("svapp:app", "--port", "0", "--workers", "1")
    [first] = wait_serving(cli, 1)
    cli.send_signal(signal.SIGTTIN)
    second = wait_serving(cli, 2)[1]
    cli.send_signal(signal.SIGTTOU)
    cli.stderr.wait_for(f"Worker [{second}] stopped (exit code 0)")  # the newest goes
    assert pid_of(cli.port) == first
    stop(cli)


def test_limit_max_requests_recycles_a_worker_without_a_gap(launch: Launcher, loop: str) -> None:
    cli = launch("svapp:app", "--port", "0", "--workers", "1", "--no-access-log", "--loop", loop,
                 "--limit-max-requests", "20", "--limit-max-requests-jitter", "5")
    port = cli.port
    [first] = wait_serving(cli, 1)
    load = Load(port)
    try:
        cli.stderr.wait_for(f"Worker [{first}] served ")
        cli.stderr.wait_for(f"Worker [{first}] stopped (exit code 0)")
    finally:
        load.stop()
    assert load.failures == []
    assert len(load.served) >= 2
    assert "requests (--limit-max-requests): replacing it" in cli.stderr.text
    stop(cli)


def test_limit_max_rss_recycles_a_worker_that_grew(launch: Launcher, loop: str) -> None:
    cli = launch("svapp:app", "--port", "0", "--workers", "1", "--loop", loop, "--limit-max-rss", "120")
    port = cli.port
    [first] = wait_serving(cli, 1)
    assert get(port, "/grow")[0] == 200
    line = cli.stderr.wait_for(f"Worker [{first}] uses ")
    assert line.endswith("MiB (--limit-max-rss 120): replacing it")
    assert wait_for_new_pid(port, {first}) != first
    stop(cli)


def spread(cli: Cli, connections: int) -> list[int]:
    """How many of ``connections`` new connections each worker served, most first."""
    served = Counter(pid_of(cli.port) for _ in range(connections))
    return sorted(served.values(), reverse=True)


def test_reuse_port_spreads_new_connections_evenly(launch: Launcher) -> None:
    shares = {}
    for option in ("--no-reuse-port", "--reuse-port"):
        cli = launch("svapp:app", "--port", "0", "--workers", "4", "--no-access-log", option)
        wait_serving(cli, 4)
        shares[option] = spread(cli, 1000)
        stop(cli)
    print(f"1,000 connections over 4 workers: {shares}")
    assert sum(shares["--reuse-port"]) == 1000
    assert len(shares["--reuse-port"]) == 4
    assert min(shares["--reuse-port"]) >= 150  # about 250 each: the kernel hashes each connection


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, trustme.CA]:
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("tls") / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(path))
    return path, ca


def test_tls_in_workers(launch: Launcher, certificate: tuple[Path, trustme.CA], loop: str) -> None:
    path, ca = certificate
    cli = launch("svapp:app", "--port", "0", "--workers", "2", "--loop", loop, "--ssl-certfile", str(path))
    assert cli.url.startswith("https://127.0.0.1:")
    workers = wait_serving(cli, 2)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    response = httpx.get(cli.url + "/client", verify=context, timeout=timeout(5))
    assert response.json()[1] == "https"
    assert int(httpx.get(cli.url, verify=context, timeout=timeout(5)).text) in workers
    stop(cli)


def test_proxy_protocol_in_workers(launch: Launcher, loop: str) -> None:
    cli = launch("svapp:app", "--port", "0", "--workers", "2", "--loop", loop, "--proxy-protocol")
    wait_serving(cli, 2)
    with socket.create_connection(("127.0.0.1", cli.port), timeout=timeout(5)) as sock:
        sock.sendall(b"PROXY TCP4 203.0.113.7 127.0.0.1 4321 80\r\n"
                     b"GET /client HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert json.loads(data.partition(b"\r\n\r\n")[2]) == [["203.0.113.7", 4321], "http"]
    stop(cli)
