"""The benchmark environment: a virtualenv with every server under test, and wrk.

The servers run from ``.venv-bench/`` at the repository root (gitignored), never from the
developer's own environment, so that uvicorn's optional speedups (httptools, uvloop) are
certainly present and so that the versions in a report are the versions that ran. asgisock
goes in editable from the repository, which builds its C masking extension in place: the
benchmark measures the working tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

BENCH_DIR: Final = Path(__file__).resolve().parent
REPO_ROOT: Final = BENCH_DIR.parent
VENV: Final = REPO_ROOT / ".venv-bench"
VENV_PYTHON: Final = VENV / "bin" / "python"

PEERS: Final = (
    "uvicorn[standard]==0.54.*",  # brings httptools, uvloop and websockets
    "granian",
    "hypercorn",
    "matplotlib",  # for bench/report.py's chart
    "trustme>=1.1",  # the TLS scenarios' throwaway CA and certificate, as in the TLS tests
    "prometheus_client",  # asgisock's metrics extra, for compare.py --tree-env ASGISOCK_METRICS_PORT=0
)
# What must import in the venv for it to count as complete.
REQUIRED_MODULES: Final = (
    "asgisock",
    "asgisock.ws._speedups",
    "asgisock.http11._head",
    "asgisock._metrics",
    "uvicorn",
    "httptools",
    "uvloop",
    "websockets",
    "granian",
    "hypercorn",
    "matplotlib",
    "trustme",
    "prometheus_client",
)


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(argv: list[str], **kwargs: object) -> None:
    log("$ " + " ".join(argv))
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]


def venv_complete() -> bool:
    if not VENV_PYTHON.exists():
        return False
    probe = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)"
    result = subprocess.run(
        [str(VENV_PYTHON), "-c", probe, *REQUIRED_MODULES], capture_output=True, check=False
    )
    return result.returncode == 0


def ensure_venv() -> Path:
    """Create or complete the bench venv; return its interpreter."""
    if venv_complete():
        return VENV_PYTHON
    if not VENV_PYTHON.exists():
        run([sys.executable, "-m", "venv", str(VENV)])
    pip = [str(VENV_PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    run([*pip, "--upgrade", "pip", "setuptools>=68", "wheel"])
    run([*pip, *PEERS])
    run([*pip, "-e", str(REPO_ROOT)])
    if not venv_complete():
        raise SystemExit(f"bench: {VENV} is still incomplete after installing")
    return VENV_PYTHON


def ensure_tool(name: str) -> str:
    """The program ``name`` from Debian's package of that name, installed with apt-get when
    missing."""
    found = shutil.which(name)
    if found is not None:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    run([*sudo, "apt-get", "update", "-q"], env=env)
    run([*sudo, "apt-get", "install", "-y", "-q", name], env=env)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"bench: {name} is still missing after apt-get install {name}")
    return found


def ensure_wrk() -> str:
    """wrk, installed with apt-get when missing."""
    return ensure_tool("wrk")


def versions(python: Path) -> dict[str, str]:
    """Installed versions of everything a report names, read from the bench venv."""
    probe = (
        "import importlib.metadata as m, json, platform\n"
        "names = ['asgisock', 'uvicorn', 'granian', 'hypercorn', 'uvloop', 'httptools',"
        " 'websockets', 'h11', 'wsproto', 'trustme']\n"
        "import ssl\n"
        "out = {'python': platform.python_version(), 'openssl': ssl.OPENSSL_VERSION.split()[1]}\n"
        "for n in names:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "from asgisock.ws.mask import MASK_IMPLEMENTATION\n"
        "out['asgisock masking'] = MASK_IMPLEMENTATION\n"
        "print(json.dumps(out))"
    )
    result = subprocess.run([str(python), "-c", probe], capture_output=True, check=True, text=True)
    import json

    found: dict[str, str] = json.loads(result.stdout)
    return found


if __name__ == "__main__":
    print(ensure_venv())
    print(ensure_wrk())
    print(versions(VENV_PYTHON))
