"""The chat example (``examples/chat/``) over real sockets: one server with rooms in memory, and
two ``asgisock`` processes sharing rooms through a real ``redis-server``, which goes away and
comes back."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from examples.chat import create_app
from examples.chat.brokers import REDIS_DOWN
from examples.chat.hub import MAX_TEXT, Connection, parse
from tests.integration.services import RedisServer
from tests.processes import Cli, Launcher
from tests.support import serve, timeout

ROOT = Path(__file__).parents[2]


class Person:
    """One page's connection to ``/ws``, through the ``websockets`` client."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.id = ""

    def event(self) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(self.socket.recv(timeout(5)))
        return event

    def send(self, kind: str, **fields: Any) -> None:
        self.socket.send(json.dumps({"type": kind, **fields}))

    def closed(self) -> tuple[int, str]:
        """The code and reason of the server's close frame, reading whatever came before it."""
        while True:
            try:
                self.socket.recv(timeout(5))
            except ConnectionClosed as closed:
                frame = closed.rcvd
                break
        assert frame is not None, "no close frame"
        return frame.code, frame.reason


@contextlib.contextmanager
def person(base: str, room: str, name: str) -> Iterator[Person]:
    """A connection whose welcome has been read, but not its own join."""
    with connect(f"{base}/ws?{urlencode({'room': room, 'name': name})}",
                 open_timeout=timeout(5), close_timeout=timeout(5)) as socket:
        someone = Person(socket)
        welcome = someone.event()
        assert (welcome["type"], welcome["name"], welcome["room"]) == ("welcome", name, room)
        someone.id = welcome["id"]
        yield someone


@contextlib.contextmanager
def joined(base: str, room: str, name: str, people: list[str]) -> Iterator[Person]:
    """A connection whose own join came back with ``people`` listed."""
    with person(base, room, name) as someone:
        assert someone.event() == {"type": "join", "id": someone.id, "name": name, "people": people}
        yield someone


def talk(speaker: Person, *listeners: Person, text: str) -> None:
    """``speaker`` says ``text``; it and everyone in ``listeners`` get it."""
    speaker.send("message", text=text)
    for listener in (speaker, *listeners):
        event = listener.event()
        assert (event["type"], event["id"], event["text"]) == ("message", speaker.id, text)


# -- one server, rooms in memory -------------------------------------------------------------


def test_two_people_in_one_room(loop: str) -> None:
    with serve(create_app(), loop=loop, lifespan="on") as server, \
         joined(server.ws_url, "lobby", "Ann", ["Ann"]) as ann:
        with joined(server.ws_url, "lobby", "Bob", ["Ann", "Bob"]) as bob:
            assert ann.event() == {"type": "join", "id": bob.id, "name": "Bob",
                                   "people": ["Ann", "Bob"]}
            bob.send("typing")
            assert ann.event() == {"type": "typing", "id": bob.id, "name": "Bob"}
            assert bob.event()["type"] == "typing"  # the page hides its own
            talk(bob, ann, text="hello, Ann")
            talk(ann, bob, text="héllo ☃")
        assert ann.event() == {"type": "leave", "id": bob.id, "name": "Bob", "people": ["Ann"]}
        assert httpx.get(f"{server.url}/health").json() == {"broker": "memory", "connections": 1}


def test_rooms_are_apart(loop: str) -> None:
    with serve(create_app(), loop=loop, lifespan="on") as server, \
         joined(server.ws_url, "lobby", "Ann", ["Ann"]) as ann, \
         joined(server.ws_url, "kitchen", "Cy", ["Cy"]) as cy:
        talk(ann, text="only the lobby hears this")
        talk(cy, text="only the kitchen hears this")  # Cy's first event: nothing came before


def test_the_page_and_its_files(loop: str) -> None:
    with serve(create_app(), loop=loop, lifespan="on") as server:
        page = httpx.get(f"{server.url}/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert 'src="static/chat.js"' in page.text  # relative: it works under a path prefix
        script = httpx.get(f"{server.url}/static/chat.js")
        assert script.status_code == 200
        assert 'new URL("ws", location.href)' in script.text


@pytest.mark.parametrize(
    ("query", "sent", "reason"),
    [
        ({"room": "lobby"}, None, "pick a name of 1-24 characters"),
        ({"room": "no spaces", "name": "Ann"}, None, "a room of 1-32 letters"),
        ({"room": "lobby", "name": "x" * 25}, None, "pick a name of 1-24 characters"),
        ({"room": "lobby", "name": "Ann"}, "hello", 'expected JSON {"type": "message"'),
        ({"room": "lobby", "name": "Ann"}, '{"type": "shout"}', 'expected JSON {"type": "message"'),
        ({"room": "lobby", "name": "Ann"}, '{"type": "message", "text": " "}', "1 to 2000 characters"),
    ],
)
def test_refusals_close_with_1008_and_say_why(loop: str, query: dict[str, str], sent: str | None,
                                                reason: str) -> None:
    with serve(create_app(), loop=loop, lifespan="on") as server, \
         connect(f"{server.ws_url}/ws?{urlencode(query)}", open_timeout=timeout(5)) as socket:
        if sent is not None:
            socket.send(sent)
        code, said = Person(socket).closed()
        assert code == 1008
        assert reason in said


@given(st.one_of(st.text(max_size=50), st.none(),
                 st.builds(lambda text: json.dumps({"type": "message", "text": text}),
                           st.text(max_size=MAX_TEXT + 5))))
def test_what_the_page_sends_is_published_or_refused(text: str | None) -> None:
    sender = Connection("Ann", "lobby")
    refusal = ""
    try:
        event = parse(sender, text)
    except ValueError as error:
        refusal, event = str(error), None
    if refusal:
        assert len(refusal.encode()) <= 123  # it must fit in a close frame (RFC 6455 §5.5)
        return
    assert event is not None
    assert (event["id"], event["name"]) == (sender.id, "Ann")
    assert event["type"] == "message"
    assert 0 < len(event["text"]) <= MAX_TEXT and event["text"].strip()


def test_typing_notices_are_thinned_out() -> None:
    typist = Connection("Ann", "lobby")
    assert parse(typist, '{"type": "typing"}') == {"type": "typing", "id": typist.id, "name": "Ann"}
    assert parse(typist, '{"type": "typing"}') is None


# -- two processes, rooms in Redis -----------------------------------------------------------


@pytest.fixture
def workers(loop: str, redis_server: RedisServer) -> Iterator[tuple[Cli, Cli]]:
    """Two ``asgisock examples.chat:app`` processes sharing ``redis_server``."""
    launch = Launcher(ROOT)
    try:
        args = ("examples.chat:app", "--port", "0", "--loop", loop)
        env = {"REDIS_URL": redis_server.url}
        yield launch(*args, env=env), launch(*args, env=env)
    finally:
        for cli in launch.started:
            cli.stop()


def ws_url(cli: Cli) -> str:
    return cli.url.replace("http://", "ws://")


def test_people_on_two_workers_share_a_room(workers: tuple[Cli, Cli]) -> None:
    one, two = workers
    with joined(ws_url(one), "lobby", "Ann", ["Ann"]) as ann:
        with joined(ws_url(two), "lobby", "Bob", ["Ann", "Bob"]) as bob:
            assert ann.event() == {"type": "join", "id": bob.id, "name": "Bob",
                                   "people": ["Ann", "Bob"]}
            talk(bob, ann, text="from worker two")
            talk(ann, bob, text="from worker one")
            ann.send("typing")
            assert bob.event() == {"type": "typing", "id": ann.id, "name": "Ann"}
            assert ann.event()["type"] == "typing"
        assert ann.event() == {"type": "leave", "id": bob.id, "name": "Bob", "people": ["Ann"]}
    assert httpx.get(f"{two.url}/health").json() == {"broker": "redis", "connections": 0}


def test_redis_going_away_is_said_and_the_rooms_recover(
        workers: tuple[Cli, Cli], redis_server: RedisServer) -> None:
    one, two = workers
    with joined(ws_url(one), "lobby", "Ann", ["Ann"]) as ann, \
         joined(ws_url(two), "lobby", "Bob", ["Ann", "Bob"]) as bob:
        redis_server.kill()
        assert ann.closed() == (1013, REDIS_DOWN)
        assert bob.closed() == (1013, REDIS_DOWN)
    # While Redis is away, a newcomer is told the same, and a load balancer sees a failing worker.
    with person(ws_url(two), "lobby", "Cy") as cy:
        assert cy.closed() == (1013, REDIS_DOWN)
    health = httpx.get(f"{one.url}/health")
    assert (health.status_code, health.json()["error"]) == (503, REDIS_DOWN)
    assert "cannot reach Redis" in one.stderr.wait_for("cannot reach Redis")

    redis_server.start()  # the same port, empty: the workers were not restarted
    with joined(ws_url(two), "lobby", "Bob", ["Bob"]) as bob, \
         joined(ws_url(one), "lobby", "Ann", ["Ann", "Bob"]) as ann:
        assert bob.event()["people"] == ["Ann", "Bob"]
        talk(ann, bob, text="we are back")
        talk(bob, ann, text="so we are")
    assert httpx.get(f"{one.url}/health").status_code == 200
