#!/usr/bin/env python3
"""CPU instructions per keep-alive request through asgisock's protocol objects, counted by
callgrind.

    python bench/instructions.py --setting metrics_port=0    # what a setting costs
    python bench/instructions.py --revision HEAD             # the tree beside a revision
    python bench/instructions.py --body 65536                # an upload, answered unread
    python bench/instructions.py --close                     # a connection per request

Requests per second move with whatever else the host runs; the instructions a request costs
do not, so this is how a change of a few percent is measured on a shared machine. Each count
runs ``python`` (the bench venv's, as in ``compare.py``) under ``valgrind --tool=callgrind``:
an ``HTTPProtocol`` built from a ``Config`` as the server builds it, on uvloop, is fed N and then
3N requests (``GET /``, answered with 13 bytes and a Content-Length) through a transport that
only counts its writes, one request per turn of the event loop (with ``--close``, each request
on a connection of its own that asks to be closed after it, made and lost as the event loop
makes and loses it). What the two runs have in
common cancels out of ``(I(3N) - I(N)) / 2N``, and with no sockets, timers or other
connections the figure repeats to within a few instructions. A real server adds the
socket calls and its periodic work; ``compare.py`` measures that, when the host allows.
Instructions are not time (a cache miss costs one).
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import env
from compare import build_in_place, variable, worktree

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


CLOSE_REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


def request(body: int | None, close: bool = False) -> bytes:
    """``GET /``; or, given a body size, the POST of the ``http-upload-unread`` scenario."""
    if body is None:
        return CLOSE_REQUEST if close else REQUEST
    return (b"POST / HTTP/1.1\r\nHost: bench\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n" % body + b"x" * body)


class CountingTransport:
    """What ``HTTPProtocol`` needs of a transport, keeping only the number of writes."""

    def __init__(self) -> None:
        self.writes = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes += 1

    def writelines(self, chunks: Sequence[bytes]) -> None:
        self.writes += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


async def plaintext(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


async def drive(requests: int, settings: dict[str, Any], body: int | None, close: bool) -> None:
    """The measured program: ``requests`` requests through one connection's protocol, or with
    ``close`` each through a connection of its own."""
    from asgisock.config import Config
    from asgisock.transport.http import HTTPProtocol
    from asgisock.transport.state import ServerState

    config = Config(plaintext, **{"access_log": False, "lifespan": "off", **settings})
    state = ServerState(config, plaintext, asyncio.get_running_loop())
    gc.collect()
    gc.freeze()  # the collector's passes over long-lived objects would vary with the tree
    data = request(body, close)
    if close:
        writes = 0
        for _ in range(requests):
            protocol = HTTPProtocol(state, local=("127.0.0.1", 8000))  # a listener on one address gives it
            transport = CountingTransport()
            protocol.connection_made(transport)  # type: ignore[arg-type]
            protocol.data_received(data)
            await asyncio.sleep(0)
            if not transport.closed:
                raise SystemExit("instructions: the server kept a connection that asked to be closed")
            protocol.connection_lost(None)
            writes += transport.writes
    else:
        protocol = HTTPProtocol(state)
        transport = CountingTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        for _ in range(requests):
            protocol.data_received(data)
            await asyncio.sleep(0)
        writes = transport.writes
    if writes < requests:
        raise SystemExit(f"instructions: {writes} writes for {requests} requests")


def ensure_valgrind() -> str:
    return env.ensure_tool("valgrind")


def count(source: Path, settings: dict[str, Any], requests: int, load: dict[str, Any], out: Path) -> int:
    """Instructions of one program run that served ``requests`` requests."""
    command = [ensure_valgrind(), "--tool=callgrind", f"--callgrind-out-file={out}",
               str(env.VENV_PYTHON), __file__, "--drive", str(requests), json.dumps(settings), json.dumps(load)]
    environment = {**os.environ, "PYTHONPATH": str(source), "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"instructions: the measured run failed:\n{done.stderr[-2000:]}")
    totals = re.search(rb"^summary: (\d+)", out.read_bytes(), re.MULTILINE)
    if totals is None:
        raise SystemExit(f"instructions: no totals in {out}")
    return int(totals.group(1))


def per_request(source: Path, settings: dict[str, Any], requests: int, load: dict[str, Any], scratch: Path) -> float:
    """``load``: ``drive``'s ``body`` and ``close``."""
    few = count(source, settings, requests, load, scratch / "few.out")
    many = count(source, settings, 3 * requests, load, scratch / "many.out")
    return (many - few) / (2 * requests)


def setting(text: str) -> tuple[str, Any]:
    """``NAME=VALUE``: a ``Config`` keyword, its value a Python literal or else a string."""
    name, value = variable(text)
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--setting", action="append", default=[], type=setting, metavar="NAME=VALUE",
                        help="also measure with this Config keyword set (repeatable; all together)")
    parser.add_argument("--revision", help="also measure this git revision, the same way")
    parser.add_argument("--requests", type=int, default=1000, help="N (default 1000)")
    parser.add_argument("--body", type=int, metavar="SIZE",
                        help="POST a SIZE-byte body, which the app answers without reading (default: GET)")
    parser.add_argument("--close", action="store_true",
                        help="each request on a new connection, closed after it (default: keep-alive)")
    parser.add_argument("--drive", nargs=3, metavar=("REQUESTS", "SETTINGS", "LOAD"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.drive is not None:
        import uvloop

        uvloop.run(drive(int(args.drive[0]), json.loads(args.drive[1]), **json.loads(args.drive[2])))
        return 0
    if Path(sys.prefix).resolve() != env.VENV.resolve():
        python = env.ensure_venv()
        os.execv(str(python), [str(python), __file__, *sys.argv[1:]])
    variants: list[tuple[str, dict[str, Any]]] = [("default", {})]
    if args.setting:
        variants.append((" ".join(f"{name}={value!r}" for name, value in args.setting), dict(args.setting)))
    with tempfile.TemporaryDirectory(prefix="asgisock-instructions-") as scratch, \
            worktree(args.revision) if args.revision else nullcontext() as other:
        sides = [("tree", env.REPO_ROOT)]
        if other is not None:
            build_in_place(other)
            sides.insert(0, (args.revision, other))
        first: float | None = None
        for label, settings in variants:
            for side, source in sides:
                figure = per_request(source, settings, args.requests, {"body": args.body, "close": args.close},
                                     Path(scratch))
                first = figure if first is None else first
                print(f"{side:<10} {label:<24} {figure:>9,.0f} instructions per request "
                      f"({figure / first:.3f}x the first)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
