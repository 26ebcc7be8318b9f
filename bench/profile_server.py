#!/usr/bin/env python3
"""Profile one server under one benchmark scenario's load with py-spy.

Usage::

    python bench/profile_server.py ws-echo-small                 # asgisock, 10 s
    python bench/profile_server.py http-plaintext --server uvicorn --duration 5 --top 40
    python bench/profile_server.py https-plaintext    # over TLS, with a certificate made for it
    python bench/profile_server.py http-close --perf  # where the CPU goes: kernel, CPython, C

Starts the server exactly as bench/run.py does (pinned to CPU 0, load on CPU 1), samples it
with ``py-spy record`` (installed into the bench venv on first use) while the scenario's load
runs, then prints the functions that take the most time: "self" is time with the function at
the top of the stack, "total" includes what it calls. The collapsed stacks are kept for a
flame graph tool.

``--perf`` samples with Linux ``perf`` instead (``apt install linux-perf``), which sees what
py-spy cannot: the time spent in the kernel (system calls, TCP, page faults) and in C
(CPython's evaluation loop, uvloop, httptools, libc). It prints that split by binary, then the
costliest symbols.
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


def perf_summary(data: Path, top: int) -> str:
    """The shares of samples by binary, then by symbol, from ``perf report``."""
    def report(sort: str) -> list[str]:
        result = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--sort", sort],
                                check=True, capture_output=True, text=True)
        return [line for line in result.stdout.splitlines() if line.strip() and not line.startswith("#")]

    return "\n".join(["by binary:", *report("dso")[:8], "", "by symbol:", *report("dso,sym")[:top]])


def record(args: argparse.Namespace, pid: int, output: Path, py_spy: Path | None) -> None:
    seconds = f"{args.duration + 1:g}"
    if py_spy is None:
        subprocess.run(["perf", "record", "-F", "999", "-p", str(pid), "-o", str(output), "--", "sleep", seconds],
                       check=True, capture_output=True)
        return
    subprocess.run([str(py_spy), "record", "--pid", str(pid), "--subprocesses", "--duration", seconds,
                    "--rate", "250", "--format", "raw", "--output", str(output), "--nonblocking", "--function"],
                   check=True, capture_output=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("scenario", choices=[s.name for s in SCENARIOS if not s.memory])
    parser.add_argument("--server", choices=SERVERS, default="asgisock")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--output", type=Path, help="keep the collapsed stacks (or perf's data) here")
    parser.add_argument("--perf", action="store_true", help="sample with perf: kernel and C included")
    args = parser.parse_args(argv)
    if Path(sys.prefix).resolve() != env.VENV.resolve():
        python = env.ensure_venv()
        forwarded = list(argv) if argv is not None else sys.argv[1:]
        os.execv(python, [str(python), str(Path(__file__).resolve()), *forwarded])
    py_spy = None if args.perf else ensure_py_spy()
    scenario = next(s for s in SCENARIOS if s.name == args.scenario)
    with tempfile.TemporaryDirectory(prefix="asgisock-profile-") as scratch:
        settings = Settings(duration=args.duration + 2, warmup=1.0, wrk=env.ensure_wrk(),
                            scratch=Path(scratch))
        stacks = args.output or Path(scratch) / ("perf.data" if args.perf else "stacks.txt")
        tls = certs.make(Path(scratch)) if scenario.tls else None
        server = start(args.server, scenario.app, Path(scratch), tls=tls)
        try:
            load = threading.Thread(target=scenario.measure, args=(settings, server))
            load.start()
            record(args, server.pid, stacks, py_spy)
            load.join()
        finally:
            server.stop()
        print(perf_summary(stacks, args.top) if args.perf else summarise(stacks, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
