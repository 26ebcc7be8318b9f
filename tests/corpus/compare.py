"""Run the HTTP corpus against asgisock and other servers started as subprocesses; print a table.

    python -m tests.corpus.compare                      # asgisock, uvicorn (httptools), uvicorn (h11)
    python -m tests.corpus.compare --markdown table.md  # also write the table as Markdown

Every server runs the same app, which answers 200 with what it saw (method, target, body
length), so the table shows which requests reached the app. Outcomes are observed the same way
for every server: responses until the server closes or stays silent for ``--idle`` seconds, then
one more request on the same connection. Loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from tests.corpus.client import ResponseReader, observe, send
from tests.corpus.http_cases import CASES, LIMIT, Case

PROBE_PATH = "/__probe"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers 200 with ``METHOD target body-length``."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    query = scope["query_string"].decode("latin-1")
    target = scope["raw_path"].decode("latin-1") + ("?" + query if query else "")
    body = f"{scope['method']} {target} {size}".encode("latin-1", "replace")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def commands(port: int) -> dict[str, list[str]]:
    target = "tests.corpus.compare:app"
    uvicorn = [sys.executable, "-m", "uvicorn", target, "--port", str(port), "--log-level", "critical",
               "--no-access-log", "--lifespan", "off"]
    return {
        "asgisock": [sys.executable, "-m", "asgisock", target, "--port", str(port), "--log-level", "critical",
                     "--no-access-log", "--lifespan", "off", "--max-header-size", str(LIMIT)],
        "uvicorn (httptools)": [*uvicorn, "--http", "httptools"],
        "uvicorn (h11)": [*uvicorn, "--http", "h11"],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running(command: list[str], port: int) -> Iterator[None]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{command[2]} did not start") from None
                time.sleep(0.05)  # polling a subprocess that is starting up
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def describe(case: Case, address: tuple[str, int], idle: float) -> str:
    outcome = observe(address, case.data, idle=idle, timeout=10)
    served = served_targets(address, case)
    text = outcome.describe()
    return f"{text} (app: {served})" if served else text


def served_targets(address: tuple[str, int], case: Case) -> str:
    """What reached the app, from the bodies of its answers; measured with a second send."""
    with socket.create_connection(address, timeout=10) as sock:
        send(sock, case.data)
        reader = ResponseReader(sock, time.monotonic() + 2)
        seen = []
        try:
            while True:
                reader.deadline = time.monotonic() + 0.3
                response = reader.response()
                if response is None:
                    break
                if response.status == 200:
                    text = response.body.decode("latin-1")
                    seen.append(text if len(text) < 40 else text[:30] + "... " + text.rsplit(" ", 1)[-1])
        except (TimeoutError, ValueError):
            pass
    return ", ".join(seen)


def expected(case: Case) -> str:
    parts = [str(200) for seen in case.seen if seen.complete]
    if case.status is not None:
        parts.append(str(case.status))
    parts.append("closed" if case.close else "open")
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=float, default=0.5, help="silence that ends a case, in seconds")
    parser.add_argument("--markdown", help="write the table to this file")
    parser.add_argument("--servers", default="", help="comma-separated subset of the servers")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONPATH", os.getcwd())
    port = free_port()
    everything = commands(port)
    names = [n.strip() for n in args.servers.split(",") if n.strip()] or list(everything)
    results: dict[str, dict[str, str]] = {}
    for name in names:
        with running(everything[name], port):
            results[name] = {case.name: describe(case, ("127.0.0.1", port), args.idle) for case in CASES}
        print(f"{name}: done", file=sys.stderr)
    lines = ["| category | case | strict expectation | " + " | ".join(names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for case in CASES:
        cells = [results[name][case.name] for name in names]
        lines.append(f"| {case.category} | `{case.name}` | {expected(case)} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as file:
            file.write(table + "\n")


if __name__ == "__main__":
    main()
