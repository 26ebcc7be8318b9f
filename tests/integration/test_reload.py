"""``--reload``, end to end: a real supervisor watching real files, real workers, real clients."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from asgisock.reload import ChangeFilter
from tests.processes import Cli, Launcher
from tests.support import timeout

pytest.importorskip("watchfiles")

APP_TEMPLATE = '''
import os

VERSION = {version!r}


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()
        await send({{"type": "websocket.accept"}})
        while (await receive())["type"] != "websocket.disconnect":
            pass
        return
    if scope["type"] != "http":
        return
    body = f"{{VERSION}} {{os.getpid()}}".encode()
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": body}})
'''


def write_app(directory: Path, version: str) -> None:
    (directory / "reloadapp.py").write_text(APP_TEMPLATE.format(version=version))


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    # No bytecode cache: a rewrite of the same size within the same second would look unchanged.
    launcher = Launcher(tmp_path, env={"PYTHONDONTWRITEBYTECODE": "1"})
    yield launcher
    for cli in launcher.started:
        cli.stop()


def served(cli: Cli) -> tuple[str, int]:
    version, pid = httpx.get(cli.url, timeout=timeout(5)).text.split()
    return version, int(pid)


def wait_for_version(cli: Cli, version: str) -> int:
    """The pid of the worker that first serves ``version``."""
    deadline = time.monotonic() + timeout(15)
    while (answer := served(cli))[0] != version:
        assert time.monotonic() < deadline, f"still {answer}:\n{cli.stderr.text}"
    return answer[1]


def stop(cli: Cli) -> None:
    cli.send_signal(signal.SIGTERM)
    assert cli.wait(seconds=20) == 0, cli.stderr.text


def test_a_change_restarts_the_server_and_websockets_get_1012(launch: Launcher, tmp_path: Path, loop: str) -> None:
    write_app(tmp_path, "v1")
    cli = launch("reloadapp:app", "--port", "0", "--reload", "--reload-delay", "0.05", "--loop", loop)
    assert served(cli)[0] == "v1"
    with ws_connect(cli.url.replace("http", "ws"), open_timeout=timeout(5)) as ws:
        write_app(tmp_path, "v2")
        cli.stderr.wait_for("Changes detected in reloadapp.py: restarting")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout(10))
        assert ws.close_code == 1012
    wait_for_version(cli, "v2")
    stop(cli)


def test_a_broken_app_waits_for_the_next_change(launch: Launcher, tmp_path: Path) -> None:
    (tmp_path / "reloadapp.py").write_text("def app(:\n")  # a syntax error from the start
    cli = launch("reloadapp:app", "--port", "0", "--reload", "--reload-delay", "0.05")
    cli.stderr.wait_for("SyntaxError")
    cli.stderr.wait_for("at startup: waiting for a change to the files")
    assert cli.process.poll() is None
    write_app(tmp_path, "v1")  # fixing the file brings the server up
    assert served(cli)[0] == "v1"
    (tmp_path / "reloadapp.py").write_text("import nomodule\n")  # broken again
    cli.stderr.wait_for("restart abandoned, the old workers keep serving until the next change")
    assert served(cli)[0] == "v1"
    write_app(tmp_path, "v3")
    wait_for_version(cli, "v3")
    stop(cli)


def test_reload_with_workers_restarts_all_of_them(launch: Launcher, tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    cli = launch("reloadapp:app", "--port", "0", "--reload", "--reload-delay", "0.05", "--workers", "2")
    cli.stderr.wait_count("] serving", 2)
    write_app(tmp_path, "v2")
    cli.stderr.wait_for("Restart done: every worker replaced")
    assert len(cli.stderr.wait_count("] serving", 4)) == 4
    assert cli.stderr.text.count("stopped (exit code 0)") >= 1
    wait_for_version(cli, "v2")
    stop(cli)


def test_reload_dirs_includes_and_excludes(launch: Launcher, tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    watched = tmp_path / "conf"
    watched.mkdir()
    cli = launch("reloadapp:app", "--port", "0", "--reload", "--reload-delay", "0.05",
                 "--reload-dir", str(watched), "--reload-include", "*.toml", "--reload-exclude", "skip_*.py")
    cli.stderr.wait_for("asgisock running on")
    (watched / "skip_me.py").write_text("")
    (tmp_path / "outside.toml").write_text("")  # not in a watched directory
    (watched / "settings.toml").write_text("")
    line = cli.stderr.wait_for("Changes detected in ")
    assert "settings.toml" in line
    assert "skip_me.py" not in line
    assert "outside.toml" not in line
    stop(cli)


def test_the_change_filter(tmp_path: Path) -> None:
    only = ChangeFilter([tmp_path], ["*.html"], ["*_test.py"])
    assert only.matches(tmp_path / "main.py")
    assert only.matches(tmp_path / "templates" / "index.html")
    assert not only.matches(tmp_path / "main_test.py")
    assert not only.matches(tmp_path / ".venv" / "lib" / "site.py")
    assert not only.matches(tmp_path / "pkg" / "__pycache__" / "main.py")
    assert not only.matches(tmp_path / "notes.txt")
    assert not ChangeFilter([tmp_path], [], ["*.py"]).matches(tmp_path / "main.py")
    # A hidden directory above the watched one is not a reason to ignore everything in it.
    hidden = tmp_path / ".cache" / "project"
    assert ChangeFilter([hidden], [], []).matches(hidden / "main.py")


def test_reload_without_watchfiles_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from asgisock.config import Config
    from asgisock.exceptions import ConfigError
    from asgisock.reload import Watcher

    with pytest.raises(ConfigError, match=r"--reload-dir.*is not a directory"):
        Watcher(Config("reloadapp:app", reload=True, reload_dirs=[str(tmp_path / "missing")]), print)
    monkeypatch.setitem(__import__("sys").modules, "watchfiles", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"--reload.*pip install 'asgisock\[reload\]'"):
        Watcher(Config("reloadapp:app", reload=True), print)
