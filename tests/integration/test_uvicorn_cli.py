"""uvicorn's command lines, with ``uvicorn`` replaced by ``asgisock``.

Each line of the tables is first given to uvicorn 0.54's own parser, so that it is one uvicorn
takes, and what uvicorn makes of each option set must be what asgisock makes of it; then to
``asgisock --print-config`` (the command itself, run in the test's process), which must show
the setting with that value and where it came from (the command line, or which variable), and
every other setting at its default. Lines asgisock refuses must say why. A few lines are then
served for real, by ``asgisock`` processes.
"""

from __future__ import annotations

import os
import pty
import re
import shlex
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
import trustme
import websockets.sync.client
from click.core import ParameterSource
from click.testing import CliRunner
from uvicorn.main import main as uvicorn_main

from asgisock.cli import command
from asgisock.config import SETTINGS
from tests.integration.test_cli import one_line, run_cli
from tests.processes import Cli, Launcher, child_env
from tests.support import timeout

VARIABLES = ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS", "UVICORN_APP", "ASGISOCK_APP",
             *(name for item in SETTINGS.values() for name in item.env_vars))
"""Every variable either server reads: each test states those it sets."""


@dataclass(frozen=True)
class Line:
    """A uvicorn command line, ``VAR=value ... uvicorn APP --option ...``, and the settings it
    means to asgisock (those not named are at their defaults)."""

    text: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        words = shlex.split(self.text)
        return dict(word.split("=", 1) for word in words[:words.index("uvicorn")])

    @property
    def args(self) -> list[str]:
        words = shlex.split(self.text)
        return words[words.index("uvicorn") + 1:]


CERT = "--ssl-certfile cert.pem --ssl-keyfile key.pem"
TLS = {"ssl_certfile": "cert.pem", "ssl_keyfile": "key.pem"}

LINES = [
    Line("uvicorn main:app"),
    Line("uvicorn main:app --host 0.0.0.0 --port 80", {"host": "0.0.0.0", "port": 80}),
    Line("uvicorn main:app --host :: --port 0", {"host": "::", "port": 0}),
    Line("uvicorn main:app --uds /run/app.sock", {"uds": "/run/app.sock"}),
    Line("uvicorn main:app --fd 3", {"fd": 3}),
    Line("uvicorn --port 9000 main:app", {"port": 9000}),
    # processes and reload
    Line("uvicorn main:app --reload", {"reload": True}),
    Line("uvicorn main:app --reload --reload-dir src --reload-dir lib --reload-include '*.html' "
         "--reload-exclude '*.tmp' --reload-delay 0.5",
         {"reload": True, "reload_dirs": ["src", "lib"], "reload_includes": ["*.html"],
          "reload_excludes": ["*.tmp"], "reload_delay": 0.5}),
    Line("uvicorn main:app --workers 4", {"workers": 4}),
    Line("uvicorn main:app --workers 2 --limit-max-requests 1000 --limit-max-requests-jitter 100",
         {"workers": 2, "limit_max_requests": 1000, "limit_max_requests_jitter": 100}),
    Line("uvicorn main:app --workers 2 --timeout-worker-healthcheck 10",
         {"workers": 2, "timeout_worker_healthcheck": 10.0}),
    # event loop and protocols
    Line("uvicorn main:app --loop auto", {"loop": "auto"}),
    Line("uvicorn main:app --loop asyncio", {"loop": "asyncio"}),
    Line("uvicorn main:app --loop uvloop", {"loop": "uvloop"}),
    Line("uvicorn main:app --loop zuvloop", {"loop": "zuvloop"}),
    Line("uvicorn main:app --loop none", {"loop": "none"}),
    Line("uvicorn main:app --loop looper:new_loop", {"loop": "looper:new_loop"}),
    Line("uvicorn main:app --http auto", {"http": "auto"}),
    Line("uvicorn main:app --http httptools", {"http": "httptools"}),
    Line("uvicorn main:app --http h11", {"http": "h11"}),
    Line("uvicorn main:app --h11-max-incomplete-event-size 32768", {"max_header_size": 32768}),
    Line("uvicorn main:app --ws auto", {"ws": "auto"}),
    Line("uvicorn main:app --ws none", {"ws": "none"}),
    Line("uvicorn main:app --ws websockets", {"ws": "websockets"}),
    Line("uvicorn main:app --ws websockets-sansio", {"ws": "websockets-sansio"}),
    Line("uvicorn main:app --ws wsproto", {"ws": "wsproto"}),
    # WebSocket
    Line("uvicorn main:app --ws-max-size 1048576 --ws-max-queue 8 --ws-ping-interval 5 --ws-ping-timeout 2.5",
         {"ws_max_size": 1048576, "ws_max_queue": 8, "ws_ping_interval": 5.0, "ws_ping_timeout": 2.5}),
    Line("uvicorn main:app --ws-per-message-deflate false", {"ws_per_message_deflate": False}),
    Line("uvicorn main:app --ws-per-message-deflate False", {"ws_per_message_deflate": False}),
    Line("uvicorn main:app --ws-per-message-deflate=0", {"ws_per_message_deflate": False}),
    Line("uvicorn main:app --ws-per-message-deflate true", {"ws_per_message_deflate": True}),
    Line("uvicorn --ws-per-message-deflate no main:app", {"ws_per_message_deflate": False}),
    # the application
    Line("uvicorn main:app --lifespan on", {"lifespan": "on"}),
    Line("uvicorn main:app --lifespan off", {"lifespan": "off"}),
    Line("uvicorn main:app --interface auto", {"interface": "auto"}),
    Line("uvicorn main:app --interface asgi3", {"interface": "asgi3"}),
    Line("uvicorn main:app --interface asgi2", {"interface": "asgi2"}),
    Line("uvicorn main:app --env-file app.env", {"env_file": "app.env"}),
    Line("uvicorn main:app --root-path /api", {"root_path": "/api"}),
    Line("uvicorn main:app --app-dir src", {"app_dir": "src"}),
    Line("uvicorn main:create_app --factory", {"app": "main:create_app", "factory": True}),
    Line("uvicorn main:app --reset-contextvars", {"reset_contextvars": True}),
    # logging
    Line("uvicorn main:app --log-config logging.json", {"log_config": "logging.json"}),
    Line("uvicorn main:app --log-level warning", {"log_level": "warning"}),
    Line("uvicorn main:app --log-level trace", {"log_level": "trace"}),
    Line("uvicorn main:app --no-access-log", {"access_log": False}),
    Line("uvicorn main:app --access-log", {"access_log": True}),
    Line("uvicorn main:app --use-colors", {"use_colors": True}),
    Line("uvicorn main:app --no-use-colors", {"use_colors": False}),
    # behind a proxy, response headers
    Line("uvicorn main:app --no-proxy-headers", {"proxy_headers": False}),
    Line("uvicorn main:app --proxy-headers --forwarded-allow-ips '10.0.0.0/8,192.168.0.1'",
         {"proxy_headers": True, "forwarded_allow_ips": "10.0.0.0/8,192.168.0.1"}),
    Line("uvicorn main:app --forwarded-allow-ips '*'", {"forwarded_allow_ips": "*"}),
    Line("uvicorn main:app --no-server-header --no-date-header", {"server_header": False, "date_header": False}),
    Line("uvicorn main:app --server-header --date-header", {"server_header": True, "date_header": True}),
    Line("uvicorn main:app --header 'X-Frame-Options: DENY' --header X-Served-By:asgisock",
         {"headers": ["X-Frame-Options: DENY", "X-Served-By:asgisock"]}),
    # limits and timeouts
    Line("uvicorn main:app --limit-concurrency 100 --backlog 512", {"limit_concurrency": 100, "backlog": 512}),
    Line("uvicorn main:app --timeout-keep-alive 30 --timeout-graceful-shutdown 10",
         {"timeout_keep_alive": 30.0, "timeout_graceful_shutdown": 10.0}),
    # TLS
    Line(f"uvicorn main:app {CERT}", TLS),
    Line("uvicorn main:app --ssl-keyfile key.pem --ssl-certfile cert.pem", TLS),
    Line("uvicorn main:app --ssl-certfile combined.pem --ssl-keyfile-password secret",
         {"ssl_certfile": "combined.pem", "ssl_keyfile_password": "secret"}),
    Line(f"uvicorn main:app {CERT} --ssl-keyfile-password secret --ssl-version 2 --ssl-cert-reqs 2 "
         "--ssl-ca-certs ca.pem --ssl-ciphers 'ECDHE+AESGCM'",
         {**TLS, "ssl_keyfile_password": "secret", "ssl_version": 2, "ssl_cert_reqs": 2,
          "ssl_ca_certs": "ca.pem", "ssl_ciphers": "ECDHE+AESGCM"}),
    Line(f"uvicorn main:app {CERT} --ssl-version 5", {**TLS, "ssl_version": 5}),
    Line(f"uvicorn main:app {CERT} --ssl-version 17", {**TLS, "ssl_version": 17}),
    # uvicorn's environment variables, and the two it shares with others
    Line("UVICORN_PORT=9000 UVICORN_HOST=0.0.0.0 uvicorn main:app", {"host": "0.0.0.0", "port": 9000}),
    Line("UVICORN_APP=main:app uvicorn", {"app": "main:app"}),
    Line("UVICORN_APP=other:app uvicorn main:app"),
    Line("UVICORN_HEADERS='X-A:1 X-B:2' uvicorn main:app", {"headers": ["X-A:1", "X-B:2"]}),
    Line("UVICORN_RELOAD=true UVICORN_RELOAD_DIRS=src:lib UVICORN_RELOAD_INCLUDES='*.html *.css' uvicorn main:app",
         {"reload": True, "reload_dirs": ["src", "lib"], "reload_includes": ["*.html", "*.css"]}),
    Line("UVICORN_ACCESS_LOG=false UVICORN_WS_PER_MESSAGE_DEFLATE=false uvicorn main:app",
         {"access_log": False, "ws_per_message_deflate": False}),
    Line("UVICORN_LOG_LEVEL=debug UVICORN_USE_COLORS=0 uvicorn main:app", {"log_level": "debug", "use_colors": False}),
    Line("UVICORN_WORKERS=3 WEB_CONCURRENCY=5 uvicorn main:app", {"workers": 3}),
    Line("WEB_CONCURRENCY=3 uvicorn main:app", {"workers": 3}),
    Line("FORWARDED_ALLOW_IPS=10.0.0.1 uvicorn main:app", {"forwarded_allow_ips": "10.0.0.1"}),
    Line("UVICORN_FORWARDED_ALLOW_IPS=10.0.0.2 FORWARDED_ALLOW_IPS=10.0.0.1 uvicorn main:app",
         {"forwarded_allow_ips": "10.0.0.2"}),
    Line("UVICORN_H11_MAX_INCOMPLETE_EVENT_SIZE=32768 uvicorn main:app", {"max_header_size": 32768}),
    Line("UVICORN_TIMEOUT_KEEP_ALIVE=30 uvicorn main:app --timeout-keep-alive 10", {"timeout_keep_alive": 10.0}),
    Line("UVICORN_SSL_CERTFILE=cert.pem UVICORN_SSL_KEYFILE=key.pem UVICORN_SSL_VERSION=5 uvicorn main:app",
         {**TLS, "ssl_version": 5}),
    Line("UVICORN_INTERFACE=asgi2 UVICORN_LOOP=asyncio UVICORN_HTTP=h11 UVICORN_WS=wsproto UVICORN_LIFESPAN=off "
         "uvicorn main:app", {"interface": "asgi2", "loop": "asyncio", "http": "h11", "ws": "wsproto",
                              "lifespan": "off"}),
    Line("UVICORN_RESET_CONTEXTVARS=1 UVICORN_FACTORY=yes UVICORN_ROOT_PATH=/api uvicorn main:app",
         {"reset_contextvars": True, "factory": True, "root_path": "/api"}),
    Line("UVICORN_PORT=9000 ASGISOCK_PORT=9001 uvicorn main:app", {"port": 9001}),
]

REFUSED = [
    # what asgisock does not do, with the reason
    ("uvicorn main:app --http2", "--http2", "HTTP/2 is not supported yet"),
    ("uvicorn main:app --http zttp", "--http", "HTTP/2 is not supported yet"),
    ("uvicorn main:app --interface wsgi", "--interface", "asgisock serves ASGI apps only"),
    (f"uvicorn main:app {CERT} --ssl-version 3", "--ssl-version", "TLS 1.0 and 1.1 are deprecated (RFC 8996)"),
    (f"uvicorn main:app {CERT} --ssl-version 4", "--ssl-version", "TLS 1.0 and 1.1 are deprecated (RFC 8996)"),
    (f"uvicorn main:app {CERT} --ssl-version 16", "--ssl-version", "PROTOCOL_TLS_CLIENT is for clients"),
    ("uvicorn main:app --loop asyncio.events", "--loop", "nor a MODULE:ATTRIBUTE loop factory"),
    ("uvicorn main:app --h11-max-incomplete-event-size 100", "--max-header-size", "100 is smaller than 1024"),
    # what uvicorn ignores (or, one process past --limit-max-requests, exits), and asgisock says
    ("uvicorn main:app --limit-max-requests 1000", "--limit-max-requests", "needs --workers"),
    ("uvicorn main:app --timeout-worker-healthcheck 10", "--timeout-worker-healthcheck", "needs --workers"),
    ("uvicorn main:app --reload-dir src", "--reload-dir", "needs --reload"),
    ("uvicorn main:app --ssl-version 5", "--ssl-version", "needs --ssl-certfile"),
    (f"uvicorn main:app {CERT} --ssl-cert-reqs 2", "--ssl-cert-reqs", "needs --ssl-ca-certs"),
    ("UVICORN_HTTP2=true uvicorn main:app", "--http2", "HTTP/2 is not supported yet"),
]

UVICORN: click.Command = uvicorn_main
"""uvicorn's own command (its ``main``)."""
UVICORN_OPTIONS = {name: param for param in UVICORN.params if isinstance(param, click.Option)
                   and param.expose_value for name in [*param.opts, *param.secondary_opts]}
"""Every option of uvicorn's command (``--version`` and ``--help`` aside)."""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The files the lines name, in the current directory, and no variable of either server set."""
    for name in ("src", "lib"):
        (tmp_path / name).mkdir()
    for name in ("app.env", "logging.json", "cert.pem", "key.pem", "combined.pem", "ca.pem"):
        (tmp_path / name).write_text("")
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def uvicorn_parses(line: Line, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What uvicorn's own parser makes of the line: its parameters set, by name."""
    with monkeypatch.context() as patch:
        for name, value in line.env.items():
            patch.setenv(name, value)
        ctx = UVICORN.make_context("uvicorn", line.args)
    given = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {name: value for name, value in ctx.params.items() if ctx.get_parameter_source(name) in given}


def print_config(line: Line) -> click.testing.Result:
    runner = CliRunner()
    return runner.invoke(command, [*line.args, "--print-config"], env=line.env, prog_name="asgisock")


def printed(result: click.testing.Result) -> dict[str, tuple[Any, str]]:
    """``--print-config``'s lines as {setting: (value, origin)}."""
    assert result.exit_code == 0, (result.output, result.exception)
    rows = {}
    for text in result.stdout.splitlines():
        match = re.fullmatch(r"(?:# )?(\w+) (?:= (.*?)|is not set)\s+# (.+)", text)
        assert match is not None, text
        value = None if match[2] is None else tomllib.loads(f"v = {match[2]}")["v"]
        rows[match[1]] = (value, match[3])
    return rows


def origin_of(name: str, line: Line) -> str:
    """Where ``--print-config`` must say a setting of the line came from."""
    if name == "app":
        if any(":" in arg and not arg.startswith("-") for arg in line.args):
            return "command line"
        return next(f"environment {var}" for var in ("ASGISOCK_APP", "UVICORN_APP") if var in line.env)
    item = SETTINGS[name]
    names = {item.flag, *item.aliases, f"--no-{item.flag[2:]}"}
    if any(arg.partition("=")[0] in names for arg in line.args):
        return "command line"
    return next(f"environment {var}" for var in item.env_vars if var in line.env)


@pytest.mark.usefixtures("workdir")
@pytest.mark.parametrize("line", LINES, ids=[line.text for line in LINES])
def test_a_uvicorn_command_line_means_the_same_to_asgisock(line: Line, monkeypatch: pytest.MonkeyPatch) -> None:
    by_uvicorn = uvicorn_parses(line, monkeypatch)
    rows = printed(print_config(line))
    expected = {"app": "main:app", **line.settings}
    for name, (value, origin) in rows.items():
        if name in line.settings or (name == "app" and origin != "default"):
            assert (value, origin) == (expected[name], origin_of(name, line)), name
        else:
            assert origin == "default", (name, value, origin)
    for name, value in by_uvicorn.items():  # uvicorn's reading, option by option
        if name == "app":
            assert rows["app"][0] == value
            continue
        setting = next(item for item in SETTINGS.values() if item.uvicorn_name == name)
        if rows[setting.name][1] != f"environment {setting.env_var}":  # asgisock's own wins
            assert rows[setting.name][0] == (list(value) if isinstance(value, tuple) else value), name


@pytest.mark.usefixtures("workdir")
@pytest.mark.parametrize(("text", "option", "reason"), REFUSED, ids=[case[0] for case in REFUSED])
def test_what_asgisock_refuses_it_says_why(text: str, option: str, reason: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    line = Line(text)
    uvicorn_parses(line, monkeypatch)  # a line uvicorn takes
    result = print_config(line)
    assert result.exit_code != 0
    assert str(result.exception).startswith(f"Invalid value for '{option}': "), result.exception
    assert reason in str(result.exception)


def test_the_tables_use_every_uvicorn_option() -> None:
    used = {word.partition("=")[0] for text in [line.text for line in LINES] + [case[0] for case in REFUSED]
            for word in shlex.split(text)}
    assert set(UVICORN_OPTIONS) - used == set()


def test_every_uvicorn_option_is_a_setting() -> None:
    names = {param.name for param in UVICORN_OPTIONS.values()}
    assert names == {item.uvicorn_name for item in SETTINGS.values() if item.uvicorn_name}
    for name, param in UVICORN_OPTIONS.items():
        setting = next(item for item in SETTINGS.values() if item.uvicorn_name == param.name)
        assert name in ([setting.flag, *setting.aliases] if not name.startswith("--no-")
                        else [f"--no-{setting.flag[2:]}"]), name


def test_the_guide_names_every_uvicorn_option() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "howto" / "from-uvicorn.md").read_text()
    for name in UVICORN_OPTIONS:
        assert f"| `{name}` |" in guide, name
    for item in SETTINGS.values():
        if item.uvicorn_name is None:
            assert f"`{item.flag}`" in guide, item.flag  # what asgisock adds


# -- served for real ---------------------------------------------------------------------------

APP_SOURCE = '''
import contextvars
import json

CONTEXT = contextvars.ContextVar("context", default="unset")
CONTEXT.set("set at import")  # what instrumentation set at import leaks into every request


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"]})
        return
    body = json.dumps({"root_path": scope["root_path"], "context": CONTEXT.get()}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


class Legacy:
    """An ASGI 2 app: called with the scope, then with receive and send."""

    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        await app(self.scope, receive, send)


def wrapped(scope, receive, send):
    """ASGI 3, though not a coroutine function: only --interface asgi3 says so."""
    return app(scope, receive, send)
'''

LOOPER_SOURCE = '''
import asyncio


def new_loop():
    print("a loop from looper.new_loop", flush=True)
    return asyncio.new_event_loop()
'''


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    (tmp_path / "main.py").write_text(APP_SOURCE)
    (tmp_path / "looper.py").write_text(LOOPER_SOURCE)
    launcher = Launcher(tmp_path)
    yield launcher
    for cli in launcher.started:
        cli.stop()


def asgisock(launch: Launcher, text: str) -> Cli:
    line = Line(text)
    return launch(*line.args, env=line.env)


def stop(cli: Cli) -> None:
    cli.send_signal(signal.SIGINT)
    assert cli.wait() == 0, cli.stderr.text


def test_h11_wsproto_and_a_deflate_value(launch: Launcher, loop: str) -> None:
    cli = asgisock(launch, f"uvicorn main:app --port 0 --loop {loop} --http h11 --ws wsproto "
                           "--ws-per-message-deflate false --h11-max-incomplete-event-size 2048")
    assert httpx.get(cli.url).json() == {"root_path": "", "context": "set at import"}
    assert httpx.get(cli.url, headers={"X-Big": "x" * 3000}).status_code == 431
    with websockets.sync.client.connect(cli.url.replace("http", "ws"), compression="deflate",
                                        open_timeout=timeout(5)) as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers  # deflate is off
        ws.send("hello")
        assert ws.recv(timeout(5)) == "hello"
    stop(cli)
    notes = [text for text in cli.stderr.lines if text.startswith("INFO:     --")]
    assert notes == ["INFO:     --ws wsproto: asgisock serves WebSockets with its own implementation, as with "
                     "--ws auto",
                     "INFO:     --http h11: asgisock parses HTTP/1.1 with httptools (llhttp), as with --http auto"]


def test_uvicorn_variables_and_an_asgi2_app(launch: Launcher) -> None:
    cli = asgisock(launch, "UVICORN_PORT=0 UVICORN_HEADERS='X-A:1 X-B:2' UVICORN_ROOT_PATH=/api "
                           "uvicorn main:Legacy --interface asgi2")
    response = httpx.get(cli.url + "/api/")
    assert response.json()["root_path"] == "/api"
    assert (response.headers["x-a"], response.headers["x-b"]) == ("1", "2")
    stop(cli)


@pytest.mark.parametrize(("interface", "status"), [("asgi3", 200), ("auto", 500)])
def test_interface_asgi3_serves_an_app_that_does_not_look_like_one(launch: Launcher, interface: str,
                                                                     status: int) -> None:
    cli = asgisock(launch, f"uvicorn main:wrapped --port 0 --interface {interface} --lifespan off")
    assert httpx.get(cli.url).status_code == status
    stop(cli)


@pytest.mark.parametrize(("level", "logged"), [("warning", False), ("info", True), ("debug", True)])
def test_log_level_warning_quiets_the_access_lines(launch: Launcher, level: str, logged: bool) -> None:
    """As in uvicorn. The start-up line is at INFO too: the socket is bound here, and passed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # a request waits in the backlog until the server serves
        line = Line(f"uvicorn main:app --fd {sock.fileno()} --log-level {level}")
        cli = launch(*line.args, pass_fds=(sock.fileno(),))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        assert httpx.get(url, timeout=timeout(10)).status_code == 200
    stop(cli)
    assert ('"GET / HTTP/1.1" 200' in cli.stderr.text) is logged, cli.stderr.text
    assert ("Finished server process" in cli.stderr.text) is logged


def test_use_colors_on_a_pipe(launch: Launcher) -> None:
    cli = asgisock(launch, "uvicorn main:app --port 0 --use-colors")
    assert httpx.get(cli.url).status_code == 200
    stop(cli)
    assert cli.stderr.lines[0].startswith("\x1b[32mINFO:    \x1b[0m ")
    assert any(text.startswith("\x1b[32mINFO:") and '"GET / HTTP/1.1" 200' in text for text in cli.stderr.lines)


@pytest.mark.parametrize(("flag", "coloured"), [("--no-use-colors", False), ("--use-colors", True), ("", True)])
def test_use_colors_on_a_terminal(tmp_path: Path, flag: str, coloured: bool) -> None:
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-m", "asgisock", "nomodule:app", *flag.split()],
                                   cwd=tmp_path, env=child_env(), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=follower)
        os.close(follower)
        assert process.wait(timeout(20)) == 1
        output = _read_terminal(leader)
    finally:
        os.close(leader)
    assert output.startswith(b"\x1b[31mERROR:") is coloured, output
    assert (b"\x1b[" in output) is coloured


def _read_terminal(leader: int) -> bytes:
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the terminal's other end is closed
            return output
        if not chunk:
            return output
        output += chunk


@pytest.mark.parametrize(("flag", "context"), [("", "set at import"), ("--reset-contextvars", "unset")])
def test_reset_contextvars(launch: Launcher, loop: str, flag: str, context: str) -> None:
    cli = asgisock(launch, f"uvicorn main:app --port 0 --loop {loop} {flag}")
    assert httpx.get(cli.url).json()["context"] == context
    stop(cli)


def test_reset_contextvars_for_websockets(launch: Launcher, loop: str) -> None:
    source = APP_SOURCE.replace('await send({"type": "websocket.accept"})',
                                'await send({"type": "websocket.accept", "subprotocol": None})\n'
                                '        await send({"type": "websocket.send", "text": CONTEXT.get()})')
    (launch.cwd / "main.py").write_text(source)
    for flag, context in [("", "set at import"), ("--reset-contextvars", "unset")]:
        cli = asgisock(launch, f"uvicorn main:app --port 0 --loop {loop} {flag}")
        with websockets.sync.client.connect(cli.url.replace("http", "ws"), open_timeout=timeout(5)) as ws:
            assert ws.recv(timeout(5)) == context
        stop(cli)


@pytest.mark.parametrize("processes", [[], ["--workers", "1"]], ids=["one process", "supervised"])
@pytest.mark.parametrize(("perms", "mode"), [(None, 0o666), ("600", 0o600), ("0o660", 0o660)])
def test_uds_perms(launch: Launcher, processes: list[str], perms: str | None, mode: int) -> None:
    path = launch.cwd / "app.sock"
    cli = launch("main:app", "--uds", str(path), *(["--uds-perms", perms] if perms else []), *processes)
    cli.stderr.wait_for("running on unix:")
    assert stat.S_IMODE(path.stat().st_mode) == mode
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=timeout(5)) as client:
        assert client.get("http://localhost/").status_code == 200
    stop(cli)


def test_ssl_version_and_a_key_in_the_certificate_file(launch: Launcher) -> None:
    """The key's password is for a key in --ssl-certfile too, as in uvicorn."""
    from cryptography.hazmat.primitives import serialization

    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), password=None)
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"secret"))
    (launch.cwd / "combined.pem").write_bytes(encrypted + issued.cert_chain_pems[0].bytes())
    cli = asgisock(launch, "uvicorn main:app --port 0 --ssl-certfile combined.pem --ssl-keyfile-password secret "
                           "--ssl-version 5")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with cli.connect() as raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.version() == "TLSv1.3"  # 5 was PROTOCOL_TLSv1_2: the minimum, not the only one
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with httpx.Client(verify=context, timeout=timeout(5)) as client:
        assert client.get(cli.url).status_code == 200
    stop(cli)
    assert "INFO:     --ssl-version 5: TLS 1.2 is the minimum, and TLS 1.3 is served too" in cli.stderr.lines


@pytest.mark.parametrize(("value", "seen"), [("looper:new_loop", "a loop from looper.new_loop"), ("none", None)])
def test_loop_factory_and_none(launch: Launcher, value: str, seen: str | None) -> None:
    cli = asgisock(launch, f"uvicorn main:app --port 0 --loop {value}")
    assert httpx.get(cli.url).status_code == 200
    stop(cli)
    assert cli.stdout.lines == ([seen] if seen else [])


@pytest.mark.parametrize(("text", "message"), [
    ("uvicorn main:app --http2", "Error: Invalid value for '--http2': true: HTTP/2 is not supported yet"),
    ("uvicorn main:app --loop looper:missing", "Error: Invalid value for '--loop': Attribute \"missing\" not found"),
])
def test_a_refusal_is_one_line_and_exit_code_2(launch: Launcher, text: str, message: str) -> None:
    result = run_cli(*Line(text).args, cwd=launch.cwd)
    assert result.returncode == 2
    assert one_line(result.stderr).startswith(message)


def test_zuvloop_when_it_is_not_installed(launch: Launcher) -> None:
    try:
        import zuvloop  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("zuvloop is installed")
    result = run_cli(*Line("uvicorn main:app --loop zuvloop").args, cwd=launch.cwd)
    assert result.returncode == 2
    assert one_line(result.stderr) == "Error: Invalid value for '--loop': zuvloop is not installed"
