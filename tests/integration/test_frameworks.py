"""FastAPI, Starlette, Litestar, Quart, Django with Channels and BlackSheep, served by asgisock.

Each framework has an app in ``tests/integration/frameworks/`` with the same routes (listed
there), served by an ``asgisock`` process on both event loops, one process per framework and
loop for the module; lifespan, ``--root-path`` and each framework's own documented run
command get processes of their own. Everything goes over real sockets: httpx, raw sockets
where the bytes on the wire matter, and the websockets client.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.integration.frameworks import (
    CHUNKS,
    CLOSE_CODE,
    CLOSE_REASON,
    EVENTS,
    STATE,
    SUBPROTOCOL,
)
from tests.processes import Cli, Launcher, read_until_closed
from tests.support import timeout

ROOT = Path(__file__).parents[2]
FRAMEWORKS = ("blacksheep", "django", "fastapi", "litestar", "quart", "starlette")
WITH_LIFESPAN = tuple(name for name in FRAMEWORKS if name != "django")
"""Django has no lifespan: Channels' router refuses the scope, and asgisock goes on without."""
WITH_BACKGROUND_TASKS = ("fastapi", "litestar", "quart", "starlette")
TELLS_CLOSE_CODE = tuple(name for name in FRAMEWORKS if name != "quart")
"""Quart cancels a WebSocket route when the client leaves, without telling it the code."""


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest) -> str:
    """Both event loops, as everywhere, with one process per loop for the whole module."""
    name: str = request.param
    return name


@pytest.fixture(scope="module", params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def only(*names: str) -> pytest.MarkDecorator:
    """Run a test for the frameworks that have what it needs."""
    return pytest.mark.parametrize("framework", names, indirect=True, scope="module")


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    file = tmp_path_factory.mktemp("payload") / "payload.bin"
    file.write_bytes(os.urandom(3 * 2**20 + 17))
    return file


@dataclass
class Served:
    framework: str
    cli: Cli
    url: str

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=timeout(10), **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=timeout(10), **kwargs)

    def raw(self, request: bytes) -> tuple[bytes, bytes]:
        """The head and the body as they came on the wire, for a request that closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout(10)) as sock:
            sock.sendall(request)
            head, _, body = read_until_closed(sock).partition(b"\r\n\r\n")
        return head, body

    def websocket(self, **kwargs: Any) -> ClientConnection:
        ws: ClientConnection = connect(
            self.url.replace("http://", "ws://") + "/ws", open_timeout=timeout(5),
            close_timeout=timeout(5), proxy=None, **kwargs)
        return ws


def launch_app(launch: Launcher, framework: str, payload: Path, *args: str) -> Served:
    cli = launch(f"tests.integration.frameworks.{framework}_app:app", "--port", "0", *args,
                 env={"FRAMEWORK_PAYLOAD": str(payload)})
    return Served(framework, cli, cli.url)


@pytest.fixture(scope="module")
def served(framework: str, loop: str, payload: Path) -> Iterator[Served]:
    launch = Launcher(ROOT)
    try:
        yield launch_app(launch, framework, payload, "--loop", loop)
    finally:
        for cli in launch.started:
            cli.stop()


@pytest.fixture
def launch() -> Iterator[Launcher]:
    launcher = Launcher(ROOT)
    yield launcher
    for cli in launcher.started:
        cli.stop()


def dechunk(body: bytes) -> list[bytes]:
    """The chunks of a chunked body, which must end with the last chunk (RFC 9112 §7.1)."""
    chunks: list[bytes] = []
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert body == b"\r\n", body
            return chunks
        chunks.append(body[:size])
        assert body[size:size + 2] == b"\r\n"
        body = body[size + 2:]


def unframed(head: bytes, body: bytes) -> bytes:
    return b"".join(dechunk(body)) if b"transfer-encoding: chunked" in head.lower() else body


# -- HTTP ---------------------------------------------------------------------------------------


def test_path_and_query_parameters(served: Served) -> None:
    response = served.get("/items/42?q=caf%C3%A9&limit=3")
    assert response.status_code == 200
    assert response.json() == {"item_id": 42, "q": "café", "limit": 3}
    assert served.get("/items/7").json() == {"item_id": 7, "q": None, "limit": 10}
    assert served.get("/items/not-a-number").status_code in (400, 404, 422)


def test_json_body(served: Served) -> None:
    item = {"name": "lamp", "price": 12.5, "tags": ["light", "desk"]}
    response = served.post("/items", json=item)
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {**item, "id": 1}
    assert served.post("/items", json={"name": "lamp"}).status_code in (400, 422)


def test_headers_and_cookies(served: Served) -> None:
    response = served.get("/headers", headers={"X-Token": "t0ken", "Cookie": "session=abc123; other=1"})
    assert response.status_code == 200
    assert response.json() == {"token": "t0ken", "session": "abc123"}
    assert response.headers["x-echo"] == "t0ken"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("seen=yes") and "httponly" in cookie.lower()


def test_streaming_response_is_chunked(served: Served) -> None:
    head, body = served.raw(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding: chunked" in head.lower()
    assert dechunk(body) == CHUNKS  # each body message the app sent is a chunk of its own


def test_server_sent_events(served: Served) -> None:
    with httpx.stream("GET", served.url + "/events", timeout=timeout(10)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    events = [block for block in re.split(r"\r?\n\r?\n", text) if block.strip()]
    data = [line.removeprefix("data:").strip() for block in events
            for line in re.split(r"\r?\n", block) if line.startswith("data:")]
    assert data == EVENTS


def test_file_upload(served: Served) -> None:
    data = os.urandom(2 * 2**20 + 5)
    response = served.post("/upload", files={"file": ("upload.bin", data)}, data={"note": "héllo"})
    assert response.status_code == 200, response.text
    assert response.json() == {"filename": "upload.bin", "size": len(data),
                               "sha256": hashlib.sha256(data).hexdigest(), "note": "héllo"}


def test_file_response(served: Served, payload: Path) -> None:
    expected = payload.read_bytes()
    with httpx.Client(timeout=timeout(10)) as client:
        response = client.get(served.url + "/file")
        assert response.status_code == 200
        # BlackSheep streams a file chunked; the others say its length
        framing = response.headers.get("content-length") or response.headers["transfer-encoding"]
        assert framing == (str(len(expected)) if served.framework != "blacksheep" else "chunked")
        assert response.content == expected
        assert client.get(served.url + "/items/1").status_code == 200  # the connection is still usable


def test_client_and_url(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=timeout(5)) as sock:
        sock.sendall(b"GET /whoami?x=1 HTTP/1.1\r\nHost: example.test:8080\r\nConnection: close\r\n\r\n")
        head, _, body = read_until_closed(sock).partition(b"\r\n\r\n")
        client_port = sock.getsockname()[1]
    assert json.loads(unframed(head, body)) == {
        "client": ["127.0.0.1", client_port],
        "url": "http://example.test:8080/whoami?x=1",  # built from the Host header
        "root_path": "",
        "item_url": "http://example.test:8080/items/3",
    }


def test_client_leaving_an_endless_stream_ends_the_request(served: Served) -> None:
    seen_out, seen_err = len(served.cli.stdout.lines), len(served.cli.stderr.lines)
    with socket.create_connection(("127.0.0.1", served.port), timeout=timeout(5)) as sock:
        sock.sendall(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while received.count(b"tick") < 2:
            received += sock.recv(65536)
    assert b"transfer-encoding: chunked" in received.lower()
    if served.framework != "django":
        # Django closes only the iterator it wraps the app's in, so the app's own generator ends
        # whenever the garbage collector frees it: nothing to wait for.
        served.cli.stdout.wait_for("endless stream ended", since=seen_out)
    assert served.get("/items/1").status_code == 200
    # leaving is what clients do: nothing is logged as an error
    errors = [line for line in served.cli.stderr.lines[seen_err:] if "ERROR" in line or "Traceback" in line]
    assert errors == [], "\n".join(served.cli.stderr.lines[seen_err:])


_CRASH_LOGGED = "RuntimeError: unhandled in the route"
"""The last line of the record the server logs for ``/crash``: the exception itself."""


def test_exception_handler_answers_500(served: Served) -> None:
    response = served.get("/teapot")
    assert response.status_code == 500
    assert response.json() == {"error": "teapot"}


def test_unhandled_exception_is_500(served: Served) -> None:
    seen = len(served.cli.stderr.lines)
    with httpx.Client(timeout=timeout(5)) as client:
        response = client.get(served.url + "/crash")
        assert response.status_code == 500
        assert client.get(served.url + "/items/1").status_code == 200
    if served.framework in ("fastapi", "starlette"):
        # Logged after the 500 was sent: wait for the record's last line, so that it is not
        # taken for a later test's.
        served.cli.stderr.wait_for(_CRASH_LOGGED, since=seen)


@only("fastapi", "starlette")
def test_an_exception_the_app_raises_is_logged_by_asgisock(served: Served) -> None:
    """Starlette answers 500 and raises the exception again, for the server to log."""
    seen = len(served.cli.stderr.lines)
    assert served.get("/crash").status_code == 500
    served.cli.stderr.wait_for(_CRASH_LOGGED, since=seen)


@only(*WITH_BACKGROUND_TASKS)
def test_background_task_runs_after_the_response(served: Served) -> None:
    seen = len(served.cli.stdout.lines)
    response = served.post("/jobs")
    assert (response.status_code, response.json()) == (202, {"status": "queued"})
    # the job waits for /release, which the test sends only now that it has the response
    assert served.post("/release").status_code == 200
    line = served.cli.stdout.wait_for("background from ", since=seen)
    assert line == f"background from {served.framework}"


# -- WebSocket --------------------------------------------------------------------------------


def test_websocket_route(served: Served) -> None:
    with served.websocket(subprotocols=["chat.v1", SUBPROTOCOL]) as ws:
        assert ws.subprotocol == SUBPROTOCOL
        for message in ("héllo ☃", b"\x00\xff" * 1000, "", b"x", "y" * 70000):
            ws.send(message)
            assert ws.recv(timeout(5)) == message
        ws.send("close")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout(5))
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (CLOSE_CODE, CLOSE_REASON)


def test_client_close_is_seen_by_the_app(served: Served) -> None:
    seen = len(served.cli.stdout.lines)
    with served.websocket() as ws:
        ws.send("ping")
        assert ws.recv(timeout(5)) == "ping"
        ws.close(4002, "bye")
    said = "client left: 4002" if served.framework in TELLS_CLOSE_CODE else "client left"
    assert served.cli.stdout.wait_for(said, since=seen) == said


@only(*(name for name in FRAMEWORKS if name != "quart"))
def test_empty_binary_message(served: Served) -> None:
    """Quart reads an empty binary message as ``message["text"]``, which ASGI lets a server leave
    out (uvicorn and asgisock do): its route fails with 1011."""
    with served.websocket() as ws:
        ws.send(b"")
        assert ws.recv(timeout(5)) == b""


# -- processes of their own -------------------------------------------------------------------


@only(*WITH_LIFESPAN)
def test_lifespan_startup_and_shutdown(framework: str, loop: str, payload: Path, launch: Launcher) -> None:
    app = launch_app(launch, framework, payload, "--loop", loop, "--lifespan", "on")
    assert app.cli.stdout.wait_for("lifespan startup") == "lifespan startup"
    assert app.get("/state").json() == STATE
    app.cli.send_signal(signal.SIGINT)
    assert app.cli.wait() == 0, app.cli.stderr.text
    assert app.cli.stdout.lines[-1] == "lifespan shutdown"


def test_root_path(framework: str, loop: str, payload: Path, launch: Launcher) -> None:
    app = launch_app(launch, framework, payload, "--loop", loop, "--root-path", "/api")
    response = app.get("/whoami")  # a proxy stripped the /api prefix
    assert response.status_code == 200
    shown = response.json()
    assert shown["root_path"] == "/api"
    assert shown["url"] == app.url + "/api/whoami"
    assert shown["item_url"] == app.url + "/api/items/3"


# -- uploads as other clients send them -------------------------------------------------------


def multipart(data: bytes, note: str) -> tuple[dict[str, str], bytes]:
    """The head fields and body of a form upload, as httpx would send it."""
    request = httpx.Request("POST", "http://x/upload", files={"file": ("upload.bin", data)},
                            data={"note": note})
    return {"content-type": request.headers["content-type"]}, request.read()


def test_upload_after_100_continue(served: Served) -> None:
    """As curl sends a large form: the body only once the server has said ``100 Continue``."""
    data = os.urandom(2**20)
    fields, body = multipart(data, "continued")
    head = (f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: {fields['content-type']}\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", served.port), timeout=timeout(10)) as sock:
        sock.sendall(head.encode())
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = sock.recv(1)
            assert chunk, "closed before 100 Continue"
            interim += chunk
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        response_head, _, response_body = read_until_closed(sock).partition(b"\r\n\r\n")
    assert response_head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(unframed(response_head, response_body))["sha256"] == hashlib.sha256(data).hexdigest()


@only(*(name for name in FRAMEWORKS if name != "django"))
def test_chunked_upload(served: Served) -> None:
    """A form sent chunked, without a length. Django reads a body only up to its
    Content-Length, so a chunked form reaches it empty, whatever the server."""
    data = os.urandom(2**20 + 1)
    fields, body = multipart(data, "chunked")
    pieces = (body[i:i + 65536] for i in range(0, len(body), 65536))
    response = served.post("/upload", headers=fields, content=pieces)
    assert response.status_code == 200, response.text
    assert response.json()["sha256"] == hashlib.sha256(data).hexdigest()


# -- each framework's own run command, uvicorn (or hypercorn, or daphne) replaced -----------------


@dataclass(frozen=True)
class Documented:
    """An app as a framework's docs first show it, and the command they serve it with."""

    files: dict[str, str]
    command: tuple[str, ...]
    expected: str


DOCUMENTED = {
    # FastAPI's "First Steps" and "Run a Server Manually": uvicorn main:app --host 0.0.0.0 --port 80
    "fastapi": Documented(
        {"main.py": "from fastapi import FastAPI\n\napp = FastAPI()\n\n\n@app.get('/')\n"
                    "async def root():\n    return {'message': 'Hello World'}\n"},
        ("asgisock", "main:app", "--host", "0.0.0.0", "--port", "0"), '{"message":"Hello World"}'),
    # Starlette's README: uvicorn main:app
    "starlette": Documented(
        {"main.py": "from starlette.applications import Starlette\n"
                    "from starlette.responses import JSONResponse\nfrom starlette.routing import Route\n\n\n"
                    "async def homepage(request):\n    return JSONResponse({'hello': 'world'})\n\n\n"
                    "app = Starlette(debug=True, routes=[Route('/', homepage)])\n"},
        ("asgisock", "main:app"), '{"hello":"world"}'),
    # Litestar's "Manually with ASGI server": uvicorn app:app
    "litestar": Documented(
        {"app.py": "from litestar import Litestar, get\n\n\n@get('/')\nasync def hello_world() -> str:\n"
                   "    return 'Hello, world!'\n\n\napp = Litestar([hello_world])\n"},
        ("asgisock", "app:app"), "Hello, world!"),
    # Quart's deployment page: hypercorn module:app
    "quart": Documented(
        {"module.py": "from quart import Quart\n\napp = Quart(__name__)\n\n\n@app.route('/')\n"
                      "async def hello():\n    return 'hello'\n"},
        ("asgisock", "module:app"), "hello"),
    # Django's "How to use Django with Uvicorn", in a project made by django-admin startproject
    "django": Documented({}, ("python", "-m", "asgisock", "myproject.asgi:application"),
                         "The install worked successfully!"),
    # BlackSheep's "Getting started": uvicorn server:app --port 44777 --reload
    "blacksheep": Documented(
        {"server.py": "from datetime import datetime\n\nfrom blacksheep import Application, get\n\n"
                      "app = Application()\n\n\n@get('/')\ndef home():\n"
                      "    return f'Hello, World! {datetime.now().isoformat()}'\n"},
        ("asgisock", "server:app", "--port", "0"), "Hello, World! "),
}
"""The documented ports become 0 (an environment variable where the command names none), and
``--reload`` is left out."""


def test_documented_run_command(framework: str, tmp_path: Path) -> None:
    documented = DOCUMENTED[framework]
    for name, source in documented.files.items():
        (tmp_path / name).write_text(source)
    if framework == "django":
        subprocess.run([sys.executable, "-m", "django", "startproject", "myproject", str(tmp_path)],
                       check=True, timeout=timeout(30))  # DEBUG on: the welcome page answers "/"
    program, *args = documented.command
    if program == "python":
        program, args = sys.executable, args
    else:
        program = str(Path(sys.executable).with_name(program))
    cli = Cli(args, cwd=tmp_path, env={"ASGISOCK_PORT": "0"}, program=(program,))
    try:
        url = cli.url.replace("0.0.0.0", "127.0.0.1")
        response = httpx.get(url + "/", timeout=timeout(10))
        assert response.status_code == 200
        assert documented.expected in response.text
        cli.send_signal(signal.SIGINT)
        assert cli.wait() == 0, cli.stderr.text
    finally:
        cli.stop()
