"""``gunicorn -k asgisock.workers.AsgisockWorker``: a real gunicorn arbiter, real signals and sockets."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import ssl
import sys
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


MODE = os.environ.get("GAPP_MODE", "")


async def lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if MODE == "fail-start":
                await send({"type": "lifespan.startup.failed", "message": "no database"})
                return
            if MODE == "slow-start":
                say("startup begun")
                await asyncio.sleep(600)
            await send({"type": "lifespan.startup.complete"})
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
            return
        await send({"type": "websocket.send", "text": message["text"]})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    if scope["type"] == "websocket":
        return await websocket(receive, send)
    body = str(os.getpid()).encode()
    if scope["path"] == "/block":
        time.sleep(600)  # blocks the event loop
    elif scope["path"] == "/slow":
        say("slow started")
        while (await receive()).get("more_body"):
            pass
    elif scope["path"] == "/hang":
        say("hang started")
        await asyncio.get_running_loop().create_future()
    elif scope["path"] == "/scope":
        loop = type(asyncio.get_running_loop()).__module__
        body = json.dumps({"client": scope["client"], "scheme": scope["scheme"], "loop": loop}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
'''

WORKER_CLASSES = {
    "uvloop": "asgisock.workers.AsgisockWorker",  # uvloop is installed: the default picks it
    "asyncio": "asgisock.workers.AsgisockAsyncioWorker",
}
LISTENING = re.compile(r"Listening at: \S+://127\.0\.0\.1:(\d+) ")
SERVING = re.compile(r"asgisock serving on \S+ \(pid: (\d+)\)")


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    (tmp_path / "gapp.py").write_text(APP_SOURCE)
    launcher = Launcher(tmp_path, program=(sys.executable, "-m", "gunicorn"))
    yield launcher
    for cli in launcher.started:
        kill_workers(cli)
        cli.stop()


def gunicorn(launch: Launcher, loop: str, *args: str, env: dict[str, str] | None = None) -> Cli:
    """``gunicorn -k <asgisock's worker for loop> gapp:app`` on an ephemeral port; one worker
    unless ``args`` say otherwise. Each arbiter's control socket would be the same file: off."""
    return launch("-k", WORKER_CLASSES[loop], "--bind", "127.0.0.1:0", "--no-control-socket",
                  "--graceful-timeout", "10", *args, "gapp:app", env=env)


def kill_workers(cli: Cli) -> None:
    """What a failed test left of the workers, while the arbiter is alive (only then is a pid it
    named surely still its child); the arbiter's own SIGKILL follows."""
    if cli.process.poll() is not None:
        return
    for pid in booted(cli):
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            if int(stat.rpartition(")")[2].split()[1]) == cli.process.pid:  # its parent
                os.kill(pid, signal.SIGKILL)


def booted(cli: Cli) -> list[int]:
    return [int(line.rsplit(" ", 1)[1]) for line in cli.stderr.lines if "Booting worker with pid: " in line]


def port_of(cli: Cli) -> int:
    match = LISTENING.search(cli.stderr.wait_for("Listening at: "))
    assert match is not None
    return int(match.group(1))


def wait_serving(cli: Cli, count: int) -> list[int]:
    """The pids of the first ``count`` workers that served, waiting for them."""
    lines = cli.stderr.wait_count("asgisock serving on ", count, seconds=15)
    return [int(match.group(1)) for line in lines if (match := SERVING.search(line))]


def request(port: int, path: str = "/", headers: str = "", *,
            context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """One request on a new connection: the status and the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(5)) as raw, contextlib.ExitStack() as stack:
        sock = raw if context is None else stack.enter_context(context.wrap_socket(raw, server_hostname="127.0.0.1"))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n".encode())
        data = read_until_closed(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def pid_of(port: int) -> int:
    status, body = request(port)
    assert status == 200
    return int(body)


def wait_for_new_pid(port: int, old: set[int]) -> int:
    deadline = time.monotonic() + timeout(15)
    while (pid := pid_of(port)) in old:
        assert time.monotonic() < deadline, f"still served by {pid}"
    return pid


def stop(cli: Cli) -> None:
    cli.send_signal(signal.SIGTERM)
    assert cli.wait(seconds=20) == 0, cli.stderr.text


class Load:
    """Requests on new connections, one after another, until stopped; every outcome kept."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.served: Counter[int] = Counter()
        self.failures: list[str] = []
        self.serving = threading.Event()
        """Set once a request has been answered."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status, body = request(self.port)
                if status != 200:
                    self.failures.append(f"status {status}")
                else:
                    self.served[int(body)] += 1
                    self.serving.set()
            except (OSError, ValueError, IndexError) as exc:
                self.failures.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout(10))


def test_two_workers_serve_http_and_websocket(launch: Launcher, loop: str) -> None:
    cli = gunicorn(launch, loop, "--workers", "2")
    port = port_of(cli)
    workers = wait_serving(cli, 2)
    status, body = request(port, "/scope")
    assert status == 200
    assert json.loads(body)["loop"].startswith(loop)
    assert pid_of(port) in workers
    with ws_connect(f"ws://127.0.0.1:{port}/ws", open_timeout=timeout(5)) as ws:
        ws.send("hello")
        assert ws.recv(timeout(5)) == "hello"
    stop(cli)
    assert '"GET /scope HTTP/1.1" 200' not in cli.stderr.text  # no --access-logfile: no access log
    assert cli.stdout.lines.count("lifespan shutdown") == 2
    # asgisock's lines are in gunicorn's error log, formatted its way.
    assert re.search(r"^\[[^]]+\] \[\d+\] \[INFO\] Application startup complete\.$", cli.stderr.text, re.M)
    assert "was sent SIGTERM" not in cli.stderr.text  # each worker exited by itself, with 0


def test_a_blocked_worker_is_killed_by_the_timeout_and_replaced(launch: Launcher, loop: str) -> None:
    cli = gunicorn(launch, loop, "--timeout", "3")
    port = port_of(cli)
    [first] = wait_serving(cli, 1)
    alive_since = time.monotonic()
    while time.monotonic() - alive_since < 1.5 * 3:  # longer than the timeout: a healthy worker beats
        assert pid_of(port) == first
    assert "WORKER TIMEOUT" not in cli.stderr.text
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
        cli.stderr.wait_for(f"WORKER TIMEOUT (pid:{first})")
        wait_serving(cli, 2)
    blocked = cli.stderr.text.partition("The event loop was blocked for more than timeout (3s), at:")[2]
    assert "time.sleep(600)  # blocks the event loop" in blocked  # where the app blocked it
    assert wait_for_new_pid(port, {first}) != first
    stop(cli)


def test_sigterm_drains_a_request_in_flight_and_closes_websockets_with_1001(launch: Launcher, loop: str) -> None:
    cli = gunicorn(launch, loop)
    port = port_of(cli)
    wait_serving(cli, 1)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(5)) as sock, \
            ws_connect(f"ws://127.0.0.1:{port}/ws", open_timeout=timeout(5)) as ws:
        sock.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
        cli.stdout.wait_for("slow started")
        cli.send_signal(signal.SIGTERM)
        cli.stderr.wait_for("Waiting for connections to close")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout(10))
        assert ws.close_code == 1001
        sock.sendall(b"hello")
        response = read_until_closed(sock)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close\r\n" in response.lower()
    assert cli.wait(seconds=20) == 0
    assert "lifespan shutdown" in cli.stdout.lines


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT])
def test_sigint_and_sigquit_stop_at_once(launch: Launcher, sig: signal.Signals) -> None:
    cli = gunicorn(launch, "uvloop", "--graceful-timeout", "30")
    port = port_of(cli)
    wait_serving(cli, 1)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(5)) as sock:
        sock.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        cli.stdout.wait_for("hang started")
        cli.send_signal(sig)
        assert cli.wait(seconds=5) == 0  # not the 30 s of graceful_timeout
    assert "1 cut" in cli.stderr.text


def test_graceful_timeout_is_the_drains_deadline(launch: Launcher) -> None:
    cli = gunicorn(launch, "uvloop", "--graceful-timeout", "3")
    port = port_of(cli)
    wait_serving(cli, 1)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(5)) as sock:
        sock.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        cli.stdout.wait_for("hang started")
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(seconds=10) == 0
    # Cut before the arbiter's own deadline, so that the lifespan shutdown still ran.
    assert "Graceful shutdown timed out after 1.5 s" in cli.stderr.text
    assert "Drain done: 0 of 1 connections finished, 1 cut" in cli.stderr.text
    assert "lifespan shutdown" in cli.stdout.lines
    assert "SIGKILL" not in cli.stderr.text


def test_a_stop_during_the_startup_is_not_a_boot_failure(launch: Launcher) -> None:
    cli = gunicorn(launch, "uvloop", env={"GAPP_MODE": "slow-start"})
    cli.stdout.wait_for("startup begun")
    cli.send_signal(signal.SIGTERM)
    assert cli.wait(seconds=20) == 0, cli.stderr.text
    assert "Application startup interrupted." in cli.stderr.text


def test_hup_replaces_the_workers_without_a_failed_request(launch: Launcher, loop: str) -> None:
    cli = gunicorn(launch, loop, "--workers", "2")
    port = port_of(cli)
    old = set(wait_serving(cli, 2))
    load = Load(port)
    try:
        assert load.serving.wait(timeout(5))
        cli.send_signal(signal.SIGHUP)
        new = set(wait_serving(cli, 4)) - old
        for pid in old:
            cli.stderr.wait_for(f"Worker exiting (pid: {pid})")
        assert wait_for_new_pid(port, old) in new
    finally:
        load.stop()
    assert load.failures == []
    assert set(load.served) <= old | new
    assert set(load.served) & old and set(load.served) & new  # before and after the restart
    stop(cli)


def test_max_requests_recycles_a_worker_without_a_failed_request(launch: Launcher, loop: str) -> None:
    cli = gunicorn(launch, loop, "--max-requests", "20", "--max-requests-jitter", "5")
    port = port_of(cli)
    [first] = wait_serving(cli, 1)
    with ws_connect(f"ws://127.0.0.1:{port}/ws", open_timeout=timeout(5)) as ws:
        load = Load(port)
        try:
            line = cli.stderr.wait_for("max_requests")
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout(10))
            assert ws.close_code == 1012  # service restart: another worker takes over
            cli.stderr.wait_for(f"Worker exiting (pid: {first})")
            wait_serving(cli, 2)
            wait_for_new_pid(port, {first})
        finally:
            load.stop()
    assert re.search(r"Served (\d+) requests \(max_requests (2[0-5])\): restarting", line), line
    assert load.failures == []
    stop(cli)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_tls_from_gunicorns_settings(launch: Launcher, loop: str, ca: trustme.CA, tmp_path: Path) -> None:
    server = ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    server.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cipher = "ECDHE-ECDSA-AES128-GCM-SHA256"  # for TLS 1.2; trustme's keys are ECDSA
    cli = gunicorn(launch, loop, "--certfile", str(tmp_path / "cert.pem"), "--keyfile", str(tmp_path / "key.pem"),
                   "--ca-certs", str(tmp_path / "ca.pem"), "--cert-reqs", "2", "--ciphers", cipher)
    assert cli.stderr.wait_for("Listening at: ").split()[-2].startswith("https://")
    port = port_of(cli)
    wait_serving(cli, 1)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(5)) as raw:
        try:  # cert_reqs 2: refused without a certificate (with TLS 1.3, after the handshake)
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = read_until_closed(tls)
        except ssl.SSLError:
            answer = b""
    assert answer == b""
    ca.issue_cert("client@example.com").configure_cert(context)
    status, body = request(port, "/scope", context=context)
    assert (status, json.loads(body)["scheme"]) == (200, "https")
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(5)) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        negotiated = tls.cipher()
    assert negotiated is not None
    assert negotiated[0] == cipher
    stop(cli)


@pytest.mark.parametrize(("allowed", "client"), [(None, "203.0.113.9"), ("10.1.2.3", "127.0.0.1")])
def test_forwarded_allow_ips(launch: Launcher, allowed: str | None, client: str) -> None:
    args = () if allowed is None else ("--forwarded-allow-ips", allowed)
    cli = gunicorn(launch, "uvloop", *args)  # gunicorn's default: 127.0.0.1 and ::1
    port = port_of(cli)
    wait_serving(cli, 1)
    status, body = request(port, "/scope", "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n")
    seen = json.loads(body)
    assert status == 200
    assert (seen["client"][0], seen["scheme"]) == (client, "https" if allowed is None else "http")
    stop(cli)


def test_a_unix_socket_whose_peers_are_trusted_proxies(launch: Launcher, loop: str, tmp_path: Path) -> None:
    path = tmp_path / "g.sock"
    cli = launch("-k", WORKER_CLASSES[loop], "--bind", f"unix:{path}", "--no-control-socket",
                 "--forwarded-allow-ips", "10.1.2.3", "gapp:app")
    wait_serving(cli, 1)
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=timeout(5)) as client:
        seen = client.get("http://localhost/scope", headers={"X-Forwarded-For": "203.0.113.9"}).json()
    assert seen["client"][0] == "203.0.113.9"  # as gunicorn does: a UNIX-socket peer is trusted
    stop(cli)


def test_gunicorns_reload_replaces_the_worker_on_a_change(launch: Launcher, tmp_path: Path) -> None:
    cli = gunicorn(launch, "uvloop", "--reload")
    port = port_of(cli)
    [first] = wait_serving(cli, 1)
    source = tmp_path / "gapp.py"
    source.write_text(source.read_text() + "\n# changed\n")
    cli.stderr.wait_for(f"Worker reloading: {source} modified")
    cli.stderr.wait_for(f"Worker exiting (pid: {first})")
    assert wait_for_new_pid(port, {first}) != first
    stop(cli)


def test_keepalive_closes_idle_connections(launch: Launcher) -> None:
    cli = gunicorn(launch, "uvloop", "--keep-alive", "1")
    port = port_of(cli)
    wait_serving(cli, 1)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(10)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
        idle = time.monotonic()
        assert sock.recv(65536) == b""
        assert 0.5 <= time.monotonic() - idle < timeout(5)  # 1 s after the response was sent
    stop(cli)


def test_worker_connections_limits_concurrency(launch: Launcher) -> None:
    cli = gunicorn(launch, "uvloop", "--worker-connections", "1")
    port = port_of(cli)
    wait_serving(cli, 1)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout(5)) as sock:
        sock.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")
        cli.stdout.wait_for("slow started")
        assert request(port)[0] == 503
        sock.sendall(b"hello")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 200 OK\r\n")
    deadline = time.monotonic() + timeout(5)
    while (status := request(port)[0]) == 503:  # until the server has seen the connection close
        assert time.monotonic() < deadline
    assert status == 200  # the limit is on what is in flight
    stop(cli)


def wait_for_file(path: Path, pattern: str) -> re.Match[str]:
    """The first match of ``pattern`` in the file, waiting (with a deadline) for it to appear."""
    deadline = time.monotonic() + timeout(10)
    while not (match := re.search(pattern, path.read_text() if path.exists() else "", re.M)):
        assert time.monotonic() < deadline, f"{pattern!r} never appeared in {path}: {path.read_text()!r}"
        time.sleep(0.02)
    return match


def test_access_lines_in_gunicorns_access_log_which_sigusr1_reopens(launch: Launcher, tmp_path: Path) -> None:
    access, errors = tmp_path / "access.log", tmp_path / "error.log"
    fmt = '%(h)s "%(r)s" %(s)s %(b)s "%({x-trace}i)s" %(p)s'
    cli = gunicorn(launch, "uvloop", "--access-logfile", str(access), "--error-logfile", str(errors),
                   "--access-logformat", fmt)
    port = int(wait_for_file(errors, r"Listening at: http://127\.0\.0\.1:(\d+) ").group(1))
    wait_for_file(errors, r"^\[[^]]+\] \[\d+\] \[INFO\] asgisock serving on ")
    pid = pid_of(port)
    assert request(port, "/?q=1", "X-Trace: abc\r\n")[0] == 200
    wait_for_file(access, rf'^127\.0\.0\.1:\d+ "GET /\?q=1 HTTP/1\.1" 200 {len(str(pid))} "abc" <{pid}>$')
    access.rename(tmp_path / "access.log.1")  # as logrotate does, before it signals
    cli.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + timeout(10)
    while not (access.exists() and "/after" in access.read_text()):  # the worker reopens on its own signal
        assert time.monotonic() < deadline, "the access log was not reopened"
        assert request(port, "/after")[0] == 200
    assert "/?q=1" in (tmp_path / "access.log.1").read_text()  # the old file kept its lines
    assert "/?q=1" not in access.read_text()
    stop(cli)
    assert "Application shutdown complete." in errors.read_text()


@pytest.mark.parametrize(("app", "args", "env", "code"), [
    ("gapp:app", (), {"GAPP_MODE": "fail-start"}, 3),  # lifespan.startup.failed
    ("nomodule:app", (), {}, 3),  # gunicorn's own verdict on an import error: WORKER_BOOT_ERROR
    ("gapp:missing", (), {}, 4),  # and on a missing attribute: APP_LOAD_ERROR, which stops it as well
    ("gapp:app", ("--certfile", "gapp.py", "--cert-reqs", "2"), {}, 3),  # a setting asgisock refuses
    ("gapp:app", ("--certfile", "gapp.py"), {}, 3),  # a certificate that cannot be loaded
])
def test_a_boot_failure_stops_the_arbiter(launch: Launcher, app: str, args: tuple[str, ...],
                                         env: dict[str, str], code: int) -> None:
    cli = launch("-k", WORKER_CLASSES["uvloop"], "--bind", "127.0.0.1:0", "--no-control-socket",
                 *args, app, env=env)
    assert cli.wait(seconds=20) == code, cli.stderr.text
    assert len(booted(cli)) == 1  # not one more: the arbiter stopped instead of replacing it
    assert "asgisock serving on" not in cli.stderr.text


def test_the_settings_taken_from_gunicorns() -> None:
    from gunicorn.config import Config as GunicornConfig

    from asgisock.workers import asgisock_settings

    cfg = GunicornConfig()
    defaults = asgisock_settings(cfg)
    assert defaults["timeout_keep_alive"] == 2.0
    assert defaults["timeout_graceful_shutdown"] == 28.0  # 30 s, less the margin for the cut
    assert defaults["limit_concurrency"] == 1000
    assert defaults["forwarded_allow_ips"] == "127.0.0.1,::1,unix:"
    assert "ssl_certfile" not in defaults  # ca_certs and the others mean nothing without a certfile
    for name, value in [("keepalive", "0"), ("graceful_timeout", "1"), ("worker_connections", "0")]:
        cfg.set(name, value)
    changed = asgisock_settings(cfg)
    assert changed["timeout_keep_alive"] == 1.0  # gunicorn's "no keep-alive" leaves a request head time
    assert changed["timeout_graceful_shutdown"] == 0.5
    assert changed["limit_concurrency"] is None
