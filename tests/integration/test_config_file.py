"""Settings from a TOML file (``--config``, or ``[tool.asgisock]`` in ``./pyproject.toml``),
through the real command: CLI > environment > file > defaults."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
import pytest

from asgisock.config import SETTINGS
from tests.integration.test_cli import APP_SOURCE, run_cli
from tests.processes import Cli
from tests.support import timeout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "cliapp.py").write_text(APP_SOURCE)
    return tmp_path


def pyproject(directory: Path, table: str) -> None:
    (directory / "pyproject.toml").write_text(f"[project]\nname = 'demo'\n\n[tool.asgisock]\n{table}\n")


def printed(directory: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """``--print-config`` as {setting: (value, origin)}."""
    result = run_cli("--print-config", *args, cwd=directory, env=env)
    assert result.returncode == 0, result.stderr
    rows = {}
    for line in result.stdout.splitlines():
        match = re.fullmatch(r"(?:# )?(\w+) (?:= (.*?)|is not set)\s+# (.+)", line)
        assert match is not None, line
        rows[match[1]] = (match[2] or "", match[3])
    return rows


def test_pyproject_table_serves_without_arguments(project: Path) -> None:
    pyproject(project, 'app = "cliapp:app"\nport = 0\nlifespan = "off"\nheader = ["X-From: file"]')
    cli = Cli([], cwd=project)
    try:
        response = httpx.get(cli.url + "/scope", timeout=timeout(5))
        assert response.headers["x-from"] == "file"
        cli.send_signal(signal.SIGTERM)
        assert cli.wait() == 0
    finally:
        cli.stop()


def test_precedence_command_line_then_environment_then_file(project: Path) -> None:
    pyproject(project, 'app = "cliapp:app"\nport = 9001\nbacklog = 64\nroot-path = "/file"\nws_max_queue = 3')
    rows = printed(project, "--backlog", "128", env={"ASGISOCK_PORT": "9002", "ASGISOCK_BACKLOG": "256"})
    assert rows["backlog"] == ("128", "command line")
    assert rows["port"] == ("9002", "environment ASGISOCK_PORT")
    assert rows["root_path"] == ('"/file"', "pyproject.toml [tool.asgisock]")
    assert rows["ws_max_queue"] == ("3", "pyproject.toml [tool.asgisock]")
    assert rows["app"] == ('"cliapp:app"', "pyproject.toml [tool.asgisock]")
    assert rows["host"] == ('"127.0.0.1"', "default")
    assert rows["uds"] == ("", "default")
    assert set(rows) == {"app", *SETTINGS}


def test_config_option_replaces_pyproject(project: Path) -> None:
    pyproject(project, "port = 9001")
    (project / "asgisock.toml").write_text('app = "cliapp:app"\nport = 9003\nproxy-headers = false\n'
                                           'timeout_keep_alive = 2\nheaders = "X-One: 1"\n')
    rows = printed(project, "--config", "asgisock.toml")
    assert rows["port"] == ("9003", "asgisock.toml")
    assert rows["proxy_headers"] == ("false", "asgisock.toml")
    assert rows["timeout_keep_alive"] == ("2.0", "asgisock.toml")
    assert rows["headers"] == ('["X-One: 1"]', "asgisock.toml")


def test_pyproject_without_the_table_is_ignored(project: Path) -> None:
    (project / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    assert printed(project, "cliapp:app")["port"] == ("8000", "default")


@pytest.mark.parametrize(("table", "message"), [
    ("prot = 9000", "'pyproject.toml [tool.asgisock]: prot': unknown setting (did you mean 'port'?)"),
    ("port = 99999", "'pyproject.toml [tool.asgisock]: port': 99999 is larger than 65535"),
    ('port = "a"', "'pyproject.toml [tool.asgisock]: port': expected an integer from 0 to 65535, got 'a'"),
    ('port = "80"', "'pyproject.toml [tool.asgisock]: port': expected an integer from 0 to 65535, got '80'"),
    ("port = true", "'pyproject.toml [tool.asgisock]: port': expected an integer from 0 to 65535, got True"),
    ('ws_ping_interval = "x"', "'pyproject.toml [tool.asgisock]: ws_ping_interval': expected a number"),
    ('lifespan = "nope"', "'pyproject.toml [tool.asgisock]: lifespan': 'nope' is not one of 'auto', 'on', 'off'"),
    ('loop = "nope"', "'pyproject.toml [tool.asgisock]: loop': 'nope' is not one of auto, asyncio, uvloop, "
                      "zuvloop, none, nor a MODULE:ATTRIBUTE loop factory"),
    ("ssl_version = 3", "'pyproject.toml [tool.asgisock]: ssl_version': 3: TLS 1.0 and 1.1 are deprecated"),
    ('http = "zttp"', "'pyproject.toml [tool.asgisock]: http': zttp: HTTP/2 is not supported yet"),
    ("access_log = 3", "'pyproject.toml [tool.asgisock]: access_log'"),
    ("headers = [1]", "'pyproject.toml [tool.asgisock]: headers': expected a string or a list of strings"),
    ('headers = ["nocolon"]', "'pyproject.toml [tool.asgisock]: headers'"),
    ("port = [1]", "'pyproject.toml [tool.asgisock]: port': expected an integer from 0 to 65535, got [1]"),
    ('env_file = "missing.env"', "'pyproject.toml [tool.asgisock]: env_file': file 'missing.env' does not exist"),
    ("app = 3", "'pyproject.toml [tool.asgisock]: app': expected 'module:attribute'"),
])
def test_a_bad_key_or_value_names_the_file_the_key_and_what_is_allowed(project: Path, table: str,
                                                                        message: str) -> None:
    pyproject(project, table)
    result = run_cli("cliapp:app", cwd=project)
    assert result.returncode == 2
    assert result.stderr.startswith(f"Error: Invalid value for {message}"), result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(("content", "message"), [
    (None, "Invalid value for '--config': cannot read"),
    ("port = = 1", "is not valid TOML"),
])
def test_an_unreadable_config_file(project: Path, content: str | None, message: str) -> None:
    if content is not None:
        (project / "bad.toml").write_text(content)
    result = run_cli("cliapp:app", "--config", "bad.toml", cwd=project)
    assert result.returncode == 2
    assert message in result.stderr


def test_help_mentions_the_config_file(project: Path) -> None:
    result = run_cli("--help", cwd=project)
    assert "--config FILE" in result.stdout and "--print-config" in result.stdout
