"""The benchmark scenarios: what load each one drives, and how its figure is read.

Every measurement runs its load generator pinned to CPU 1 (the server is on CPU 0), and
records the CPU use of both over the measured interval: a server near 100% and a generator
well below it means the figure is the server's.

A TLS scenario runs the same load, through the same function, against a server started with
the run's certificate (``bench/certs.py``): the ``RunningServer`` says whether it speaks TLS, and
the generators connect accordingly (wrk to an ``https://`` URL, wsload with ``--ca-file``).
"""

from __future__ import annotations

import json
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Literal

import procstat
from certs import TLSFiles
from env import BENCH_DIR, VENV
from servers import CLIENT_CPU, RunningServer, pinned

WRK_DIR: Final = BENCH_DIR / "wrk"
Result = dict[str, Any]


class MeasureError(Exception):
    """The load generator failed or reported errors that void the figure."""


@dataclass
class Settings:
    """Durations and sizes, full or --quick."""

    duration: float = 8.0  # seconds measured per run
    warmup: float = 1.0  # seconds of unmeasured load first
    http_connections: int = 64
    ws_connections: int = 50
    broadcast_connections: int = 1000
    idle_connections: int = 10_000
    growth_requests: tuple[int, int] = (10_000, 1_000_000)
    wrk: str = "wrk"
    scratch: Path = field(default_factory=lambda: Path("/tmp"))
    tls: TLSFiles | None = None  # the run's certificate, for the TLS scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    app: str  # attribute of bench/apps.py
    unit: str
    measure: Callable[[Settings, RunningServer], Result]
    higher_is_better: bool = True
    memory: bool = False  # measured once per server, not over rounds
    tls: bool = False  # served over TLS with the run's certificate
    access_log: Literal["pipe", "file"] | None = None  # the server's access log on, and where to (servers.py)


# ------------------------------------------------------------------------------ wrk


def wrk_script(settings: Settings, parts: list[str]) -> Path:
    """One Lua file: the scenario's script(s) followed by report.lua's JSON summary."""
    path = settings.scratch / ("-".join(p.removesuffix(".lua") for p in parts) + ".lua")
    path.write_text("".join((WRK_DIR / p).read_text() for p in [*parts, "report.lua"]))
    return path


def wrk_argv(
    settings: Settings, server: RunningServer, script: Path, seconds: float,
    headers: list[str], script_args: list[str], path: str = "/",
) -> list[str]:
    argv = [settings.wrk, "-t1", f"-c{settings.http_connections}", f"-d{seconds:g}s",
            "--timeout", "10s", "-s", str(script)]
    for header in headers:
        argv += ["-H", header]
    argv.append(server.url(path))
    if script_args:
        argv += ["--", *script_args]
    return pinned(CLIENT_CPU, argv)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def last_json(output: str) -> Result:
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            found: Result = json.loads(line)
            return found
    raise MeasureError(f"no JSON summary in the generator's output:\n{output[-2000:]}")


def run_wrk(
    settings: Settings, server: RunningServer, parts: list[str],
    headers: list[str] | None = None, script_args: list[str] | None = None, path: str = "/",
    min_response: int = 13,
) -> Result:
    """Warm up, then one measured wrk run; requests/s with latency and both CPU loads."""
    script = wrk_script(settings, parts)
    if settings.warmup > 0:
        argv = wrk_argv(settings, server, script, settings.warmup, headers or [],
                        script_args or [], path)
        subprocess.run(argv, capture_output=True, check=False)
    argv = wrk_argv(settings, server, script, settings.duration, headers or [],
                    script_args or [], path)
    pids = procstat.tree(server.pid)
    (user_before, system_before), client_before, wall = procstat.cpu_times(pids), children_cpu(), time.time()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.time() - wall
    user_after, system_after = procstat.cpu_times(pids)
    server_user = user_after - user_before
    server_cpu = server_user + system_after - system_before
    summary = last_json(done.stdout)
    seconds = summary["duration_us"] / 1e6
    errors = sum(summary[k] for k in ("connect_errors", "read_errors", "write_errors",
                                       "status_errors", "timeouts"))
    if summary["requests"] == 0:
        raise MeasureError(f"wrk completed no request:\n{done.stdout}{done.stderr}")
    if summary["bytes"] < summary["requests"] * min_response:
        raise MeasureError(f"responses average {summary['bytes'] // summary['requests']} bytes,"
                           f" fewer than the {min_response} expected")
    return {
        "value": summary["requests"] / seconds,
        "requests": summary["requests"],
        "seconds": seconds,
        "p50_us": summary["p50_us"],
        "p99_us": summary["p99_us"],
        "mib_per_s": summary["bytes"] / seconds / 2**20,
        "errors": errors,
        "server_cpu": server_cpu / wall,
        "server_user_cpu": server_user / wall,
        "client_cpu": (children_cpu() - client_before) / wall,
    }


def http_plaintext(settings: Settings, server: RunningServer) -> Result:
    return run_wrk(settings, server, [])


def http_pipelined(settings: Settings, server: RunningServer) -> Result:
    return run_wrk(settings, server, ["pipeline.lua"], script_args=["16"])


def http_close(settings: Settings, server: RunningServer) -> Result:
    return run_wrk(settings, server, [], headers=["Connection: close"])


def http_upload(settings: Settings, server: RunningServer) -> Result:
    return run_wrk(settings, server, ["upload.lua"])


def http_stream(settings: Settings, server: RunningServer) -> Result:
    return run_wrk(settings, server, [], path="/stream", min_response=2**20)


def http_file(settings: Settings, server: RunningServer) -> Result:
    return run_wrk(settings, server, [], path="/file", min_response=2**20)


# ------------------------------------------------------------------------------ WebSocket


def wsload_argv(server: RunningServer, mode: str, *options: str) -> list[str]:
    python = str(VENV / "bin" / "python")
    tls = ["--ca-file", str(server.tls.ca)] if server.tls else []
    return pinned(CLIENT_CPU, [python, str(BENCH_DIR / "wsload.py"), mode,
                               "--port", str(server.port), *tls, *options])


def run_wsload(settings: Settings, server: RunningServer, mode: str, *options: str) -> Result:
    argv = wsload_argv(server, mode, "--duration", f"{settings.duration:g}",
                       "--warmup", f"{settings.warmup:g}", "--server-pid", str(server.pid),
                       *options)
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise MeasureError(f"wsload failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    summary = last_json(done.stdout)
    summary["value"] = summary["messages_per_s"]
    summary["errors"] = summary["mismatches"] + summary["lost"]
    return summary


def ws_echo_small(settings: Settings, server: RunningServer) -> Result:
    return run_wsload(settings, server, "echo", "--connections", str(settings.ws_connections),
                      "--size", "16")


def ws_echo_large(settings: Settings, server: RunningServer) -> Result:
    return run_wsload(settings, server, "echo", "--connections", str(settings.ws_connections),
                      "--size", "65536", "--binary")


def ws_echo_deflate(settings: Settings, server: RunningServer) -> Result:
    return run_wsload(settings, server, "echo", "--connections", str(settings.ws_connections),
                      "--size", "16", "--deflate")


def ws_broadcast(settings: Settings, server: RunningServer) -> Result:
    return run_wsload(settings, server, "broadcast", "--path", "/broadcast", "--connections",
                      str(settings.broadcast_connections), "--size", "16", "--depth", "4")


# ------------------------------------------------------------------------------ memory

SETTLE: Final = 2.0  # seconds for a server to finish its work before its RSS is read


def expect_event(stream: IO[str], event: str) -> Result:
    for line in stream:
        if line.startswith("{"):
            message: Result = json.loads(line)
            if message.get("event") == event:
                return message
    raise MeasureError(f"wsload ended before reporting {event!r}")


def idle_memory(settings: Settings, server: RunningServer, http: bool) -> Result:
    """RSS per idle connection: (RSS with N open - RSS after a warm-up) / N."""
    options = ["--connections", str(settings.idle_connections)] + (["--http"] if http else [])
    with subprocess.Popen(wsload_argv(server, "idle", *options), stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as load:
        assert load.stdin is not None and load.stdout is not None
        expect_event(load.stdout, "baseline")
        time.sleep(SETTLE)
        pids = procstat.tree(server.pid)
        baseline = procstat.rss_bytes(pids)
        load.stdin.write("open\n")
        load.stdin.flush()
        ready = expect_event(load.stdout, "ready")
        time.sleep(SETTLE)
        loaded = procstat.rss_bytes(pids)
        load.stdin.write("close\n")
        load.stdin.flush()
        result = expect_event(load.stdout, "result")
        server.check_alive()
    if result["lost"]:
        raise MeasureError(f"{result['lost']} idle connections were closed by the server")
    count = ready["open"]
    return {
        "value": (loaded - baseline) / count / 1024,
        "connections": count,
        "rss_baseline_mib": baseline / 2**20,
        "rss_loaded_mib": loaded / 2**20,
        "open_seconds": ready["seconds"],
        "errors": 0,
    }


def memory_ws_idle(settings: Settings, server: RunningServer) -> Result:
    return idle_memory(settings, server, http=False)


def memory_http_idle(settings: Settings, server: RunningServer) -> Result:
    return idle_memory(settings, server, http=True)


def wrk_requests(settings: Settings, server: RunningServer, count: int) -> int:
    """Send ``count`` keep-alive requests (a few more: those in flight at the end)."""
    script = wrk_script(settings, ["count.lua"])
    argv = wrk_argv(settings, server, script, 3600, [], [str(count)])
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as wrk:
        assert wrk.stdout is not None
        output = []
        for line in wrk.stdout:
            output.append(line)
            if line.startswith("limit reached"):
                wrk.send_signal(2)  # SIGINT: wrk stops and prints its summary
    summary = last_json("".join(output))
    sent: int = summary["requests"]
    return sent


def memory_growth(settings: Settings, server: RunningServer) -> Result:
    """RSS after the first N requests, and after M in all: a leak shows as growth."""
    first, total = settings.growth_requests
    pids = procstat.tree(server.pid)
    done = wrk_requests(settings, server, first)
    time.sleep(SETTLE)
    early = procstat.rss_bytes(pids)
    started = time.time()
    done += wrk_requests(settings, server, total - done)
    seconds = time.time() - started
    time.sleep(SETTLE)
    late = procstat.rss_bytes(pids)
    return {
        "value": (late - early) / 2**20,
        "rss_early_mib": early / 2**20,
        "rss_late_mib": late / 2**20,
        "requests_early": first,
        "requests_late": done,
        "seconds": seconds,
        "errors": 0,
    }


SCENARIOS: Final = (
    Scenario("http-plaintext", "HTTP plaintext, keep-alive", "plaintext", "requests/s",
             http_plaintext),
    Scenario("http-plaintext-log", "HTTP plaintext, keep-alive, access log on", "plaintext",
             "requests/s", http_plaintext, access_log="pipe"),
    Scenario("http-plaintext-logfile", "HTTP plaintext, keep-alive, access log on, to a file", "plaintext",
             "requests/s", http_plaintext, access_log="file"),
    Scenario("https-plaintext", "HTTPS plaintext, keep-alive", "plaintext", "requests/s",
             http_plaintext, tls=True),
    Scenario("http-pipelined", "HTTP pipelining, depth 16", "plaintext", "requests/s",
             http_pipelined),
    Scenario("http-close", "HTTP, new connection per request", "plaintext", "requests/s",
             http_close),
    Scenario("http-upload", "HTTP upload, 64 KiB POST bodies", "upload", "requests/s",
             http_upload),
    Scenario("http-upload-unread", "HTTP upload, 64 KiB POST bodies, answered unread", "plaintext",
             "requests/s", http_upload),
    Scenario("http-file", "HTTP download, 1 MiB file (pathsend where offered)", "file", "requests/s",
             http_file),
    Scenario("http-stream", "HTTP download, 1 MiB chunked response", "stream", "requests/s",
             http_stream),
    Scenario("ws-echo-small", "WebSocket echo, 16-byte text", "echo", "messages/s",
             ws_echo_small),
    Scenario("wss-echo-small", "WebSocket over TLS (wss) echo, 16-byte text", "echo",
             "messages/s", ws_echo_small, tls=True),
    Scenario("ws-echo-64k", "WebSocket echo, 64 KiB binary", "echo", "messages/s",
             ws_echo_large),
    Scenario("ws-echo-deflate", "WebSocket echo, 16-byte text, permessage-deflate", "echo",
             "messages/s", ws_echo_deflate),
    Scenario("ws-broadcast", "WebSocket broadcast to 1,000 connections", "broadcast",
             "messages delivered/s", ws_broadcast),
    Scenario("mem-ws-idle", "Memory per idle WebSocket connection", "idle",
             "KiB per connection", memory_ws_idle, higher_is_better=False, memory=True),
    Scenario("mem-http-idle", "Memory per idle HTTP keep-alive connection", "idle",
             "KiB per connection", memory_http_idle, higher_is_better=False, memory=True),
    Scenario("mem-growth", "RSS growth from 10,000 to 1,000,000 requests", "plaintext",
             "MiB", memory_growth, higher_is_better=False, memory=True),
)
