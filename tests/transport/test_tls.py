"""HTTPS and WSS over real sockets, with certificates from a throwaway CA (trustme).

The ``tls`` extension is checked against what the client itself saw of the connection, and the
client certificate's name against cryptography's own RFC 4514 rendering.

WSS tests drive the ``websockets`` asyncio client (:class:`WSSClient`). Its sync client reads
and writes one TLS socket from two threads at once, which OpenSSL does not support: about one
connection in 700 then loses its opening request (measured against asgisock and against
asyncio's own TLS server alike; never with the asyncio client or a plain ``ssl`` socket).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography import x509
from websockets.asyncio.client import ClientConnection, connect

from asgisock.types import Receive, Send
from tests.apps import echo_scope
from tests.support import LogWatch, RunningServer, serve, timeout


class Certs:
    """A CA, a server certificate for 127.0.0.1 written to files, and a client context."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca = trustme.CA()
        self.certfile = directory / "server.pem"
        self.keyfile = directory / "server.key"
        self.ca_file = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.issue()

    def issue(self, ca: trustme.CA | None = None) -> str:
        """Write a new server certificate (replacing the files whole); its PEM."""
        cert = (ca or self.ca).issue_cert("127.0.0.1", "localhost")
        _replace(self.keyfile, cert.private_key_pem.bytes())
        _replace(self.certfile, b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        return cert.cert_chain_pems[0].bytes().decode()

    def client_context(self, *, client_cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if client_cert is not None:
            client_cert.configure_cert(context)
        return context

    def settings(self, **more: Any) -> dict[str, Any]:
        return {"ssl_certfile": str(self.certfile), "ssl_keyfile": str(self.keyfile), **more}


def _replace(path: Path, data: bytes) -> None:
    """Write a file as deployment tools do: a new file renamed over the old one."""
    temporary = path.with_suffix(".new")
    temporary.write_bytes(data)
    os.replace(temporary, path)


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs(tmp_path)


class WSSClient:
    """A ``websockets`` asyncio client used from a test's own thread, one call at a time."""

    def __init__(self, url: str, **options: Any) -> None:
        self.runner = asyncio.Runner()
        options.setdefault("open_timeout", timeout(5))
        async def opening() -> ClientConnection:
            return await connect(url, **options)

        self.ws = self.runner.run(opening())

    @property
    def response_headers(self) -> Any:
        assert self.ws.response is not None
        return self.ws.response.headers

    def send(self, message: str | bytes) -> None:
        self.runner.run(self.ws.send(message))

    def recv(self, seconds: float = 5) -> str | bytes:
        return self.runner.run(asyncio.wait_for(self.ws.recv(), timeout(seconds)))

    def __enter__(self) -> WSSClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.runner.run(self.ws.close())
        finally:
            self.runner.close()


def https_url(server: RunningServer, path: str = "/") -> str:
    return f"https://{server.host}:{server.port}{path}"


def wss_url(server: RunningServer) -> str:
    return f"wss://{server.host}:{server.port}/ws"


def peer_certificate(server: RunningServer, context: ssl.SSLContext) -> str:
    """The PEM of the certificate a new connection is served with."""
    with server.connect() as raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return ssl.DER_cert_to_PEM_cert(der)


def same_pem(a: str, b: str) -> bool:
    return ssl.PEM_cert_to_DER_cert(a) == ssl.PEM_cert_to_DER_cert(b)


async def ws_scope_echo(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """WebSocket: accept, send the scope as JSON, then echo text messages."""
    if scope["type"] != "websocket":
        await echo_scope(scope, receive, send)
        return
    await receive()
    await send({"type": "websocket.accept"})
    shown = {"scheme": scope["scheme"], "tls": scope["extensions"].get("tls"),
             "extensions": sorted(scope["extensions"])}
    await send({"type": "websocket.send", "text": json.dumps(shown)})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text") or ""})


# -- HTTPS ---------------------------------------------------------------------------------


def test_https_scope_and_tls_extension(loop: str, certs: Certs) -> None:
    context = certs.client_context()
    with serve(echo_scope, loop=loop, **certs.settings()) as server, \
            httpx.Client(verify=context) as client:
        first = client.get(https_url(server, "/a"))
        second = client.get(https_url(server, "/b"))  # the same connection, kept alive
    assert first.status_code == second.status_code == 200
    scope = first.json()
    assert scope["scheme"] == "https"
    tls = scope["extensions"]["tls"]
    assert same_pem(tls["server_cert"], certs.certfile.read_text())
    assert tls["client_cert_chain"] == []
    assert tls["client_cert_name"] is None
    assert tls["client_cert_error"] is None
    assert tls["tls_version"] == 0x0304  # both ends offer TLS 1.3
    assert isinstance(tls["cipher_suite"], int) and tls["cipher_suite"] >> 8 == 0x13  # a TLS 1.3 suite
    assert second.json()["extensions"]["tls"] == tls


def test_tls_1_2_and_the_cipher_suite_number(loop: str, certs: Certs) -> None:
    context = certs.client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256")
    with serve(echo_scope, loop=loop, **certs.settings()) as server, httpx.Client(verify=context) as client:
        tls = client.get(https_url(server)).json()["extensions"]["tls"]
    assert tls["tls_version"] == 0x0303
    # IANA: TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 is 0xC02F, its ECDSA twin 0xC02B
    assert tls["cipher_suite"] in (0xC02F, 0xC02B)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_is_refused(loop: str, certs: Certs, server_log: LogWatch) -> None:
    context = certs.client_context()
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # the client would speak TLS 1.1: the server must not
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_1
    with serve(echo_scope, loop=loop, **certs.settings()) as server:
        with pytest.raises(ssl.SSLError), server.connect() as raw:
            context.wrap_socket(raw, server_hostname="127.0.0.1")
        server_log.wait_for("TLS handshake failed")
        assert peer_certificate(server, certs.client_context())  # still serving


def test_alpn_offers_http_1_1(loop: str, certs: Certs) -> None:
    context = certs.client_context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    with serve(echo_scope, loop=loop, **certs.settings()) as server, server.connect() as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"


# -- WSS -----------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["deflate", None])
def test_wss_echo_with_and_without_compression(loop: str, certs: Certs, compression: str | None) -> None:
    with serve(ws_scope_echo, loop=loop, **certs.settings()) as server, \
            WSSClient(wss_url(server), ssl=certs.client_context(), compression=compression) as ws:
        shown = json.loads(ws.recv())
        for text in ("hello", "x" * 70_000, "é" * 10):
            ws.send(text)
            assert ws.recv() == text
        negotiated = ws.response_headers.get("Sec-WebSocket-Extensions")
    assert shown["scheme"] == "wss"
    assert shown["tls"]["tls_version"] == 0x0304
    assert same_pem(shown["tls"]["server_cert"], certs.certfile.read_text())
    assert "tls" in shown["extensions"] and "websocket.http.response" in shown["extensions"]
    assert (negotiated is not None) == (compression is not None)


# -- client certificates ----------------------------------------------------------------------


def test_required_client_certificate(loop: str, certs: Certs) -> None:
    client_cert = certs.ca.issue_cert("ada@example.org", common_name="Ada Lovelace, \"Countess\" +1",
                                      organization_name="Analytical Engines", organization_unit_name="R&D")
    called: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        called.append(scope["type"])
        await ws_scope_echo(scope, receive, send)

    with serve(app, loop=loop, **certs.settings(ssl_ca_certs=str(certs.ca_file), ssl_cert_reqs=2)) as server:
        with httpx.Client(verify=certs.client_context(client_cert=client_cert)) as client:
            tls = client.get(https_url(server)).json()["extensions"]["tls"]
        with WSSClient(wss_url(server), ssl=certs.client_context(client_cert=client_cert)) as ws:
            ws_tls = json.loads(ws.recv())["tls"]
        before = len(called)
        with pytest.raises((ssl.SSLError, httpx.TransportError)), \
                httpx.Client(verify=certs.client_context()) as client:
            client.get(https_url(server))  # no certificate: the handshake fails (TLS 1.3: on the first read)
        assert len(called) == before  # never reached the app
    leaf = x509.load_pem_x509_certificate(client_cert.cert_chain_pems[0].bytes())
    assert tls["client_cert_name"] == leaf.subject.rfc4514_string()
    assert "CN=Ada Lovelace\\, \\\"Countess\\\" \\+1" in tls["client_cert_name"]
    assert same_pem(tls["client_cert_chain"][0], client_cert.cert_chain_pems[0].bytes().decode())
    assert tls["client_cert_error"] is None
    assert ws_tls == tls


def test_optional_client_certificate(loop: str, certs: Certs) -> None:
    client_cert = certs.ca.issue_cert("bob@example.org")
    settings = certs.settings(ssl_ca_certs=str(certs.ca_file), ssl_cert_reqs=1)
    with serve(echo_scope, loop=loop, **settings) as server:
        with httpx.Client(verify=certs.client_context()) as client:
            without = client.get(https_url(server)).json()["extensions"]["tls"]
        with httpx.Client(verify=certs.client_context(client_cert=client_cert)) as client:
            with_cert = client.get(https_url(server)).json()["extensions"]["tls"]
        stranger = trustme.CA().issue_cert("eve@example.org")
        with pytest.raises((ssl.SSLError, httpx.TransportError)), \
                httpx.Client(verify=certs.client_context(client_cert=stranger)) as client:
            client.get(https_url(server))  # a certificate that does not verify is refused, optional or not
    assert without["client_cert_chain"] == [] and without["client_cert_name"] is None
    leaf = x509.load_pem_x509_certificate(client_cert.cert_chain_pems[0].bytes())
    assert with_cert["client_cert_name"] == leaf.subject.rfc4514_string()


# -- certificate reload --------------------------------------------------------------------


def test_certificate_reload_keeps_open_websockets(loop: str, certs: Certs, server_log: LogWatch) -> None:
    old = certs.certfile.read_text()
    with serve(ws_scope_echo, loop=loop, **certs.settings()) as server:
        assert same_pem(peer_certificate(server, certs.client_context()), old)
        with WSSClient(wss_url(server), ssl=certs.client_context()) as ws:
            ws.recv()
            new = certs.issue()
            server_log.wait_for("Loaded a new TLS certificate")
            assert same_pem(peer_certificate(server, certs.client_context()), new)
            ws.send("still here")  # the open connection carries on with the old certificate
            assert ws.recv() == "still here"


def test_a_broken_new_certificate_keeps_the_old_one(loop: str, certs: Certs, server_log: LogWatch) -> None:
    old = certs.certfile.read_text()
    with serve(echo_scope, loop=loop, **certs.settings()) as server:
        other = trustme.CA().issue_cert("127.0.0.1")
        _replace(certs.certfile, other.cert_chain_pems[0].bytes())  # does not match the key
        message = server_log.wait_for("Keeping the current TLS certificate")
        assert str(certs.certfile) in message
        assert same_pem(peer_certificate(server, certs.client_context()), old)
        _replace(certs.certfile, b"not a certificate")
        server_log.records.clear()
        server_log.wait_for("Keeping the current TLS certificate")
        assert same_pem(peer_certificate(server, certs.client_context()), old)


# -- bad clients ---------------------------------------------------------------------------


def test_plain_http_to_the_tls_port_gets_a_400(loop: str, certs: Certs, server_log: LogWatch) -> None:
    called: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        called.append(scope["type"])
        await echo_scope(scope, receive, send)

    with serve(app, loop=loop, **certs.settings()) as server:
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = _read_all(sock)
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert b"https://" in answer
        server_log.wait_for("plain HTTP sent to the TLS port")
        with server.connect() as sock:
            sock.sendall(b"\x00\x01garbage")
            assert _read_all(sock) == b""  # not HTTP either: just closed
        assert same_pem(peer_certificate(server, certs.client_context()), certs.certfile.read_text())
    assert called == []
    assert sum("plain HTTP sent to the TLS port" in r for r in server_log.records) == 1


def test_a_handshake_never_finished_is_closed_at_the_head_deadline(loop: str, certs: Certs,
                                                                    server_log: LogWatch) -> None:
    with serve(echo_scope, loop=loop, timeout_keep_alive=0.3, **certs.settings()) as server:
        with server.connect() as silent, server.connect() as partial:
            partial.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, then nothing
            assert _read_all(silent) == b""
            assert _read_all(partial) == b""
        server_log.wait_for("not ready within")
        assert same_pem(peer_certificate(server, certs.client_context()), certs.certfile.read_text())


def test_a_client_that_distrusts_the_certificate_never_reaches_the_app(loop: str, certs: Certs,
                                                                         server_log: LogWatch) -> None:
    called: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        called.append(scope["type"])
        await echo_scope(scope, receive, send)

    with serve(app, loop=loop, **certs.settings()) as server:
        stranger = ssl.create_default_context()
        trustme.CA().configure_trust(stranger)
        with pytest.raises(ssl.SSLCertVerificationError), server.connect() as raw:
            stranger.wrap_socket(raw, server_hostname="127.0.0.1")
        server_log.wait_for("TLS handshake failed")
        with httpx.Client(verify=certs.client_context()) as client:
            assert client.get(https_url(server)).status_code == 200
    assert called == ["http"]


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(timeout(5))
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_client_that_never_answers_close_notify_does_not_hold_up_shutdown(loop: str, certs: Certs) -> None:
    """Leaving serve() shuts the server down, and fails unless that ends within its deadline."""
    tls: ssl.SSLSocket | None = None
    try:
        with serve(echo_scope, loop=loop, **certs.settings()) as server:
            tls = certs.client_context().wrap_socket(server.connect(), server_hostname="127.0.0.1")
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert tls.recv(65536).startswith(b"HTTP/1.1 200 ")
            # then kept open and never read again, as a browser keeps an idle connection
    finally:
        if tls is not None:
            tls.close()
