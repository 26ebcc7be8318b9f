#!/usr/bin/env python3
"""Compare asgisock at a git revision with the working tree, before merging a hot-path change.

Usage::

    python bench/compare.py main            # or any revision: HEAD~3, a tag, a commit
    python bench/compare.py HEAD --rounds 5 --duration 5 --fail-below 0.97
    python bench/compare.py HEAD --tree-env ASGISOCK_METRICS_PORT=0   # the cost of a setting

Checks the revision out with ``git worktree add`` into a temporary directory, builds its C
extension in place, then runs short versions of scenario 1 (HTTP plaintext, keep-alive) and
scenario 4 (WebSocket echo, 16-byte text) against it and against the working tree,
alternating (REV, tree, REV, tree, …) with the same pinning as bench/run.py. Each side runs
from the bench venv with its own source tree first on PYTHONPATH. Prints the medians and the
ratio tree / REV: above 1.00 the working tree is faster.

``--tree-env NAME=VALUE`` sets an environment variable for the working tree's servers only.
Every setting has one (``ASGISOCK_<OPTION>``), so comparing HEAD with a clean working tree
given a setting measures what that setting costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import env
from scenarios import MeasureError, Settings, http_plaintext, ws_echo_small
from servers import ServerError, start

CHECKS = (("http-plaintext", "requests/s", http_plaintext),
          ("ws-echo-small", "messages/s", ws_echo_small))


def log(message: str) -> None:
    print(f"compare: {message}", file=sys.stderr, flush=True)


@contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """A detached checkout of ``revision``, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="asgisock-compare-") as parent:
        path = Path(parent) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(path), revision],
                       cwd=env.REPO_ROOT, check=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)],
                           cwd=env.REPO_ROOT, check=False)


@contextmanager
def environment(variables: dict[str, str]) -> Iterator[None]:
    """``variables`` in the environment that servers started meanwhile inherit."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def build_in_place(tree: Path) -> None:
    """Compile the optional C extension next to its sources, as an editable install would."""
    if not (tree / "setup.py").exists():
        log(f"{tree} has no setup.py: that side runs without the C extension")
        return
    done = subprocess.run([str(env.VENV_PYTHON), "setup.py", "-q", "build_ext", "--inplace"],
                          cwd=tree, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"compare: building {tree} failed:\n{done.stdout}{done.stderr}")


def describe_side(source: Path) -> str:
    """Where asgisock imports from with ``source`` first on the path, and its masking."""
    probe = ("import asgisock, asgisock.ws.mask as m; "
             "print(asgisock.__file__, m.MASK_IMPLEMENTATION)")
    done = subprocess.run([str(env.VENV_PYTHON), "-c", probe], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(source)}, check=False,
                          cwd=tempfile.gettempdir())
    return (done.stdout or done.stderr).strip()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("revision", help="git revision to compare the working tree with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--fail-below", type=float, metavar="RATIO",
                        help="exit 1 if a ratio tree / REV is below this (e.g. 0.97)")
    parser.add_argument("--tree-env", action="append", default=[], metavar="NAME=VALUE", type=variable,
                        help="set this environment variable for the working tree's servers (repeatable)")
    return parser.parse_args(argv)


def variable(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


Values = dict[str, dict[str, list[float]]]  # scenario -> side -> one figure per round


def measure(sides: dict[str, Path], rounds: int, settings: Settings,
            environments: dict[str, dict[str, str]]) -> Values:
    values: Values = {name: {side: [] for side in sides} for name, _, _ in CHECKS}
    with tempfile.TemporaryDirectory(prefix="asgisock-compare-logs-") as logs:
        settings.scratch = Path(logs)
        for name, unit, check in CHECKS:
            app = "plaintext" if name.startswith("http") else "echo"
            for round_number in range(1, rounds + 1):
                # Each side goes first every other round, so that whatever the first run of a
                # round leaves behind (a warmer cache, a busier neighbour) falls on both.
                order = list(sides.items())
                if round_number % 2 == 0:
                    order.reverse()
                for side, source in order:
                    with environment(environments.get(side, {})):
                        server = start("asgisock", app, Path(logs), source=source)
                    try:
                        result = check(settings, server)
                        server.check_alive()
                    except (ServerError, MeasureError) as error:
                        log(f"{name} round {round_number} {side}: {error}")
                        continue
                    finally:
                        server.stop()
                    values[name][side].append(result["value"])
                    log(f"{name:<15} round {round_number}  {side:<14} {result['value']:>10,.0f} "
                        f"{unit}  server CPU {100 * result['server_cpu']:.0f}%")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if Path(sys.prefix).resolve() != env.VENV.resolve():
        python = env.ensure_venv()
        forwarded = list(argv) if argv is not None else sys.argv[1:]
        os.execv(python, [str(python), str(Path(__file__).resolve()), *forwarded])
    settings = Settings(duration=args.duration, warmup=1.0, wrk=env.ensure_wrk())
    load = os.getloadavg()[0]
    if load > 0.5:
        log(f"warning: load average is {load:.2f}; ratios within ±10% are noise")
    with worktree(args.revision) as tree:
        build_in_place(tree)
        sides = {args.revision: tree, "working tree": env.REPO_ROOT}
        for side, source in sides.items():
            log(f"{side}: {describe_side(source)}")
        environment = dict(args.tree_env)
        if environment:
            log("working tree with " + " ".join(f"{name}={value}" for name, value in environment.items()))
        values = measure(sides, args.rounds, settings, {"working tree": environment})
    print(f"\n{'scenario':<16}{args.revision:>16}{'working tree':>16}{'tree / rev':>12}")
    worst = float("inf")
    for name, _, _ in CHECKS:
        old, new = (values[name][side] for side in sides)
        if not old or not new:
            print(f"{name:<16}{'(failed)':>16}")
            worst = 0.0
            continue
        ratio = statistics.median(new) / statistics.median(old)
        worst = min(worst, ratio)
        print(f"{name:<16}{statistics.median(old):>16,.0f}{statistics.median(new):>16,.0f}"
              f"{ratio:>11.2f}x")
    if args.fail_below is not None and worst < args.fail_below:
        print(f"\nslower than {args.fail_below:.2f}x of {args.revision}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
