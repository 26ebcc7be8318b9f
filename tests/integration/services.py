"""Real services for the integration tests, started from their Debian packages on loopback.

Each runs in the test's temporary directory on an ephemeral port and is stopped by its own pid.
A missing binary skips the test where someone runs the suite without it, but fails it in CI
(``CI`` set), where ``.ci/run`` installs every package, so CI never skips.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.processes import Output
from tests.support import timeout


def require(binary: str, package: str) -> str:
    """The path of ``binary``; skip (fail in CI) when Debian's ``package`` is not installed.

    Debian puts daemons in /usr/sbin, which is not on every user's ``PATH``."""
    path = shutil.which(binary, path=os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/sbin"]))
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


NGINX_CONFIG = """\
daemon off;
master_process on;
worker_processes 1;
pid {directory}/nginx.pid;
error_log stderr notice;
{user}
events {{
    worker_connections 256;
}}

http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;

{site}
}}
"""
"""The main context around a site's configuration: everything nginx writes goes to
``directory``, and the process stays in the foreground, logging to stderr."""


class Nginx:
    """Debian's ``nginx`` serving ``site`` (a ``server`` block and what it needs, for the http
    context) with ``{http_port}`` and ``{https_port}`` in it filled in with free ports."""

    def __init__(self, directory: Path, site: str) -> None:
        self.binary = require("nginx", "nginx")
        self.directory = directory
        self.site = site
        self.http_port = self.https_port = 0
        self.process: subprocess.Popen[str] | None = None
        self.output: Output | None = None

    def start(self) -> None:
        for _attempt in range(5):
            if self._start(free_port(), free_port()):
                return
        raise AssertionError("nginx found no free ports")

    def _start(self, http_port: int, https_port: int) -> bool:
        # As root, nginx would run its worker as nobody, who cannot write the test's directory.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
        site = self.site.replace("{http_port}", str(http_port)).replace("{https_port}", str(https_port))
        config = self.directory / "nginx.conf"
        config.write_text(NGINX_CONFIG.format(directory=self.directory, user=user, site=site))
        process = subprocess.Popen(
            [self.binary, "-p", str(self.directory), "-c", str(config), "-e", "stderr"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        output = Output(process.stdout)
        line = output.wait_for(("start worker process ", "[emerg]"))
        if "start worker process " not in line:
            process.kill()  # a port taken since: nginx would try it again for two seconds
            process.wait(timeout(10))
            output.join()
            process.stdout.close()
            assert "Address already in use" in line, f"nginx did not start:\n{output.text}"
            return False
        self.process, self.output = process, output
        self.http_port, self.https_port = http_port, https_port
        return True

    def errors(self) -> list[str]:
        """What nginx logged at level error or above: an upstream that misbehaved, for one."""
        assert self.output is not None
        levels = ("[error]", "[crit]", "[alert]", "[emerg]")
        return [line for line in self.output.lines if any(level in line for level in levels)]

    def stop(self) -> None:
        """A fast shutdown (SIGTERM): the master waits for its worker, then exits with 0."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout(10))
        assert self.output is not None and self.process.stdout is not None
        self.output.join()
        self.process.stdout.close()
        self.process = None
        assert code == 0, self.output.text
