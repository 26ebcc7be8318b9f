"""Real services for the integration tests, started from their Debian packages on loopback.

Each runs in the test's temporary directory on an ephemeral port and is stopped by its own pid.
A missing binary skips the test where someone runs the suite without it, but fails it in CI
(``CI`` set), where ``.ci/run`` installs every package, so CI never skips.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.processes import Output
from tests.support import timeout


def require(binary: str, package: str) -> str:
    """The path of ``binary``; skip (fail in CI) when Debian's ``package`` is not installed."""
    path = shutil.which(binary)
    if path is None:
        reason = f"{binary} is not installed (apt-get install {package}; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def free_port() -> int:
    """A port free a moment ago; a service that loses the race to it is started again."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """``redis-server`` without persistence; ``kill()`` and ``start()`` again keep its port."""

    def __init__(self, directory: Path) -> None:
        self.binary = require("redis-server", "redis-server")
        self.directory = directory
        self.port = 0
        self.process: subprocess.Popen[str] | None = None
        self.output: Output | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        for _attempt in range(5):
            if self._start(self.port or free_port()):
                return
            assert not self.port, f"redis-server could not bind its port {self.port} again"
        raise AssertionError("redis-server found no free port")

    def _start(self, port: int) -> bool:
        process = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(self.directory),
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", ""],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        output = Output(process.stdout)
        line = output.wait_for(("Ready to accept connections", "Address already in use"))
        if "Address already in use" in line:
            process.wait(timeout(10))
            output.join()
            process.stdout.close()
            return False
        self.process, self.output, self.port = process, output, port
        return True

    def kill(self) -> None:
        """Gone at once, as in a crash: the kernel closes its clients' connections."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def _end(self, sig: int) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
        self.process.wait(timeout(10))
        assert self.output is not None and self.process.stdout is not None
        self.output.join()
        self.process.stdout.close()
        self.process = None
