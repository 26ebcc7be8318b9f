#!/usr/bin/env python3
"""Side-by-side benchmark of asgisock, uvicorn, granian and hypercorn, with a bare-uvloop ceiling.

Usage::

    python bench/run.py                                   # everything, 3 rounds (~30 min)
    python bench/run.py --quick                           # a smoke run: short, 1 round
    python bench/run.py --servers asgisock,uvicorn --scenarios http-plaintext,ws-echo-small

Each server runs one worker pinned to CPU 0; the load generator (wrk, or bench/wsload.py) is
pinned to CPU 1. The TLS scenarios (https-plaintext, wss-echo-small) give every server the same
certificate, made with trustme into the run's temporary directory at the start. Servers alternate within each round (A B C … A B C …) so that a slow patch of
the machine hits every server alike, and each figure is the median over rounds. Results go
to bench/results.json (bench/results-quick.json with --quick), then bench/report.py renders
docs/benchmarks.md and docs/benchmarks.png from them (not for --quick unless --report).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import certs
import env
import report
from scenarios import SCENARIOS, MeasureError, Scenario, Settings
from servers import CEILING, SERVERS, TLS_OPTIONS, ServerError, file_limit, server_argv, start

QUICK = Settings(
    duration=2.0,
    warmup=0.5,
    idle_connections=1_000,
    growth_requests=(10_000, 100_000),
)


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fields = {
        key.strip(): value.strip()
        for key, _, value in (line.partition(":") for line in lscpu.splitlines())
    }
    with open("/proc/meminfo") as meminfo:
        memory_kib = int(meminfo.readline().split()[1])
    return {
        "cpu": fields.get("Model name", platform.processor()),
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 2**20, 1),
        "kernel": platform.release(),
        "hypervisor": fields.get("Hypervisor vendor", ""),
        "open_files_limit": file_limit(),
    }


def git_state() -> dict[str, str]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=env.REPO_ROOT, capture_output=True,
                              text=True, check=False)
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "asgisock_changes": git("status", "--porcelain", "--", "asgisock"),
    }


def commands(settings: Settings, servers: list[str]) -> dict[str, Any]:
    """The exact command lines, with PORT standing for the port picked at each start."""
    def show(argv: list[str]) -> str:
        return " ".join(argv).replace(str(env.REPO_ROOT) + "/", "").replace("99999", "PORT")

    return {
        "servers": {name: show(server_argv(name, "APP", 99999)) for name in servers},
        "access_log": {name: show(server_argv(name, "APP", 99999, access_log=True)) for name in servers
                       if name != CEILING},
        "tls_options": {name: f"{TLS_OPTIONS[name][0]} CERT {TLS_OPTIONS[name][1]} KEY"
                        for name in servers},
        "pinning": f"prlimit --nofile={file_limit()}:{file_limit()} taskset -c 0 SERVER; "
        "taskset -c 1 GENERATOR",
        "settings": {k: v for k, v in vars(settings).items() if k not in ("wrk", "scratch")},
    }


def load_average() -> float:
    return os.getloadavg()[0]


TIME_WAIT_LIMIT = 2_000
"""Sockets in TIME-WAIT that a run may start with. A run of ``http-close`` leaves one for each of
its 100,000-odd connections, for 60 s; with 20,000 of them the next keep-alive run measured
half its requests/s (asgisock ``http-plaintext``: 24,676 at 78% of a core, 16.4 µs of kernel
time per request, against 43,592 at 97% and 8.3 µs once they had gone), so whichever server
runs next pays for the one before it."""
TIME_WAIT_WAIT = 75.0
"""Seconds to wait for them at most (the kernel keeps a TIME-WAIT socket for 60 s)."""


def time_wait_sockets() -> int | None:
    """Sockets in TIME-WAIT on this machine (``tw`` in ``/proc/net/sockstat``); None where unknown."""
    try:
        fields = Path("/proc/net/sockstat").read_text().split()
    except OSError:
        return None
    return int(fields[fields.index("tw") + 1]) if "tw" in fields else None


def wait_for_time_wait() -> None:
    """Let the TIME-WAIT sockets of earlier runs expire before the next run starts."""
    count = time_wait_sockets()
    if count is None or count <= TIME_WAIT_LIMIT:
        return
    started = time.monotonic()
    log(f"waiting for {count:,} sockets in TIME-WAIT to expire")
    while count is not None and count > TIME_WAIT_LIMIT and time.monotonic() - started < TIME_WAIT_WAIT:
        time.sleep(0.5)  # polling the kernel's count, bounded by TIME_WAIT_WAIT
        count = time_wait_sockets()
    log(f"waited {time.monotonic() - started:.0f} s; {count:,} left" if count is not None else "waited")


def measure_once(
    scenario: Scenario, server: str, settings: Settings, log_dir: Path
) -> dict[str, Any]:
    wait_for_time_wait()
    try:
        running = start(server, scenario.app, log_dir, tls=settings.tls if scenario.tls else None,
                        access_log=scenario.access_log)
    except ServerError as error:
        return {"error": str(error)}
    try:
        result = scenario.measure(settings, running)
        running.check_alive()
        if running.negotiated:
            result["tls"] = running.negotiated
        return result
    except (ServerError, MeasureError) as error:
        return {"error": str(error)}
    finally:
        running.stop()


def describe(result: dict[str, Any]) -> str:
    if "error" in result:
        return "ERROR " + str(result["error"]).splitlines()[0]
    text = f"{result['value']:,.1f}"
    for key in ("p50_us", "p99_us"):
        if key in result:
            text += f"  {key[:3]} {result[key] / 1000:.2f} ms"
    for key in ("server_cpu", "client_cpu"):
        if key in result:
            text += f"  {key.split('_')[0]} {100 * result[key]:.0f}%"
    if result.get("errors"):
        text += f"  errors {result['errors']}"
    if result.get("deflate_offered") and not result.get("deflate_negotiated"):
        text += "  (deflate NOT negotiated)"
    return text


def run_scenario(
    scenario: Scenario, servers: list[str], rounds: int, settings: Settings, log_dir: Path
) -> list[dict[str, Any]]:
    runs = []
    if scenario.access_log:
        servers = [server for server in servers if server != CEILING]  # it has no access log
    for round_number in range(1, (1 if scenario.memory else rounds) + 1):
        for server in servers:
            result = measure_once(scenario, server, settings, log_dir)
            log(f"{scenario.name:<16} round {round_number}  {server:<10} {describe(result)}")
            runs.append({"scenario": scenario.name, "server": server,
                         "round": round_number, **result})
    for server in servers:
        values = [r["value"] for r in runs if r["server"] == server and "value" in r]
        if values:
            log(f"{scenario.name:<16} median    {server:<10} {statistics.median(values):,.1f}"
                f" {scenario.unit}")
    return runs


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    names = [s.name for s in SCENARIOS]
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--servers", default="asgisock,uvicorn,granian,hypercorn",
                        help="comma-separated; the ceiling is added unless --no-ceiling")
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument("--scenarios", default=",".join(names),
                        help=f"comma-separated, from: {', '.join(names)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, help="measured seconds per run")
    parser.add_argument("--quick", action="store_true", help="short runs, 1 round, no doc")
    parser.add_argument("--output", type=Path, help="results file (default bench/results.json)")
    parser.add_argument("--report", action=argparse.BooleanOptionalAction,
                        help="render docs/benchmarks.md (default: yes unless --quick)")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(names)
    unknown |= set(args.servers.split(",")) - set(SERVERS)
    if unknown:
        parser.error(f"unknown names: {', '.join(sorted(unknown))}")
    return args


def in_bench_venv() -> bool:
    return Path(sys.prefix).resolve() == env.VENV.resolve()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not in_bench_venv():
        # Everything from here on (wrk scripts, reports, the chart) runs inside the bench venv.
        python = env.ensure_venv()
        forwarded = list(argv) if argv is not None else sys.argv[1:]
        os.execv(python, [str(python), str(Path(__file__).resolve()), *forwarded])
    settings = QUICK if args.quick else Settings()
    rounds = 1 if args.quick else args.rounds
    if args.duration:
        settings.duration = args.duration
    servers = args.servers.split(",") + ([] if args.no_ceiling else [CEILING])
    scenarios = [s for s in SCENARIOS if s.name in args.scenarios.split(",")]
    output = args.output or env.BENCH_DIR / ("results-quick.json" if args.quick else "results.json")

    python = env.VENV_PYTHON
    settings.wrk = env.ensure_wrk()
    if os.cpu_count() is None or (os.cpu_count() or 0) < 2:
        log("warning: fewer than 2 CPUs; server and generator will share one")
    meta = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_before": load_average(),
        "machine": machine(),
        "versions": {**env.versions(python), "wrk": wrk_version(settings.wrk)},
        "git": git_state(),
        "rounds": rounds,
        "quick": args.quick,
        "servers": servers,
        "commands": commands(settings, servers),
        "argv": ["python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])],
    }
    if meta["load_before"] > 0.5:
        log(f"warning: load average is {meta['load_before']:.2f}; results will be noisy")
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="asgisock-bench-") as scratch:
        settings.scratch = Path(scratch)
        log(f"server logs in {scratch}")
        if any(scenario.tls for scenario in scenarios):
            settings.tls = certs.make(settings.scratch)
        for scenario in scenarios:
            runs += run_scenario(scenario, servers, rounds, settings, Path(scratch))
            save(output, meta, runs, started)
    shown = output.relative_to(env.REPO_ROOT) if output.is_relative_to(env.REPO_ROOT) else output
    log(f"results in {shown} "
        f"({(time.monotonic() - started) / 60:.1f} min)")
    if args.report if args.report is not None else not args.quick:
        report.render(output)
    else:
        print(report.text_tables(json.loads(output.read_text())))
    return 0


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).split("\n", 1)[0].split(" [")[0].removeprefix("wrk ")


def save(output: Path, meta: dict[str, Any], runs: list[dict[str, Any]], started: float) -> None:
    meta = {**meta, "load_after": load_average(), "minutes": (time.monotonic() - started) / 60,
            "git_after": git_state()}
    output.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    if shutil.which("taskset") is None:
        sys.exit("bench: taskset (util-linux) is required")
    sys.exit(main())
