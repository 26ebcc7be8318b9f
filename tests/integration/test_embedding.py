"""``asgisock.Server`` embedded in a program's own event loop, and ``asgisock.run`` from a script."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import pytest

import asgisock
from asgisock.exceptions import AppImportError
from asgisock.server import loop_factory
from asgisock.types import Receive, Send
from tests.apps import hello, respond
from tests.support import timeout


class LifespanApp:
    def __init__(self) -> None:
        self.events: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            self.events.append("startup")
            await send({"type": "lifespan.startup.complete"})
            await receive()
            self.events.append("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return
        self.events.append(f"request {scope['path']}")
        await respond(send, 200, b"embedded")


def run_in(loop: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """``asyncio.run`` on the loop under test: the test is the embedding program."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(main())


async def start(server: asgisock.Server, **serve_kwargs: Any) -> asyncio.Task[None]:
    """Start ``server.serve()`` as a task and return once ``on_started`` reports it listening."""
    started = asyncio.Event()
    server.on_started = lambda _server: started.set()
    task = asyncio.create_task(server.serve(**serve_kwargs))
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait([task, waiter], timeout=timeout(10), return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()  # raises what stopped the server
    assert started.is_set(), "the server did not start"
    return task


async def stop(server: asgisock.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    await asyncio.wait_for(task, timeout(10))


def port_of(server: asgisock.Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


def test_serve_as_a_task_and_stop_with_should_exit(loop: str) -> None:
    app = LifespanApp()
    server = asgisock.Server(asgisock.Config(app, port=0, lifespan="on"))
    ports: list[int] = []

    async def main() -> None:
        task = await start(server)
        ports.append(port_of(server))
        async with httpx.AsyncClient(timeout=timeout(5)) as client:
            response = await client.get(f"http://127.0.0.1:{ports[0]}/inside")
        assert response.text == "embedded"
        assert not task.done()
        await stop(server, task)

    run_in(loop, main)
    assert ports[0] > 0
    assert app.events == ["startup", "request /inside", "shutdown"]
    assert (server.started, server.exit_code) == (True, 0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", ports[0]), timeout=timeout(5))


def test_serve_on_sockets_of_the_program(loop: str) -> None:
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    server = asgisock.Server(asgisock.Config(hello))

    async def main() -> None:
        task = await start(server, sockets=[listening])
        assert port_of(server) == port
        async with httpx.AsyncClient(timeout=timeout(5)) as client:
            assert (await client.get(f"http://127.0.0.1:{port}")).text == "Hello, world!"
        await stop(server, task)

    try:
        run_in(loop, main)
    finally:
        listening.close()


def test_two_servers_in_one_loop(loop: str) -> None:
    first = asgisock.Server(asgisock.Config(hello, port=0))
    second = asgisock.Server(asgisock.Config(LifespanApp(), port=0))

    async def main() -> None:
        tasks = [await start(first), await start(second)]
        async with httpx.AsyncClient(timeout=timeout(5)) as client:
            one = await client.get(f"http://127.0.0.1:{port_of(first)}")
            two = await client.get(f"http://127.0.0.1:{port_of(second)}")
        assert (one.text, two.text) == ("Hello, world!", "embedded")
        await stop(first, tasks[0])
        assert not tasks[1].done()  # stopping one leaves the other serving
        async with httpx.AsyncClient(timeout=timeout(5)) as client:
            assert (await client.get(f"http://127.0.0.1:{port_of(second)}")).status_code == 200
        await stop(second, tasks[1])

    run_in(loop, main)


def test_embedding_leaves_the_programs_logging_alone(loop: str) -> None:
    loggers = [logging.getLogger("asgisock.error"), logging.getLogger("asgisock.access"), logging.getLogger()]
    before = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    server = asgisock.Server(asgisock.Config(hello, port=0))

    async def main() -> None:
        await stop(server, await start(server))

    run_in(loop, main)
    assert [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers] == before


@pytest.fixture
def saved_sys_path() -> Iterator[None]:
    """Loading an app by name puts its directory on sys.path for good: undo that."""
    saved = sys.path[:]
    yield
    sys.path[:] = saved


@pytest.mark.usefixtures("saved_sys_path")
def test_import_error_reaches_the_program(loop: str) -> None:
    server = asgisock.Server(asgisock.Config("no_such_module_here:app", port=0))

    async def main() -> None:
        with pytest.raises(AppImportError, match='Could not import module "no_such_module_here"'):
            await start(server)

    run_in(loop, main)
    assert not server.started


def test_programs_signal_handlers_are_restored(loop: str) -> None:
    def programs_handler(signum: int, frame: FrameType | None) -> None:
        pass

    previous = signal.signal(signal.SIGTERM, programs_handler)
    server = asgisock.Server(asgisock.Config(hello, port=0))

    async def main() -> None:
        await stop(server, await start(server))

    try:
        run_in(loop, main)
        assert signal.getsignal(signal.SIGTERM) is programs_handler
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.usefixtures("saved_sys_path")
def test_app_dir_as_a_path(loop: str, tmp_path: Path) -> None:
    (tmp_path / "embedded_app_module.py").write_text(
        "async def app(scope, receive, send):\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'from a path'})\n"
    )
    settings: dict[str, Any] = {"app_dir": tmp_path}  # annotated str; validated as "a path"
    server = asgisock.Server(asgisock.Config("embedded_app_module:app", port=0, **settings))

    async def main() -> None:
        task = await start(server)
        async with httpx.AsyncClient(timeout=timeout(5)) as client:
            assert (await client.get(f"http://127.0.0.1:{port_of(server)}")).text == "from a path"
        await stop(server, task)

    try:
        run_in(loop, main)
    finally:
        sys.modules.pop("embedded_app_module", None)


# -- asgisock.run() from a script --------------------------------------------------------------

SCRIPT = '''
import pathlib, sys
import asgisock

async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"from run()"})

asgisock.run(app, port=0, lifespan="off", **eval(sys.argv[1]))
'''


def run_script(tmp_path: Path, settings: str) -> tuple[int, httpx.Response | None, str]:
    """Run ``asgisock.run(app, **settings)`` in a process: fetch / once it listens, then SIGINT it."""
    script = tmp_path / "serve.py"
    script.write_text(SCRIPT)
    process = subprocess.Popen([sys.executable, str(script), settings], cwd=tmp_path,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    lines: list[str] = []
    response = None
    try:
        for line in process.stderr:  # ends when the process exits
            lines.append(line)
            if "asgisock running on http://" in line:
                url = line.split("running on ", 1)[1].split()[0]
                response = httpx.get(url, timeout=timeout(5))
                process.send_signal(signal.SIGINT)
        code = process.wait(timeout(10))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout(10))
        process.stderr.close()
    return code, response, "".join(lines)


def test_run_from_a_script(tmp_path: Path) -> None:
    code, response, stderr = run_script(tmp_path, "{'access_log': False, 'headers': ['X-From: run']}")
    assert code == 0, stderr
    assert response is not None and response.text == "from run()"
    assert response.headers["x-from"] == "run"
    assert "GET / HTTP/1.1" not in stderr  # access_log=False
    assert "Finished server process" in stderr


def test_run_with_log_config_as_a_path(tmp_path: Path) -> None:
    (tmp_path / "logging.json").write_text(
        '{"version": 1, "disable_existing_loggers": false,'
        ' "formatters": {"f": {"format": "custom %(message)s"}},'
        ' "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "f", "stream": "ext://sys.stderr"}},'
        ' "loggers": {"asgisock.error": {"handlers": ["h"], "level": "INFO", "propagate": false}}}'
    )
    code, response, stderr = run_script(tmp_path, "{'log_config': pathlib.Path('logging.json')}")
    assert code == 0, stderr
    assert response is not None and response.text == "from run()"
    assert "custom asgisock running on http://" in stderr
