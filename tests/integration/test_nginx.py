"""asgisock behind Debian's nginx, configured exactly as ``docs/howto/proxy.md`` says.

The nginx block is read from the page, and only its addresses and certificate paths are
replaced, so the documented configuration is the tested one. nginx listens on loopback over
HTTP and HTTPS (a trustme certificate) in front of an ``asgisock`` process serving
``tests/integration/nginx_app.py`` with ``--forwarded-allow-ips`` set to nginx's address.
The clients connect from another loopback address, ``127.0.0.5``, so the client the app is
told about is not nginx's own address. nginx must log no error in any test.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.integration.services import Nginx
from tests.processes import Cli, Launcher
from tests.support import timeout

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "howto" / "proxy.md"
CLIENT = "127.0.0.5"
"""Where the test's clients connect from: Linux routes all of 127.0.0.0/8 to the loopback."""
NGINX = "127.0.0.1"


def documented_site(doc: Path = DOC) -> str:
    """The ``nginx`` block of the page's "nginx" section."""
    section = doc.read_text().split("\n## nginx\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```nginx\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, f"one nginx block in the nginx section of {doc}"
    block: str = blocks[0]
    return block


def localize(site: str, replacements: dict[str, str]) -> str:
    """``site`` with each of the documented values replaced, each found exactly once."""
    for documented, local in replacements.items():
        assert site.count(documented) == 1, f"{documented!r} is no longer in the documented block"
        site = site.replace(documented, local)
    return site


@dataclass
class Proxied:
    nginx: Nginx
    asgisock: Cli
    ca: trustme.CA

    @property
    def http(self) -> str:
        return f"http://{NGINX}:{self.nginx.http_port}"

    @property
    def https(self) -> str:
        return f"https://{NGINX}:{self.nginx.https_port}"

    def base(self, scheme: str) -> str:
        return self.https if scheme == "https" else self.http

    def client(self, **kwargs: Any) -> httpx.Client:
        """An HTTP client connecting from ``CLIENT`` and trusting the test CA."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        transport = httpx.HTTPTransport(local_address=CLIENT, verify=context)
        return httpx.Client(transport=transport, timeout=timeout(10), **kwargs)

    def websocket(self, scheme: str, path: str = "/ws", **kwargs: Any) -> ClientConnection:
        context = None
        if scheme == "https":
            context = ssl.create_default_context()
            self.ca.configure_trust(context)
        url = self.base(scheme).replace("http", "ws", 1) + path
        ws: ClientConnection = connect(
            url, ssl=context, source_address=(CLIENT, 0), proxy=None, open_timeout=timeout(5),
            close_timeout=timeout(5), max_size=None, **kwargs)
        return ws


@pytest.fixture
def proxied(tmp_path: Path, loop: str) -> Iterator[Proxied]:
    launch = Launcher(ROOT)
    cert = (ca := trustme.CA()).issue_cert(NGINX, "localhost")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    try:
        app = launch("tests.integration.nginx_app:app", "--port", "0", "--loop", loop,
                     "--forwarded-allow-ips", NGINX)
        site = localize(documented_site(), {
            "listen 80;": f"listen {NGINX}:{{http_port}};",
            "listen 443 ssl;": f"listen {NGINX}:{{https_port}} ssl;",
            "server 127.0.0.1:8000;": f"server 127.0.0.1:{app.port};",
            "/etc/ssl/certs/example.com.pem": str(tmp_path / "cert.pem"),
            "/etc/ssl/private/example.com.key": str(tmp_path / "key.pem"),
        })
        nginx = Nginx(tmp_path, site)
        nginx.start()
        try:
            yield Proxied(nginx, app, ca)
            assert nginx.errors() == []
        finally:
            nginx.stop()
    finally:
        for cli in launch.started:
            cli.stop()


def shown(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    info: dict[str, Any] = response.json()
    return info


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_http_requests_through_nginx(proxied: Proxied, scheme: str) -> None:
    with proxied.client() as client:
        for number in range(20):  # nginx keeps its connections to asgisock and reuses them
            info = shown(client.get(f"{proxied.base(scheme)}/items/{number}?q=caf%C3%A9"))
            assert (info["path"], info["query"]) == (f"/items/{number}", "q=caf%C3%A9")
        posted = client.post(f"{proxied.base(scheme)}/form", content=b"a=1")
        assert shown(posted)["path"] == "/form"
        assert posted.headers["server"].startswith("nginx")
    headers = info["headers"]
    assert headers["host"] == NGINX
    assert "connection" not in headers  # so the connection to asgisock is kept alive
    assert (headers["x-forwarded-for"], headers["x-forwarded-proto"]) == (CLIENT, scheme)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_app_sees_the_client_and_scheme_nginx_saw(proxied: Proxied, scheme: str) -> None:
    with proxied.client() as client:
        info = shown(client.get(f"{proxied.base(scheme)}/"))
        assert (info["client"], info["scheme"]) == ([CLIENT, 0], scheme)
        # What the client wrote itself is left of what nginx appended, and is not believed.
        spoofed = shown(client.get(f"{proxied.base(scheme)}/",
                                   headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}))
        assert spoofed["headers"]["x-forwarded-for"] == f"6.6.6.6, {CLIENT}"
        assert (spoofed["client"], spoofed["scheme"]) == ([CLIENT, 0], scheme)
        # Straight to asgisock, from an address that is not nginx's, the fields are not read.
        direct = shown(client.get(f"{proxied.asgisock.url}/", headers={"X-Forwarded-For": "6.6.6.6"}))
        assert direct["client"][0] == CLIENT and direct["client"][1] > 0
        assert direct["scheme"] == "http"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_websocket_through_nginx(proxied: Proxied, scheme: str) -> None:
    with proxied.websocket(scheme, subprotocols=["chat.v2", "chat.v1"]) as ws:
        assert ws.subprotocol == "chat.v2"
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        info = json.loads(ws.recv(timeout(5)))
        assert (info["client"], info["scheme"]) == ([CLIENT, 0], "wss" if scheme == "https" else "ws")
        ws.send("héllo ☃")
        assert ws.recv(timeout(5)) == "héllo ☃"
        ws.send(b"\x00\xff" * 10)
        assert ws.recv(timeout(5)) == b"\x00\xff" * 10
        big = os.urandom(2**20)  # many frames' worth of TCP segments through the tunnel
        ws.send(big)
        assert ws.recv(timeout(10)) == big
        ws.send("close")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout(5))
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "asked to close")


def test_a_client_closing_is_seen_by_the_app(proxied: Proxied) -> None:
    with proxied.websocket("http") as ws:
        ws.recv(timeout(5))
        ws.close(4002, "bye")
    assert proxied.asgisock.stdout.wait_for("client left: ") == "client left: 4002 bye"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_large_upload_through_nginx(proxied: Proxied, framing: str) -> None:
    body = os.urandom(20 * 2**20 + 3)
    pieces = (body[i:i + 2**20] for i in range(0, len(body), 2**20))
    content = body if framing == "content-length" else pieces  # a generator goes chunked
    with proxied.client() as client:
        response = client.post(f"{proxied.https}/upload", content=content)
    info = shown(response)
    assert (info["size"], info["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    assert info["messages"] > 1  # it reached the app as it came, not in one piece
    assert info["framing"] == {"content-length": str(len(body))}  # nginx read it all first


def read_until(sock: socket.socket, data: bytes, text: bytes) -> bytes:
    while text not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before {text!r} came: {data!r}"
        data += chunk
    return data


def test_a_streamed_response_is_passed_on_as_it_comes(proxied: Proxied) -> None:
    """Each chunk is made only after the test has read the one before through nginx."""
    with socket.create_connection((NGINX, proxied.nginx.http_port), timeout=timeout(10),
                                  source_address=(CLIENT, 0)) as sock, proxied.client() as client:
        sock.sendall(b"GET /stream?chunks=4 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        received = read_until(sock, b"", b"chunk 0\n")
        for index in range(1, 4):
            assert client.post(f"{proxied.http}/next").status_code == 200
            received = read_until(sock, received, b"chunk %d\n" % index)
        received = read_until(sock, received, b"\r\n0\r\n\r\n")
    head, body = received.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body.endswith(b"0\r\n\r\n")
