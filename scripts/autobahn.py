#!/usr/bin/env python3
"""Run the Autobahn TestSuite's fuzzing client against a WebSocket echo server.

Usage::

    python scripts/autobahn.py                       # every case, against asgisock
    python scripts/autobahn.py --cases '1.*,2.*,5.*' --server uvicorn
    python scripts/autobahn.py --install-only        # only fetch and cache the client

The client, ``wstest``, is Python 2.7 software. It is installed once into a virtualenv under
``~/.cache/asgisock/autobahn`` (or ``$ASGISOCK_AUTOBAHN_DIR``) and reused from then on; when a
Docker engine runs, its ``crossbario/autobahn-testsuite`` image is used instead. The server
under test runs as a subprocess on 127.0.0.1 with ``scripts/autobahn_echo.py`` as its app.
Reports land in ``reports/autobahn/<server>/``. The exit status is 0 only when every selected
case is OK or INFORMATIONAL for both the data exchange and the close handshake.

See docs/autobahn.md for what the cases check and what a result means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS_DIR.parent
REPORTS_ROOT = REPO_ROOT / "reports" / "autobahn"
DEFAULT_CLIENT_DIR = Path("~/.cache/asgisock/autobahn")
DOCKER_IMAGE = "crossbario/autobahn-testsuite"
DOCKER_MOUNT = "/autobahn"

# virtualenv 20.15.1 is the last release that still creates Python 2.7 environments.
VIRTUALENV = "virtualenv==20.15.1"
# The versions autobahntestsuite 25.10.1 declares: they install on Python 2.7 and work together.
CLIENT_REQUIREMENTS = [
    "txaio==2.1.0",
    "incremental==16.10.1",
    "pyOpenSSL==19.1.0",
    "cryptography==3.3.2",
    "Twisted==19.10.0",
    "zope.interface==4.6.0",
    "jinja2==2.11.3",
    "markupsafe==1.1.1",
    "Werkzeug==1.0.1",
    "klein==17.10.0",
    "service_identity==18.1.0",
    "unittest2==1.1.0",
    "six==1.16.0",
    "autobahn[twisted,accelerate]==0.10.9",
]
# Installed with --no-deps: it declares the pins above plus setuptools==44.0.0, which would
# only replace the setuptools the virtualenv was seeded with.
TESTSUITE = "autobahntestsuite==25.10.1"

PASSING = frozenset({"OK", "INFORMATIONAL"})
VERDICT_ORDER = ["OK", "INFORMATIONAL", "NON-STRICT", "UNIMPLEMENTED", "FAILED"]
SERVER_START_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 10.0
PORT_ATTEMPTS = 3
NO_CASES = b"will run 0 test cases"


def log(message: str) -> None:
    print(f"autobahn: {message}", flush=True)


class HarnessError(Exception):
    """The run could not produce a verdict (install, server start-up, client failure)."""


# --------------------------------------------------------------------------- client install


@dataclass(frozen=True)
class Client:
    """How to launch wstest, and where a host directory appears to it."""

    argv: list[str]
    mount: Path | None = None  # host directory seen by the client as DOCKER_MOUNT

    def path(self, host_path: Path) -> str:
        """The path under which the client sees ``host_path``."""
        if self.mount is None:
            return str(host_path)
        return f"{DOCKER_MOUNT}/{host_path.relative_to(self.mount).as_posix()}"

    def command(self, spec: Path) -> list[str]:
        return [*self.argv, "-m", "fuzzingclient", "-s", self.path(spec)]


def client_dir() -> Path:
    return Path(os.environ.get("ASGISOCK_AUTOBAHN_DIR", str(DEFAULT_CLIENT_DIR))).expanduser()


def run(argv: Sequence[str], **kwargs: Any) -> None:
    """Run an install step, echoing it, and stop the harness if it fails."""
    log("$ " + " ".join(argv))
    result = subprocess.run(argv, check=False, **kwargs)
    if result.returncode != 0:
        raise HarnessError(f"{argv[0]} exited with status {result.returncode}")


def as_root(argv: list[str]) -> list[str]:
    if os.geteuid() == 0 or shutil.which("sudo") is None:
        return argv
    return ["sudo", *argv]


def docker_engine_runs() -> bool:
    """True when a Docker engine answers, not merely when the docker client is installed."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def python27_executable(candidate: str) -> str | None:
    """The real interpreter behind ``candidate`` if it is a usable Python 2.7, else None.

    pip needs ssl to reach PyPI and the builds need zlib. A pyenv shim either fails outright
    or forwards to some interpreter, so the path handed on is the one Python reports itself.
    """
    check = (
        "import sys, ssl, zlib; assert sys.version_info[:2] == (2, 7); "
        "sys.stdout.write(sys.executable)"
    )
    try:
        result = subprocess.run(
            [candidate, "-c", check], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    executable = result.stdout.decode(errors="replace").strip()
    return executable if result.returncode == 0 and executable else None


def python27_candidates() -> Iterator[str]:
    on_path = shutil.which("python2.7")
    if on_path is not None:
        yield on_path
    pyenv = Path("~/.pyenv/versions").expanduser()
    yield from (str(p) for p in sorted(pyenv.glob("2.7.*/bin/python2.7"), reverse=True))
    yield "/usr/bin/python2.7"


def find_python27() -> str | None:
    found = (python27_executable(c) for c in python27_candidates())
    return next((path for path in found if path is not None), None)


def deb822_stanzas(text: str) -> list[dict[str, str]]:
    """Parse a deb822 sources file into one dict per stanza (comments dropped)."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
            current = {}
        elif not line.startswith(("#", " ", "\t")) and ":" in line:
            key, _, value = line.partition(":")
            current[key.strip()] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def bullseye_sources() -> str:
    """A sources entry for bullseye, the last Debian release that ships python2.7.

    It reuses the mirror and keyring of the machine's bookworm entry, so a machine pointed
    at a local mirror keeps using it.
    """
    uris, signed_by = (
        "http://deb.debian.org/debian",
        "/usr/share/keyrings/debian-archive-keyring.gpg",
    )
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for stanza in deb822_stanzas(sources.read_text()):
            if "bookworm" in stanza.get("Suites", "").split():
                uris = stanza.get("URIs", uris)
                signed_by = stanza.get("Signed-By", signed_by)
                break
    return f"Types: deb\nURIs: {uris}\nSuites: bullseye\nComponents: main\nSigned-By: {signed_by}\n"


def apt_install_python27() -> None:
    log("no working python2.7 found: installing it from Debian bullseye with apt")
    entry = Path("/etc/apt/sources.list.d/bullseye.sources")
    if not entry.exists():
        log(f"writing {entry}")
        run(
            as_root(["tee", str(entry)]),
            input=bullseye_sources().encode(),
            stdout=subprocess.DEVNULL,
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(as_root(["apt-get", "update"]), env=env)
    install = ["apt-get", "install", "-y", "-t", "bullseye", "python2.7", "python2.7-dev"]
    run(as_root(install), env=env)


def install_wstest(target: Path) -> None:
    """Build the Python 2.7 virtualenv that holds wstest; every step is safe to repeat."""
    python27 = find_python27()
    if python27 is None:
        apt_install_python27()
        python27 = find_python27()
    if python27 is None:
        raise HarnessError("python2.7 is still missing after the apt install")
    log(f"using {python27}")
    # pip --target rather than a venv: Debian's Python has no ensurepip without python3-venv,
    # and --target is exempt from its "externally managed" refusal.
    tools = target / "tools"
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    run([*pip, "--target", str(tools), "--upgrade", VIRTUALENV])
    env = {**os.environ, "PYTHONPATH": str(tools)}
    run([sys.executable, "-m", "virtualenv", "-p", python27, str(target)], env=env)
    pip27 = [str(target / "bin" / "pip"), "install", "--no-python-version-warning"]
    run([*pip27, *CLIENT_REQUIREMENTS])
    run([*pip27, "--no-deps", TESTSUITE])


def installed_client(target: Path) -> Client | None:
    wstest = target / "bin" / "wstest"
    return Client([str(wstest)]) if wstest.exists() else None


def docker_client(run_dir: Path) -> Client:
    argv = ["docker", "run", "--rm", "--network", "host", "--env", "PYTHONUNBUFFERED=1"]
    argv += ["--volume", f"{run_dir}:{DOCKER_MOUNT}", DOCKER_IMAGE, "wstest"]
    return Client(argv, mount=run_dir)


def get_client(kind: str, run_dir: Path) -> Client:
    """The cached wstest if present, else Docker if an engine runs, else a fresh install."""
    target = client_dir()
    cached = installed_client(target)
    if kind != "docker" and cached is not None:
        return cached
    if kind == "docker" or (kind == "auto" and docker_engine_runs()):
        log(f"using the Docker image {DOCKER_IMAGE}")
        return docker_client(run_dir)
    log(f"installing the Autobahn TestSuite client into {target}")
    started = time.monotonic()
    install_wstest(target)
    log(f"client installed in {time.monotonic() - started:.0f} s")
    client = installed_client(target)
    if client is None:
        raise HarnessError(f"the install finished but {target / 'bin' / 'wstest'} is missing")
    return client


# --------------------------------------------------------------------------- server under test


def server_command(server: str, port: int, extra: Sequence[str]) -> list[str]:
    """Both servers take the same flags; 32 MiB covers the suite's largest message (16 MiB)."""
    app = ["autobahn_echo:app", "--app-dir", str(SCRIPTS_DIR), "--host", "127.0.0.1"]
    quiet = ["--no-access-log", "--log-level", "warning", "--ws-max-size", "33554432"]
    return [sys.executable, "-m", server, *app, "--port", str(port), *quiet, *extra]


def free_port() -> int:
    """A port the kernel just handed out; another process could take it before the server
    binds it, which is why start_server tries again when the port turns out to be in use."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def wait_until_accepting(proc: subprocess.Popen[bytes], port: int) -> bool:
    """Poll with connect() until the server listens; False if it exits first."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if accepts(port):
            return True
        time.sleep(0.05)
    raise HarnessError(f"the server did not accept connections within {SERVER_START_TIMEOUT:.0f} s")


def log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def start_server(
    server: str, port: int, extra: Sequence[str], log_path: Path
) -> tuple[subprocess.Popen[bytes], int]:
    for _ in range(PORT_ATTEMPTS if port == 0 else 1):
        chosen = port or free_port()
        argv = server_command(server, chosen, extra)
        log("$ " + " ".join(argv))
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait_until_accepting(proc, chosen):
            return proc, chosen
        output = log_tail(log_path)
        if "in use" not in output.lower():
            raise HarnessError(f"the server exited with status {proc.returncode}:\n{output}")
        log(f"port {chosen} was taken meanwhile; trying another")
    raise HarnessError("could not find a free port for the server")


def stop_process(proc: subprocess.Popen[bytes], first: signal.Signals) -> None:
    """Ask with ``first``, then kill the process group once the deadline passes."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, first)
    try:
        proc.wait(timeout=SERVER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        log(f"pid {proc.pid} ignored {first.name}; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# --------------------------------------------------------------------------- the fuzzing run


def patterns(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


def write_spec(
    client: Client, run_dir: Path, agent: str, port: int, cases: list[str], exclude: list[str]
) -> Path:
    spec = {
        "outdir": client.path(run_dir / "report"),
        "servers": [{"agent": agent, "url": f"ws://127.0.0.1:{port}"}],
        "cases": cases,
        "exclude-cases": exclude,
        "exclude-agent-cases": {},
    }
    path = run_dir / "fuzzingclient.json"
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return path


def forward_output(proc: subprocess.Popen[bytes], nothing_selected: threading.Event) -> None:
    """Echo wstest's output. When the selection matches no case wstest waits forever instead
    of exiting, so that announcement stops it."""
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.buffer.write(line)
        sys.stdout.flush()
        if NO_CASES in line:
            nothing_selected.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)


def run_fuzzer(client: Client, spec: Path, timeout: float) -> int:
    argv = client.command(spec)
    log("$ " + " ".join(argv))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    nothing_selected = threading.Event()
    reader = threading.Thread(target=forward_output, args=(proc, nothing_selected), daemon=True)
    reader.start()
    try:
        status = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"wstest did not finish within {timeout:.0f} s") from None
    finally:
        stop_process(proc, signal.SIGTERM)
        reader.join(timeout=SERVER_STOP_TIMEOUT)
    if nothing_selected.is_set():
        raise HarnessError("no case matches --cases once --exclude is applied")
    return status


# --------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class CaseResult:
    case: str
    behavior: str
    behavior_close: str
    duration_ms: int
    report: Path

    @property
    def category(self) -> int:
        return int(self.case.split(".")[0])

    @property
    def passed(self) -> bool:
        return self.behavior in PASSING and self.behavior_close in PASSING


def case_key(case: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case.split("."))


def load_results(report_dir: Path, agent: str) -> list[CaseResult]:
    index = report_dir / "index.json"
    if not index.exists():
        raise HarnessError(f"wstest wrote no {index}")
    cases: dict[str, dict[str, Any]] = json.loads(index.read_text()).get(agent, {})
    return [
        CaseResult(
            case,
            str(r["behavior"]),
            str(r["behaviorClose"]),
            int(r.get("duration", 0)),
            report_dir / str(r["reportfile"]),
        )
        for case, r in sorted(cases.items(), key=lambda item: case_key(item[0]))
    ]


def verdict_columns(results: list[CaseResult]) -> list[str]:
    seen = {r.behavior for r in results}
    return VERDICT_ORDER + sorted(seen - set(VERDICT_ORDER))


def summary_row(name: str, results: list[CaseResult], columns: list[str]) -> str:
    counts = Counter(r.behavior for r in results)
    close_bad = sum(r.behavior_close not in PASSING for r in results)
    cells = "".join(f"{counts.get(c, 0):>{max(len(c), 4) + 2}}" for c in columns)
    duration = sum(r.duration_ms for r in results)
    return f"{name:<9}{len(results):>6}{cells}{close_bad:>11}{duration:>12} ms"


def print_summary(results: list[CaseResult], wall: float) -> None:
    columns = verdict_columns(results)
    print(
        f"\n{'category':<9}{'cases':>6}"
        + "".join(f"{c:>{max(len(c), 4) + 2}}" for c in columns)
        + f"{'bad close':>11}{'duration':>15}"
    )
    for category in sorted({r.category for r in results}):
        rows = [r for r in results if r.category == category]
        print(summary_row(f"{category}.*", rows, columns))
    print(summary_row("all", results, columns))
    print(
        f"(counts are of 'behavior'; 'bad close' counts cases whose 'behaviorClose' is neither"
        f" OK nor INFORMATIONAL; wall time {wall:.1f} s)"
    )


def print_failures(failures: list[CaseResult]) -> None:
    if not failures:
        return
    print(f"\n{len(failures)} case(s) not OK/INFORMATIONAL:")
    for r in failures:
        report = os.path.relpath(r.report)
        print(
            f"  {r.case:<10} behavior={r.behavior:<14} behaviorClose={r.behavior_close:<14}"
            f" {report}"
        )


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cases", default="*", help="comma-separated case patterns (default: *)")
    parser.add_argument("--exclude", default="", help="comma-separated case patterns to skip")
    parser.add_argument("--server", choices=["asgisock", "uvicorn"], default="asgisock")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the server's command line (repeatable)",
    )
    parser.add_argument(
        "--client",
        choices=["auto", "wstest", "docker"],
        default="auto",
        help="auto: cached wstest, else Docker if an engine runs, else install",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="seconds wstest may take for the whole run (default: 3600)",
    )
    parser.add_argument(
        "--reports",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the spec, server log and reports go (default: reports/autobahn/SERVER)",
    )
    parser.add_argument(
        "--install-only", action="store_true", help="install the client if missing, then exit"
    )
    return parser.parse_args(argv)


def prepare_run_dir(run_dir: Path) -> Path:
    """Create the reports directory; a previous run's index is removed so that it can never
    be read as this run's result (the per-case files are simply overwritten)."""
    run_dir = run_dir.resolve()
    (run_dir / "report").mkdir(parents=True, exist_ok=True)
    (run_dir / "report" / "index.json").unlink(missing_ok=True)
    return run_dir


def fuzz(args: argparse.Namespace, client: Client, run_dir: Path) -> list[CaseResult]:
    proc, port = start_server(args.server, args.port, args.server_arg, run_dir / "server.log")
    try:
        spec = write_spec(
            client, run_dir, args.server, port, patterns(args.cases), patterns(args.exclude)
        )
        status = run_fuzzer(client, spec, args.timeout)
        if proc.poll() is not None:
            raise HarnessError(
                f"the server died during the run (status {proc.returncode}):\n"
                + log_tail(run_dir / "server.log")
            )
        if status != 0:
            raise HarnessError(f"wstest exited with status {status}")
    finally:
        stop_process(proc, signal.SIGINT)
    return load_results(run_dir / "report", args.server)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # A shell starting this script in the background makes it ignore SIGINT, and the server
    # would inherit that; with a handler here, the server starts with the default again.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    run_dir = prepare_run_dir(args.reports or REPORTS_ROOT / args.server)
    try:
        client = get_client(args.client, run_dir)
        if args.install_only:
            log(f"client ready: {' '.join(client.argv)}")
            return 0
        started = time.monotonic()
        results = fuzz(args, client, run_dir)
    except HarnessError as error:
        log(f"error: {error}")
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    print_summary(results, time.monotonic() - started)
    failures = [r for r in results if not r.passed]
    print_failures(failures)
    if not results:
        log("error: no case ran; check --cases and --exclude")
        return 2
    log(
        f"{len(results) - len(failures)} of {len(results)} cases passed; "
        f"reports in {os.path.relpath(run_dir / 'report')}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
