#!/usr/bin/env python3
"""Profile one server under one benchmark scenario's load with py-spy.

Usage::

    python bench/profile_server.py ws-echo-small                 # asgisock, 10 s
    python bench/profile_server.py http-plaintext --server uvicorn --duration 5 --top 40
    python bench/profile_server.py https-plaintext    # over TLS, with a certificate made for it

Starts the server exactly as bench/run.py does (pinned to CPU 0, load on CPU 1), samples it
with ``py-spy record`` (installed into the bench venv on first use) while the scenario's load
runs, then prints the functions that take the most time: "self" is time with the function at
the top of the stack, "total" includes what it calls. The collapsed stacks are kept for a
flame graph tool.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import certs
import env
from scenarios import SCENARIOS, Settings
from servers import SERVERS, start


def ensure_py_spy() -> Path:
    py_spy = env.VENV / "bin" / "py-spy"
    if not py_spy.exists():
        subprocess.run([str(env.VENV_PYTHON), "-m", "pip", "install", "-q", "py-spy"], check=True)
    return py_spy


def summarise(stacks: Path, top: int) -> str:
    """Self and inclusive sample counts per function, from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in stacks.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples", f"{'self':>7} {'total':>7}  function (file:first line)"]
    for frame, count in own.most_common(top):
        lines.append(f"{100 * count / total:6.1f}% {100 * inclusive[frame] / total:6.1f}%  {frame}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("scenario", choices=[s.name for s in SCENARIOS if not s.memory])
    parser.add_argument("--server", choices=SERVERS, default="asgisock")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--output", type=Path, help="keep the collapsed stacks here")
    args = parser.parse_args(argv)
    if Path(sys.prefix).resolve() != env.VENV.resolve():
        python = env.ensure_venv()
        forwarded = list(argv) if argv is not None else sys.argv[1:]
        os.execv(python, [str(python), str(Path(__file__).resolve()), *forwarded])
    py_spy = ensure_py_spy()
    scenario = next(s for s in SCENARIOS if s.name == args.scenario)
    with tempfile.TemporaryDirectory(prefix="asgisock-profile-") as scratch:
        settings = Settings(duration=args.duration + 2, warmup=1.0, wrk=env.ensure_wrk(),
                            scratch=Path(scratch))
        stacks = args.output or Path(scratch) / "stacks.txt"
        tls = certs.make(Path(scratch)) if scenario.tls else None
        server = start(args.server, scenario.app, Path(scratch), tls=tls)
        try:
            load = threading.Thread(target=scenario.measure, args=(settings, server))
            load.start()
            subprocess.run([str(py_spy), "record", "--pid", str(server.pid), "--subprocesses",
                            "--duration", f"{args.duration + 1:g}", "--rate", "250",
                            "--format", "raw", "--output", str(stacks), "--nonblocking",
                            "--function"],
                           check=True, capture_output=True)
            load.join()
        finally:
            server.stop()
        print(summarise(stacks, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
