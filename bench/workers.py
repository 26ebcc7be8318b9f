#!/usr/bin/env python3
"""Two workers: asgisock beside uvicorn (and granian, when the bench venv has it), and a
kill -9 of one worker under constant load.

Usage::

    python bench/workers.py                      # 3 rounds of 5 s, then the kill -9 runs
    python bench/workers.py --rounds 1 --duration 3 --servers asgisock,uvicorn

Each server runs with ``--workers 2`` on this 2-core machine, unpinned, while the load
generator (wrk for ``http-plaintext``, bench/wsload.py for ``ws-echo-small``) is pinned to CPU 1:
the generator shares the cores with the workers, so only the ratios between servers mean
anything. Rounds alternate the servers; the medians and the ratios to asgisock are printed.

The kill -9 run keeps 8 keep-alive clients sending requests to ``apps:pid`` (which answers with
its process id), and a ninth that opens a new connection for each request every 2 ms; it kills
one worker with SIGKILL after 2 s, and reports how long it took until a new process answered
the ninth and how many requests failed (only those in flight on the killed worker should: each
client reconnects and sends the next request at once).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import env
import procstat
from scenarios import Settings, http_plaintext, ws_echo_small
from servers import (
    START_TIMEOUT,
    RunningServer,
    ServerError,
    file_limit,
    free_port,
    responds,
    server_argv,
)

WORKERS = "2"
CHECKS = (("http-plaintext", "requests/s", http_plaintext), ("ws-echo-small", "messages/s", ws_echo_small))


def log(message: str) -> None:
    print(f"workers: {message}", file=sys.stderr, flush=True)


def multi_argv(name: str, app: str, port: int) -> list[str]:
    argv = server_argv(name, app, port)
    if name == "granian":
        argv[argv.index("--workers") + 1] = WORKERS
    else:
        argv += ["--workers", WORKERS]
    return argv


def start_multi(name: str, app: str, log_dir: Path) -> RunningServer:
    """``name`` with two workers, unpinned; returns once both workers are up and it answers."""
    port = free_port()
    log_path = log_dir / f"{name}-{app}.log"
    limit = file_limit()
    # The working tree first, as bench/compare.py runs it: the workers inherit the path.
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(env.REPO_ROOT), str(env.BENCH_DIR)]),
                   "PYTHONDONTWRITEBYTECODE": "1"}
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(["prlimit", f"--nofile={limit}:{limit}", *multi_argv(name, app, port)],
                                   cwd=env.BENCH_DIR, env=environment, stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    server = RunningServer(name, port, process, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while not (responds(port) and len(procstat.tree(process.pid)) >= 1 + int(WORKERS)):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise ServerError(f"{name} did not start:\n{server.log_tail()}")
        time.sleep(0.05)
    time.sleep(0.5)  # the second worker may still be importing the app
    return server


def throughput(servers: list[str], rounds: int, settings: Settings, log_dir: Path) -> dict[str, dict[str, float]]:
    runs: dict[str, dict[str, list[float]]] = {name: {check: [] for check, _, _ in CHECKS} for name in servers}
    for number in range(1, rounds + 1):
        for name in servers:
            server = start_multi(name, "echo", log_dir)
            try:
                for check, unit, measure in CHECKS:
                    value = measure(settings, server)["value"]
                    runs[name][check].append(value)
                    log(f"round {number}: {name} {check} {value:,.0f} {unit}")
            finally:
                server.stop()
    return {name: {check: statistics.median(values) for check, values in checks.items()}
            for name, checks in runs.items()}


class Client(threading.Thread):
    """One keep-alive client: a request, its response, the next; reconnects after a failure.
    With ``fresh``, a new connection for every request (the probe that finds the new worker:
    keep-alive clients stay on the worker that survived)."""

    def __init__(self, port: int, until: float, *, fresh: bool = False) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.until = until
        self.fresh = fresh
        self.answers: list[tuple[float, int]] = []
        self.failures: list[tuple[float, str]] = []

    def run(self) -> None:
        sock: socket.socket | None = None
        while time.monotonic() < self.until:
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
                self.answers.append((time.monotonic(), read_pid(sock)))
                if self.fresh:
                    sock.close()
                    sock = None
                    time.sleep(0.002)
            except (OSError, ValueError) as exc:
                self.failures.append((time.monotonic(), type(exc).__name__))
                if sock is not None:
                    sock.close()
                sock = None
        if sock is not None:
            sock.close()


def read_pid(sock: socket.socket) -> int:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionResetError("closed before the response")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionResetError("closed in the body")
        body += chunk
    return int(body)


def kill_one(name: str, log_dir: Path, clients: int = 8, seconds: float = 6.0) -> dict[str, float]:
    server = start_multi(name, "pid", log_dir)
    try:
        until = time.monotonic() + seconds
        load = [Client(server.port, until) for _ in range(clients)] + [Client(server.port, until, fresh=True)]
        for client in load:
            client.start()
        time.sleep(2.0)
        before = {pid for client in load for _, pid in client.answers}
        victim = load[0].answers[-1][1]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        for client in load:
            client.join(seconds + 10)
        server.check_alive()
    finally:
        server.stop()
    after = sorted(at for client in load for at, pid in client.answers if pid not in before and at > killed_at)
    failures = [at for client in load for at, _ in client.failures]
    answered = sum(len(client.answers) for client in load)
    return {
        "new_worker_serving_after_s": (after[0] - killed_at) if after else float("nan"),
        "failed_requests": len(failures),
        "failed_after_kill_s": (max(failures) - killed_at) if failures else 0.0,
        "requests": answered,
        "keep_alive_clients": clients,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--servers", default="asgisock,uvicorn,granian")
    parser.add_argument("--rounds", type=int, default=3, help="0: only the kill -9 runs")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--no-kill", action="store_true", help="skip the kill -9 runs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    env.ensure_venv()
    wrk = env.ensure_wrk()
    installed = env.versions(env.VENV_PYTHON)
    servers = [name for name in args.servers.split(",") if name in installed]
    settings = Settings(duration=args.duration, warmup=1.0, wrk=wrk)
    with tempfile.TemporaryDirectory(prefix="asgisock-workers-") as scratch:
        settings.scratch = Path(scratch)
        medians = throughput(servers, args.rounds, settings, Path(scratch)) if args.rounds else {}
        kills = {} if args.no_kill else {name: kill_one(name, Path(scratch))
                                         for name in servers if name in ("asgisock", "uvicorn")}
    ratios = {name: {check: medians["asgisock"][check] / value for check, value in checks.items()}
              for name, checks in medians.items() if name != "asgisock" and "asgisock" in medians}
    print(json.dumps({"versions": installed, "workers": int(WORKERS), "medians": medians,
                      "asgisock_over": ratios, "kill_9": kills}, indent=2))


if __name__ == "__main__":
    main()
