"""A real browser: Debian's Chromium, driven by Playwright, against asgisock over ws:// and wss://.

The WebSocket API as a page sees it (``readyState``, the events, ``protocol``, ``extensions``,
``bufferedAmount``) against a small probe app, then the chat example: two pages talking, a
server restart, and Redis going away. Select these tests with ``-m browser``. The chat test
leaves a screenshot in ``docs/images/chat.png``, which the README shows.

Chromium is told to trust the test certificate's key (``--ignore-certificate-errors-spki-list``)
and nothing else, so a wss test still fails on a certificate the server did not send.
"""

from __future__ import annotations

import base64
import hashlib
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from asgisock.types import Receive, Scope, Send
from examples.chat import create_app
from examples.chat.brokers import REDIS_DOWN
from tests.integration.services import RedisServer, require
from tests.processes import Launcher
from tests.support import serve, timeout

pytestmark = pytest.mark.browser

ROOT = Path(__file__).parents[2]
SCREENSHOT = ROOT / "docs" / "images" / "chat.png"
MS = timeout(10) * 1000
"""Playwright's timeouts are in milliseconds."""


@dataclass(frozen=True)
class TLSFiles:
    certfile: str
    keyfile: str
    spki: str
    """base64 of the SHA-256 of the certificate's public key, as Chromium's pin list wants it."""


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    directory = tmp_path_factory.mktemp("tls")
    cert = trustme.CA().issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(directory / "cert.pem")
    cert.private_key_pem.write_to_path(directory / "key.pem")
    key = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).public_key()
    digest = hashlib.sha256(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
    return TLSFiles(str(directory / "cert.pem"), str(directory / "key.pem"),
                    base64.b64encode(digest.digest()).decode())


@pytest.fixture(scope="module")
def browser(tls: TLSFiles) -> Iterator[Browser]:
    chromium = require("chromium", "chromium")  # Debian's /usr/bin/chromium: never a download
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=[f"--ignore-certificate-errors-spki-list={tls.spki}"])
        yield browser
        browser.close()


class Pages:
    """Pages, each in a browser context of its own (no shared storage or connections)."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []

    def open(self) -> Page:
        context = self.browser.new_context(viewport={"width": 960, "height": 540})
        context.set_default_timeout(MS)
        self.contexts.append(context)
        return context.new_page()

    def close(self) -> None:
        """Close them before their server stops: an HTTPS keep-alive connection left open
        holds up a graceful shutdown on asyncio's loop (its TLS shutdown waits for the peer)."""
        for context in self.contexts:
            context.close()
        self.contexts.clear()


@pytest.fixture
def pages(browser: Browser) -> Iterator[Pages]:
    opened = Pages(browser)
    yield opened
    opened.close()


def tls_settings(scheme: str, tls: TLSFiles) -> dict[str, Any]:
    return {"ssl_certfile": tls.certfile, "ssl_keyfile": tls.keyfile} if scheme == "https" else {}


# -- the WebSocket API, against a probe app -------------------------------------------------

PROBE_PAGE = b"<!doctype html><title>probe</title><p>WebSocket probe"


async def probe(scope: Scope, receive: Receive, send: Send) -> None:
    """``/echo`` (choosing subprotocol chat.v2 when offered), ``/bye`` (the server closes with
    4321), ``/refuse`` (the handshake is refused), ``/count`` (answers each message's size)."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": PROBE_PAGE})
        return
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    if scope["path"] == "/refuse":
        await send({"type": "websocket.close", "code": 1008})
        return
    chosen = "chat.v2" if "chat.v2" in scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": chosen})
    if scope["path"] == "/bye":
        await send({"type": "websocket.send", "text": "bye"})
        await send({"type": "websocket.close", "code": 4321, "reason": "server says bye"})
    while (message := await receive())["type"] == "websocket.receive":
        data: str | bytes = message["bytes"] if message.get("bytes") is not None else message["text"]
        if scope["path"] == "/count":
            await send({"type": "websocket.send", "text": str(len(data))})
        else:
            await send({"type": "websocket.send", "text" if isinstance(data, str) else "bytes": data})


@pytest.fixture(params=["http", "https"])
def scheme(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def probe_page(loop: str, scheme: str, tls: TLSFiles, pages: Pages) -> Iterator[tuple[Page, str]]:
    """A page of the probe app, and the ws:// or wss:// base of its WebSocket URLs."""
    with serve(probe, loop=loop, **tls_settings(scheme, tls)) as server:
        page = pages.open()
        page.goto(f"{scheme}://127.0.0.1:{server.port}/")
        yield page, f"{'wss' if scheme == 'https' else 'ws'}://127.0.0.1:{server.port}"
        pages.close()


EVERY_EVENT = """async (base) => {
  const seen = [];
  const ws = new WebSocket(`${base}/echo`, ["chat.v1", "chat.v2"]);
  seen.push(["created", ws.readyState]);
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  seen.push(["open", ws.readyState, ws.protocol, ws.extensions]);
  const reply = (data) => {
    const next = new Promise((resolve) => { ws.onmessage = (event) => resolve(event.data); });
    ws.send(data);
    return next;
  };
  seen.push(["text", await reply("hello ☃")]);
  const blob = await reply(new Uint8Array([1, 2, 255]));
  seen.push(["blob", blob instanceof Blob, Array.from(new Uint8Array(await blob.arrayBuffer()))]);
  ws.binaryType = "arraybuffer";
  const buffer = await reply(new Uint8Array([0, 128]));
  seen.push(["arraybuffer", buffer instanceof ArrayBuffer, Array.from(new Uint8Array(buffer))]);
  const closed = new Promise((resolve) => { ws.onclose = resolve; });
  ws.close(1000, "done here");
  seen.push(["closing", ws.readyState]);
  const event = await closed;
  seen.push(["closed", ws.readyState, event.code, event.wasClean]);
  return seen;
}"""

UNTIL_CLOSED = """(url) => new Promise((resolve) => {
  const seen = [];
  const ws = new WebSocket(url);
  ws.onopen = () => seen.push(["open"]);
  ws.onmessage = (event) => seen.push(["message", event.data, ws.readyState]);
  ws.onerror = () => seen.push(["error", ws.readyState]);
  ws.onclose = (event) => resolve([...seen, ["close", event.code, event.reason, event.wasClean, ws.readyState]]);
})"""

MEBIBYTE_SENT = """async (url) => {
  const ws = new WebSocket(url);
  await new Promise((resolve) => { ws.onopen = resolve; });
  const data = new Uint8Array(1 << 20);
  for (let i = 0; i < data.length; i += 65536) crypto.getRandomValues(data.subarray(i, i + 65536));
  const answer = new Promise((resolve) => { ws.onmessage = (event) => resolve(event.data); });
  ws.send(data);
  const queued = ws.bufferedAmount;
  while (ws.bufferedAmount > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  const drained = ws.bufferedAmount;
  return [queued, drained, await answer];
}"""


def test_the_websocket_api(probe_page: tuple[Page, str]) -> None:
    page, base = probe_page
    seen = page.evaluate(EVERY_EVENT, base)
    assert seen[0] == ["created", 0]
    state, ready, protocol, extensions = seen[1]
    assert (state, ready, protocol) == ("open", 1, "chat.v2")
    assert extensions.startswith("permessage-deflate")
    assert seen[2:] == [
        ["text", "hello ☃"],
        ["blob", True, [1, 2, 255]],
        ["arraybuffer", True, [0, 128]],
        ["closing", 2],
        ["closed", 3, 1000, True],
    ]


def test_the_servers_close_code_and_reason(probe_page: tuple[Page, str]) -> None:
    page, base = probe_page
    assert page.evaluate(UNTIL_CLOSED, f"{base}/bye") == [
        ["open"], ["message", "bye", 1], ["close", 4321, "server says bye", True, 3]]


def test_a_refused_handshake_is_an_error(probe_page: tuple[Page, str]) -> None:
    page, base = probe_page
    assert page.evaluate(UNTIL_CLOSED, f"{base}/refuse") == [
        ["error", 3], ["close", 1006, "", False, 3]]


def test_buffered_amount_drains_after_a_mebibyte(probe_page: tuple[Page, str]) -> None:
    page, base = probe_page
    assert page.evaluate(MEBIBYTE_SENT, f"{base}/count") == [1 << 20, 0, str(1 << 20)]


# -- the chat example ---------------------------------------------------------------------


def join(page: Page, base: str, room: str, name: str) -> Page:
    page.goto(f"{base}/?room={room}&name={name}")
    expect(page.locator("#status")).to_have_attribute("data-state", "online")
    expect(page.locator("#status")).to_have_text(f"In #{room} as {name}")
    return page


def say(page: Page, text: str) -> None:
    page.locator("#composer input").fill(text)
    page.locator("#composer input").press("Enter")


def heard(page: Page, name: str, text: str) -> None:
    message = page.locator("#log .message").filter(has_text=text).last
    expect(message.locator(".who")).to_have_text(name)
    expect(message.locator(".text")).to_have_text(text)


def test_two_pages_chat(loop: str, scheme: str, tls: TLSFiles, pages: Pages) -> None:
    with serve(create_app(), loop=loop, lifespan="on", **tls_settings(scheme, tls)) as server:
        base = f"{scheme}://127.0.0.1:{server.port}"
        ann = join(pages.open(), base, "lobby", "Ann")
        bob = join(pages.open(), base, "lobby", "Bob")
        for page in (ann, bob):
            expect(page.locator("#people li")).to_have_text(["Ann", "Bob"])
        expect(ann.locator("#log .notice").last).to_have_text("Bob joined")

        say(ann, "Hi Bob! This page talks to asgisock over one WebSocket.")
        heard(bob, "Ann", "Hi Bob! This page talks to asgisock over one WebSocket.")
        bob.locator("#composer input").fill("Hello Ann")  # typing, not sent yet
        expect(ann.locator("#typing")).to_have_text("Bob is typing…")
        bob.locator("#composer input").press("Enter")
        heard(ann, "Bob", "Hello Ann")
        expect(ann.locator("#typing")).to_have_text("")
        say(ann, "Open another tab, or run two workers with REDIS_URL set.")
        heard(bob, "Ann", "Open another tab, or run two workers with REDIS_URL set.")
        cy = join(pages.open(), base, "lobby", "Cy")
        expect(ann.locator("#people li")).to_have_text(["Ann", "Bob", "Cy"])
        cy.locator("#composer input").fill("Trying it now")
        expect(ann.locator("#typing")).to_have_text("Cy is typing…")
        if scheme == "http":
            SCREENSHOT.parent.mkdir(exist_ok=True)
            ann.screenshot(path=str(SCREENSHOT))

        bob.locator("#leave").click()
        expect(ann.locator("#log .notice").last).to_have_text("Bob left")
        expect(ann.locator("#people li")).to_have_text(["Ann", "Cy"])
        pages.close()


@pytest.fixture
def launch() -> Iterator[Launcher]:
    launcher = Launcher(ROOT)
    yield launcher
    for cli in launcher.started:
        cli.stop()


def test_the_page_reconnects_after_a_restart(loop: str, launch: Launcher,
                                             pages: Pages) -> None:
    first = launch("examples.chat:app", "--port", "0", "--loop", loop)
    port = str(first.port)
    page = join(pages.open(), first.url, "lobby", "Ann")
    first.send_signal(signal.SIGTERM)
    assert first.wait() == 0
    status = page.locator("#status")
    expect(status).to_have_attribute("data-state", re.compile("retrying|connecting"))
    expect(page.locator("#log .notice.error").first).to_have_text(re.compile(
        r"^Disconnected \(1001: server shutting down\)\. Reconnecting in [0-9.]+ s \(attempt 1\)\.$"))

    second = launch("examples.chat:app", "--port", port, "--loop", loop)
    assert second.port == int(port)
    expect(status).to_have_attribute("data-state", "online")
    expect(page.locator("#log .notice").last).to_have_text("Reconnected")
    say(page, "still here")
    heard(page, "Ann", "still here")


def test_the_page_says_redis_is_away_and_recovers(loop: str, launch: Launcher, redis_server: RedisServer,
                                                   pages: Pages) -> None:
    worker = launch("examples.chat:app", "--port", "0", "--loop", loop,
                    env={"REDIS_URL": redis_server.url})
    page = join(pages.open(), worker.url, "lobby", "Ann")
    redis_server.kill()
    status = page.locator("#status")
    expect(status).to_have_text(re.compile(
        rf"^Disconnected \(1013: {re.escape(REDIS_DOWN)}\)\. Reconnecting in [0-9.]+ s…$"))
    expect(status).to_have_attribute("data-state", "retrying")

    redis_server.start()
    expect(status).to_have_attribute("data-state", "online")
    expect(page.locator("#people li")).to_have_text(["Ann"])
    say(page, "Redis is back")
    heard(page, "Ann", "Redis is back")
