"""The ``asgisock`` command, run for real: a subprocess serving an app file on an ephemeral port."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import asgisock
from asgisock.config import SETTINGS
from tests.processes import Cli, Launcher, Output, child_env, read_until_closed
from tests.support import timeout

APP_SOURCE = '''
import asyncio
import json
import os
import sys
import types

IMPORT_GREETING = os.environ.get("GREETING")


def say(text):
    print(text, flush=True)


async def lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            say("lifespan startup")
            await send({"type": "lifespan.startup.complete"})
        else:
            say("lifespan shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive):
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return body
        body += message["body"]
        if not message.get("more_body"):
            return body


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    path = scope["path"].removeprefix(scope["root_path"])
    if path == "/slow":
        say("slow request started")
        body = await read_body(receive)
    elif path == "/hang":
        say("hang request started")
        await asyncio.get_running_loop().create_future()
    elif path == "/scope":
        body = json.dumps({"root_path": scope["root_path"], "path": scope["path"]}).encode()
    elif path == "/client":
        body = json.dumps({"client": scope["client"], "scheme": scope["scheme"]}).encode()
    elif path == "/env":
        body = json.dumps({
            "at_import": IMPORT_GREETING,
            "greeting": os.environ.get("GREETING"),
            "overridden": os.environ.get("OVERRIDDEN"),
        }).encode()
    else:
        body = b"hello"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


holder = types.SimpleNamespace(inner=types.SimpleNamespace(app=app))
notcallable = 3


def create_app():
    say("factory called")
    return app


async def failing_startup(scope, receive, send):
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "database unreachable"})


async def hanging_startup(scope, receive, send):
    await receive()
    say("startup hanging")
    await asyncio.get_running_loop().create_future()


async def no_lifespan(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("only http is supported")
    await app(scope, receive, send)
'''


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "cliapp.py").write_text(APP_SOURCE)
    return tmp_path


@pytest.fixture
def launch(app_dir: Path) -> Iterator[Launcher]:
    launcher = Launcher(app_dir)
    yield launcher
    for cli in launcher.started:
        cli.stop()


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A command that exits by itself: --help, --version, a bad setting or app."""
    return subprocess.run([sys.executable, "-m", "asgisock", *args], cwd=cwd, env=child_env(env),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout(20))


def one_line(stderr: str) -> str:
    """The only line of ``stderr``, which must hold no traceback."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def flag_of(name: str) -> str:
    return SETTINGS[name].flag


def stop_gracefully(cli: Cli, sig: int = signal.SIGINT) -> None:
    cli.send_signal(sig)
    assert cli.wait() == 0, cli.stderr.text
    assert "lifespan shutdown" in cli.stdout.lines
    assert "\x1b[" not in cli.stderr.text


# -- finding and loading the app ------------------------------------------------------------


def test_serves_an_app_file_from_app_dir(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "cliapp.py").write_text(APP_SOURCE)
    launcher = Launcher(tmp_path)  # the module is only importable through --app-dir
    try:
        cli = launcher("cliapp:app", "--port", "0", "--app-dir", "src")
        assert cli.url.startswith("http://127.0.0.1:")
        response = httpx.get(cli.url)
        assert (response.status_code, response.text) == (200, "hello")
        assert response.headers["server"] == "asgisock"
        stop_gracefully(cli)
    finally:
        for cli in launcher.started:
            cli.stop()
    assert cli.stdout.lines == ["lifespan startup", "lifespan shutdown"]
    assert cli.stderr.wait_for('"GET / HTTP/1.1" 200')  # the access log is on by default


def test_dotted_attribute(launch: Launcher) -> None:
    cli = launch("cliapp:holder.inner.app", "--port", "0")
    assert httpx.get(cli.url).text == "hello"
    stop_gracefully(cli)


def test_factory(launch: Launcher) -> None:
    cli = launch("cliapp:create_app", "--factory", "--port", "0")
    assert httpx.get(cli.url).text == "hello"
    stop_gracefully(cli)
    assert cli.stdout.lines[0] == "factory called"


@pytest.mark.parametrize(
    ("app", "reason"),
    [
        ("nomodule:app", 'Could not import module "nomodule".'),
        ("nomodule.sub:app", 'Could not import module "nomodule.sub".'),
        ("cliapp:missing", 'Attribute "missing" not found in module "cliapp".'),
        ("cliapp:holder.missing", 'Attribute "holder.missing" not found in module "cliapp".'),
        ("cliapp:notcallable", "The app must be callable, got int."),
        ("cliapp", 'Import string "cliapp" must be in format "<module>:<attribute>".'),
        ("cliapp:", 'Import string "cliapp:" must be in format "<module>:<attribute>".'),
        (":app", 'Import string ":app" must be in format "<module>:<attribute>".'),
    ],
)
def test_bad_app_is_one_line_and_exit_code_1(app_dir: Path, app: str, reason: str) -> None:
    result = run_cli(app, "--port", "0", cwd=app_dir)
    assert result.returncode == 1
    assert one_line(result.stderr).endswith(reason)


def test_factory_that_is_not_callable(app_dir: Path) -> None:
    result = run_cli("cliapp:notcallable", "--factory", "--port", "0", cwd=app_dir)
    assert result.returncode == 1
    assert one_line(result.stderr).endswith("The app factory is not callable.")


# -- settings: flags, help, environment ------------------------------------------------------


def test_help_lists_every_setting(app_dir: Path) -> None:
    result = run_cli("--help", cwd=app_dir)
    assert result.returncode == 0
    for info in SETTINGS.values():
        flag = info.flag
        assert re.search(rf"(^|\s){re.escape(flag)}\b", result.stdout), flag
        if info.kind == "bool":
            assert f"--no-{flag[2:]}" in result.stdout
        for alias in info.aliases:  # uvicorn's other name, in the last group, on a line of its own
            assert re.search(rf"^  {re.escape(alias)} ", result.stdout.partition("uvicorn compatibility:")[2],
                             re.MULTILINE), alias
    assert "--version" in result.stdout
    titles = re.findall(r"^(\S[^:]*):$", result.stdout, re.MULTILINE)
    assert titles == ["Options", *dict.fromkeys(info.declared.group for info in SETTINGS.values()
                                                if info.declared.group != "uvicorn compatibility"),
                      "uvicorn compatibility"]


def test_version(app_dir: Path) -> None:
    result = run_cli("--version", cwd=app_dir)
    assert result.returncode == 0
    assert result.stdout.startswith(f"asgisock {asgisock.__version__} with ")
    assert "httptools" in result.stdout
    assert result.stdout.count("\n") == 1


def test_console_script(app_dir: Path) -> None:
    script = Path(sys.executable).with_name("asgisock")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                            env=child_env(), timeout=timeout(20))
    assert result.returncode == 0
    assert result.stdout.startswith(f"asgisock {asgisock.__version__} ")


HEADERS_FLAG = flag_of("headers")


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--port", "99999"], "--port"),
        (["--port", "abc"], "--port"),
        (["--timeout-keep-alive", "-1"], "--timeout-keep-alive"),
        (["--loop", "bogus"], "--loop"),
        (["--lifespan", "sometimes"], "--lifespan"),
        (["--log-level", "loud"], "--log-level"),
        (["--fd", "-1"], "--fd"),
        (["--limit-concurrency", "0"], "--limit-concurrency"),
        (["--ws-deflate-window-bits", "8"], "--ws-deflate-window-bits"),
        (["--env-file", "missing.env"], "--env-file"),
        (["--log-config", "missing.json"], "--log-config"),
        ([HEADERS_FLAG, "nocolon"], HEADERS_FLAG),
        (["--uds", "app.sock", "--uds-perms", "9"], "--uds-perms"),
        (["--ws-per-message-deflate=maybe"], "--ws-per-message-deflate"),
        (["--interface", "wsgi"], "--interface"),
        (["--http2"], "--http2"),
        (["--ssl-version", "3"], "--ssl-version"),
        (["--loop", "no-such-loop"], "--loop"),
    ],
)
def test_invalid_value_names_the_option(app_dir: Path, args: list[str], option: str) -> None:
    result = run_cli("cliapp:app", "--port", "0", *args, cwd=app_dir)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith(f"Error: Invalid value for '{option}'"), line


def test_invalid_value_from_the_environment_names_the_option(app_dir: Path) -> None:
    result = run_cli("cliapp:app", cwd=app_dir, env={"ASGISOCK_PORT": "99999"})
    assert result.returncode == 2
    assert one_line(result.stderr).startswith("Error: Invalid value for '--port'")


def test_settings_from_environment_variables(launch: Launcher) -> None:
    cli = launch(env={
        "ASGISOCK_APP": "cliapp:app",
        "ASGISOCK_PORT": "0",
        "ASGISOCK_ACCESS_LOG": "false",
        "ASGISOCK_SERVER_HEADER": "false",
        "ASGISOCK_HEADER": "X-One:1\nX-Two:two words",  # a list setting: one item per line
        "ASGISOCK_ROOT_PATH": "/from-env",
    })
    response = httpx.get(cli.url + "/scope")
    assert response.json()["root_path"] == "/from-env"
    assert (response.headers["x-one"], response.headers["x-two"]) == ("1", "two words")
    assert "server" not in response.headers
    stop_gracefully(cli)
    assert "GET /scope" not in cli.stderr.text  # no access log line


def test_flag_wins_over_environment_variable(launch: Launcher) -> None:
    cli = launch("cliapp:app", "--port", "0", "--root-path", "/from-flag",
                 env={"ASGISOCK_ROOT_PATH": "/from-env", "ASGISOCK_PORT": "99999"})
    assert httpx.get(cli.url + "/scope").json()["root_path"] == "/from-flag"
    stop_gracefully(cli)


RUN_SCRIPT = "import asgisock; asgisock.run('cliapp:app', root_path='/from-keyword')"


def test_run_reads_settings_from_the_environment(app_dir: Path) -> None:
    """``asgisock.run()`` takes what the keywords leave unset from ``ASGISOCK_*``, as the command does."""
    uds = app_dir / "run.sock"
    env = child_env({
        "ASGISOCK_UDS": str(uds),
        "ASGISOCK_ACCESS_LOG": "false",
        "ASGISOCK_HEADER": "X-One:1\nX-Two:two words",
        "ASGISOCK_ROOT_PATH": "/from-env",  # the keyword wins
    })
    process = subprocess.Popen([sys.executable, "-c", RUN_SCRIPT], cwd=app_dir, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None and process.stderr is not None
    stdout, stderr = Output(process.stdout), Output(process.stderr)
    try:
        assert f"running on unix:{uds} " in stderr.wait_for("asgisock running on ")
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(uds)), timeout=timeout(5)) as client:
            response = client.get("http://localhost/scope")
        assert response.json()["root_path"] == "/from-keyword"
        assert (response.headers["x-one"], response.headers["x-two"]) == ("1", "two words")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout(10)) == 0, stderr.text
        stdout.join()
        stderr.join()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout(10))
        process.stdout.close()
        process.stderr.close()
    assert "GET /" not in stderr.text  # ASGISOCK_ACCESS_LOG=false
    assert stdout.lines == ["lifespan startup", "lifespan shutdown"]


def test_repeated_header_flag(launch: Launcher) -> None:
    cli = launch("cliapp:app", "--port", "0", HEADERS_FLAG, "X-One: 1", HEADERS_FLAG, "X-Two:two words")
    response = httpx.get(cli.url)
    assert (response.headers["x-one"], response.headers["x-two"]) == ("1", "two words")
    stop_gracefully(cli)


def test_env_file(launch: Launcher, app_dir: Path) -> None:
    (app_dir / "app.env").write_text(
        '# settings for the app\n'
        'export GREETING="hello from the file"\n'
        'OVERRIDDEN=from the file  # a comment\n'
    )
    cli = launch("cliapp:app", "--port", "0", "--env-file", "app.env", env={"OVERRIDDEN": "real"})
    assert httpx.get(cli.url + "/env").json() == {
        "at_import": "hello from the file",  # loaded before the app module is imported
        "greeting": "hello from the file",
        "overridden": "real",  # the real environment wins
    }
    stop_gracefully(cli)


def test_root_path(launch: Launcher) -> None:
    cli = launch("cliapp:app", "--port", "0", "--root-path", "/api")
    assert httpx.get(cli.url + "/scope").json() == {"root_path": "/api", "path": "/api/scope"}
    stop_gracefully(cli)


def test_log_config_json(launch: Launcher, app_dir: Path) -> None:
    handler = {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    (app_dir / "logging.json").write_text(json.dumps({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "custom|%(name)s|%(levelname)s|%(message)s"}},
        "handlers": {"stderr": handler},
        "loggers": {
            "asgisock.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "asgisock.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        },
    }))
    cli = launch("cliapp:app", "--port", "0", "--log-config", "logging.json")
    assert cli.stderr.wait_for("asgisock running on ").startswith("custom|asgisock.error|INFO|")
    httpx.get(cli.url + "/logged")
    assert cli.stderr.wait_for("GET /logged").startswith("custom|asgisock.access|INFO|")
    stop_gracefully(cli)
    assert all(line.startswith("custom|") for line in cli.stderr.lines), cli.stderr.text


# -- where to listen ---------------------------------------------------------------------------


def test_unix_domain_socket(launch: Launcher, app_dir: Path) -> None:
    path = app_dir / "asgisock.sock"
    cli = launch("cliapp:app", "--uds", str(path))
    assert cli.started() == f"unix:{path}"
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path))) as client:
        response = client.get("http://localhost/scope")
    assert response.json() == {"root_path": "", "path": "/scope"}
    stop_gracefully(cli)
    assert not path.exists()  # the socket file is removed on exit


def test_file_descriptor(launch: Launcher) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        cli = launch("cliapp:app", "--fd", str(sock.fileno()), pass_fds=(sock.fileno(),))
    assert cli.port == port
    assert httpx.get(f"http://127.0.0.1:{port}").text == "hello"
    stop_gracefully(cli)


def test_fd_with_uds_neither_lies_nor_deletes_the_path(launch: Launcher, app_dir: Path) -> None:
    path = app_dir / "other.sock"
    with socket.socket(socket.AF_UNIX) as other, socket.socket() as sock:
        other.bind(str(path))  # a socket file that belongs to another program
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        cli = launch("cliapp:app", "--fd", str(sock.fileno()), "--uds", str(path), pass_fds=(sock.fileno(),))
        line = cli.stderr.wait_for(("asgisock running on ", "Error: "))
        if line.startswith("Error: "):  # refusing the combination is fine
            assert cli.wait() == 2
            assert "'--fd'" in line or "'--uds'" in line
        else:  # and so is serving on one of them, saying which
            assert cli.started() == f"http://127.0.0.1:{port}"
            stop_gracefully(cli)
        assert path.exists()


def test_port_in_use_is_one_line(app_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli("cliapp:app", "--port", str(taken.getsockname()[1]), cwd=app_dir)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "address already in use" in result.stderr.splitlines()[-1].lower()
    assert "lifespan shutdown" in result.stdout  # the app's startup is undone


# -- signals and shutdown ----------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_shuts_down_gracefully(launch: Launcher, sig: signal.Signals, loop: str) -> None:
    cli = launch("cliapp:app", "--port", "0", "--loop", loop)
    assert httpx.get(cli.url).status_code == 200
    stop_gracefully(cli, sig)
    assert cli.stdout.lines == ["lifespan startup", "lifespan shutdown"]
    assert cli.stderr.lines[-1].endswith(f"Finished server process [{cli.process.pid}]")


def test_in_flight_request_finishes_during_shutdown(launch: Launcher, loop: str) -> None:
    cli = launch("cliapp:app", "--port", "0", "--loop", loop)
    with cli.connect() as sock:
        sock.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
        cli.stdout.wait_for("slow request started")
        cli.send_signal(signal.SIGTERM)
        cli.stderr.wait_for("Waiting for connections to close")
        with pytest.raises(ConnectionRefusedError):
            cli.connect()  # no new connections once shutdown began
        assert cli.process.poll() is None
        sock.sendall(b"hello")
        data = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close\r\n" in data
    assert data.endswith(b"\r\n\r\nhello")
    assert cli.wait() == 0, cli.stderr.text  # the drain is over: the process exits by itself
    assert "lifespan shutdown" in cli.stdout.lines


def test_graceful_shutdown_timeout_cuts_hung_request(launch: Launcher) -> None:
    cli = launch("cliapp:app", "--port", "0", "--timeout-graceful-shutdown", "0.5")
    with cli.connect() as sock:
        sock.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        cli.stdout.wait_for("hang request started")
        cli.send_signal(signal.SIGINT)
        assert cli.wait() == 0
        read_until_closed(sock)  # the connection is closed, not left hanging
    assert cli.stderr.wait_for("Graceful shutdown timed out")
    assert "lifespan shutdown" in cli.stdout.lines


def test_second_sigint_forces_exit(launch: Launcher, loop: str) -> None:
    cli = launch("cliapp:app", "--port", "0", "--loop", loop)
    with cli.connect() as sock:
        sock.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        cli.stdout.wait_for("hang request started")
        cli.send_signal(signal.SIGINT)
        cli.stderr.wait_for("Waiting for connections to close")
        assert cli.process.poll() is None  # the hung request holds shutdown for up to 25 s
        cli.send_signal(signal.SIGINT)
        assert cli.wait() == 0
        read_until_closed(sock)
    assert "Graceful shutdown timed out" not in cli.stderr.text


def test_idle_keep_alive_connection_does_not_delay_shutdown(launch: Launcher) -> None:
    cli = launch("cliapp:app", "--port", "0", "--timeout-keep-alive", "600")
    with httpx.Client(timeout=timeout(5)) as client:
        assert client.get(cli.url).status_code == 200  # the connection stays open, idle
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(seconds=5) == 0


def test_sigint_stops_a_server_whose_startup_hangs(launch: Launcher) -> None:
    cli = launch("cliapp:hanging_startup", "--port", "0")
    cli.stdout.wait_for("startup hanging")
    cli.send_signal(signal.SIGINT)
    cli.send_signal(signal.SIGINT)  # the documented force quit
    try:
        code = cli.wait(seconds=3)
    except subprocess.TimeoutExpired:
        pytest.fail("the server ignored SIGINT during startup")
    assert code != 0
    assert "asgisock running on" not in cli.stderr.text


# -- lifespan ----------------------------------------------------------------------------------


def test_lifespan_startup_failure_exits_3(app_dir: Path) -> None:
    result = run_cli("cliapp:failing_startup", "--port", "0", cwd=app_dir)
    assert result.returncode == 3
    assert "ERROR:    database unreachable" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr
    assert "asgisock running on" not in result.stderr


def test_lifespan_on_requires_support(app_dir: Path) -> None:
    result = run_cli("cliapp:no_lifespan", "--port", "0", "--lifespan", "on", cwd=app_dir)
    assert result.returncode == 3
    assert "only http is supported" in result.stderr
    assert "asgisock running on" not in result.stderr


def test_lifespan_auto_serves_app_without_support(launch: Launcher) -> None:
    cli = launch("cliapp:no_lifespan", "--port", "0")
    assert httpx.get(cli.url).text == "hello"
    cli.send_signal(signal.SIGINT)
    assert cli.wait() == 0
    assert "Traceback" not in cli.stderr.text


# -- terminal output ---------------------------------------------------------------------------


def test_no_colour_when_stderr_is_not_a_terminal(app_dir: Path) -> None:
    result = run_cli("nomodule:app", cwd=app_dir)
    assert one_line(result.stderr).startswith("ERROR:")
    assert "\x1b[" not in result.stderr


def test_colour_when_stderr_is_a_terminal(app_dir: Path) -> None:
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-m", "asgisock", "nomodule:app"], cwd=app_dir,
                                   env=child_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=follower)
        os.close(follower)
        assert process.wait(timeout(20)) == 1
        output = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(leader)
    assert output.startswith(b"\x1b[31mERROR:")


# -- behind a proxy, and TLS -------------------------------------------------------------------


@pytest.mark.parametrize(("env", "honoured"), [
    ({}, True),  # the default trusts 127.0.0.1
    ({"FORWARDED_ALLOW_IPS": "10.0.0.1"}, False),  # uvicorn's variable
    ({"FORWARDED_ALLOW_IPS": "10.0.0.1", "ASGISOCK_FORWARDED_ALLOW_IPS": "127.0.0.1"}, True),
])
def test_forwarded_allow_ips_from_the_environment(launch: Launcher, env: dict[str, str], honoured: bool) -> None:
    cli = launch("cliapp:app", "--port", "0", "--lifespan", "off", env=env)
    response = httpx.get(cli.url + "/client", headers={"X-Forwarded-For": "203.0.113.7",
                                                        "X-Forwarded-Proto": "https"}, timeout=timeout(5))
    scope = response.json()
    assert (scope["client"][0] == "203.0.113.7") is honoured
    assert (scope["scheme"] == "https") is honoured


def _write_in_place(path: Path, data: bytes, size: int) -> None:
    """Rewrite a file keeping its inode, size and times: only a signal can tell it changed."""
    info = path.stat()
    with path.open("r+b") as file:
        file.write(data.ljust(size, b"\n"))
        file.truncate()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def test_sighup_reloads_the_certificate(launch: Launcher, tmp_path: Path) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    size = 8192  # PEM readers skip what lies outside the blocks: pad both pairs to one size

    def issue() -> bytes:
        cert = ca.issue_cert("127.0.0.1")
        _write_in_place(keyfile, cert.private_key_pem.bytes(), size)
        _write_in_place(certfile, cert.cert_chain_pems[0].bytes(), size)
        return cert.cert_chain_pems[0].bytes()

    certfile.write_bytes(b"\n" * size)
    keyfile.write_bytes(b"\n" * size)
    first = issue()
    cli = launch("cliapp:app", "--port", "0", "--lifespan", "off", "--ssl-certfile", str(certfile),
                 "--ssl-keyfile", str(keyfile), "--log-level", "debug")
    assert cli.url.startswith("https://127.0.0.1:")
    context = ssl.create_default_context()
    ca.configure_trust(context)

    def served() -> bytes:
        with cli.connect() as raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return ssl.DER_cert_to_PEM_cert(der).encode()

    assert ssl.PEM_cert_to_DER_cert(served().decode()) == ssl.PEM_cert_to_DER_cert(first.decode())
    second = issue()
    cli.send_signal(signal.SIGHUP)
    cli.stderr.wait_for("Loaded a new TLS certificate")
    assert ssl.PEM_cert_to_DER_cert(served().decode()) == ssl.PEM_cert_to_DER_cert(second.decode())
    with httpx.Client(verify=context) as client:
        assert client.get(cli.url + "/client").json()["scheme"] == "https"
    cli.send_signal(signal.SIGTERM)
    assert cli.wait() == 0


def test_access_lines_survive_a_crash(launch: Launcher) -> None:
    """A line is written within one loop iteration of its response: once a later response has
    arrived, a SIGKILL cannot lose the earlier line."""
    cli = launch("cliapp:app", "--port", "0", "--lifespan", "off")
    with httpx.Client(base_url=cli.url, timeout=timeout(5)) as client:
        for index in range(20):
            assert client.get(f"/line-{index}").status_code == 200
        assert client.get("/last").status_code == 200
    cli.process.kill()
    cli.wait()
    for index in range(20):
        assert f'"GET /line-{index} HTTP/1.1" 200' in cli.stderr.text


def test_json_access_log(launch: Launcher) -> None:
    cli = launch("cliapp:app", "--port", "0", "--lifespan", "off", "--access-log-format", "json")
    httpx.get(cli.url + "/scope?x=1", headers={"User-Agent": 'probe "1"', "X-Request-ID": "r-42"},
              timeout=timeout(5))
    line = cli.stderr.wait_for('"path":"/scope"')
    entry = json.loads(line.split("INFO:", 1)[1])
    assert entry["method"] == "GET" and entry["query"] == "x=1" and entry["status"] == 200
    assert entry["user_agent"] == 'probe "1"' and entry["request_id"] == "r-42"
    assert entry["client"].startswith("127.0.0.1:") and entry["bytes"] > 0
