"""Behind a proxy, over real sockets: forwarding fields and the PROXY protocol reach the scope
only from trusted peers; anyone else's are passed to the app untouched and ignored."""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from websockets.sync.client import connect

from tests.apps import echo_scope
from tests.support import LogWatch, RunningServer, serve, timeout
from tests.transport.test_tls import Certs, ws_scope_echo

# The default trust list is 127.0.0.1, the address every test client connects from.
UNTRUSTED: dict[str, Any] = {"forwarded_allow_ips": "10.9.9.9"}


def ask(server: RunningServer, *fields: tuple[str, str], path: str = "/") -> dict[str, Any]:
    """The scope of one request sent with these header fields, over a raw socket."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in fields)
    with server.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n{lines}\r\n".encode("latin-1"))
        return scope_of(read_all(sock))


def scope_of(response: bytes) -> dict[str, Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), response[:200]
    scope: dict[str, Any] = json.loads(body)
    return scope


def read_all(sock: socket.socket) -> bytes:
    sock.settimeout(timeout(5))
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def host_header(scope: dict[str, Any]) -> list[str]:
    return [value for name, value in scope["headers"] if name == "host"]


# -- forwarding fields -----------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "client", "scheme"), [
    ([("X-Forwarded-For", "203.0.113.7")], ["203.0.113.7", 0], "http"),
    ([("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")], ["203.0.113.7", 0], "https"),
    ([("X-Forwarded-For", "198.51.100.1, 203.0.113.7, 127.0.0.1")], ["203.0.113.7", 0], "http"),
    ([("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", "203.0.113.7")], ["203.0.113.7", 0], "http"),
    ([("X-Forwarded-For", "[2001:db8::5]:4711")], ["2001:db8::5", 4711], "http"),
    ([("X-Forwarded-For", "2001:db8::5")], ["2001:db8::5", 0], "http"),
    ([("X-Forwarded-Proto", "https")], None, "https"),
    ([("Forwarded", 'for=192.0.2.60;proto=https;by=203.0.113.43')], ["192.0.2.60", 0], "https"),
    ([("Forwarded", 'for="[2001:db8:cafe::17]:4711"')], ["2001:db8:cafe::17", 4711], "http"),
    ([("Forwarded", "for=192.0.2.43, for=198.51.100.17")], ["198.51.100.17", 0], "http"),
    ([("Forwarded", "for=192.0.2.43"), ("Forwarded", "for=198.51.100.17;proto=https")],
     ["198.51.100.17", 0], "https"),
    ([("Forwarded", "for=unknown;proto=https")], "unknown", "https"),
    ([("Forwarded", "for=_hidden;proto=https")], "unknown", "https"),
    # injection attempts and junk: ignored whole, the peer stays the client
    ([("Forwarded", 'for="1.2.3.4, evil"')], "peer", "http"),
    ([("X-Forwarded-For", "1.2.3.4, evil")], "peer", "http"),
    ([("X-Forwarded-For", "999.1.1.1")], "peer", "http"),
    ([("X-Forwarded-For", ",".join(["10.0.0.1"] * 2000))], ["10.0.0.1", 0], "http"),
    ([("X-Forwarded-Proto", "gopher")], "peer", "http"),
])
def test_forwarding_fields_from_a_trusted_peer(loop: str, fields: list[tuple[str, str]], client: Any,
                                               scheme: str) -> None:
    with serve(echo_scope, loop=loop) as server:
        scope = ask(server, *fields)
        direct = ask(server)
    if client == "peer":
        assert scope["client"][0] == "127.0.0.1"
    elif client == "unknown":
        assert scope["client"] is None  # the proxy said it does not know the client
    elif client is None:
        assert scope["client"] == direct["client"][:1] + scope["client"][1:]
    else:
        assert scope["client"] == client
    assert scope["scheme"] == scheme
    sent = [[name.lower(), value] for name, value in fields]
    assert [h for h in scope["headers"] if h in sent] == sent  # the app still sees the fields as sent


def test_x_forwarded_wins_over_forwarded(loop: str) -> None:
    with serve(echo_scope, loop=loop) as server:
        scope = ask(server, ("Forwarded", "for=192.0.2.1;proto=https"), ("X-Forwarded-For", "198.51.100.2"))
    assert scope["client"] == ["198.51.100.2", 0]
    assert scope["scheme"] == "http"


@pytest.mark.parametrize("fields", [
    [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.test"),
     ("X-Forwarded-Port", "8443")],
    [("Forwarded", "for=203.0.113.7;proto=https;host=evil.test")],
])
@pytest.mark.parametrize("settings", [UNTRUSTED, {"proxy_headers": False}], ids=["untrusted", "off"])
def test_an_untrusted_peer_or_proxy_headers_off_changes_nothing(loop: str, fields: list[tuple[str, str]],
                                                                settings: dict[str, Any]) -> None:
    with serve(echo_scope, loop=loop, forwarded_host=True, **settings) as server:
        scope = ask(server, *fields)
        direct = ask(server)
    assert scope["client"][0] == "127.0.0.1"
    assert scope["scheme"] == "http"
    assert scope["server"] == direct["server"]
    assert host_header(scope) == ["app.test"]
    sent = [[name.lower(), value] for name, value in fields]
    assert [h for h in scope["headers"] if h in sent] == sent


def test_a_chain_through_trusted_networks(loop: str) -> None:
    with serve(echo_scope, loop=loop, forwarded_allow_ips="127.0.0.1, 10.0.0.0/8") as server:
        # the client wrote the first two; the two proxies (trusted) appended theirs
        scope = ask(server, ("X-Forwarded-For", "6.6.6.6, 10.1.1.1, 198.51.100.9, 10.2.2.2"))
    assert scope["client"] == ["198.51.100.9", 0]


def test_forwarded_host_and_port(loop: str) -> None:
    fields = (("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Host", "www.example.org"),
              ("X-Forwarded-Port", "8443"))
    with serve(echo_scope, loop=loop, forwarded_host=True) as server:
        scope = ask(server, *fields)
        bad = ask(server, ("X-Forwarded-Host", "bad host"))
    with serve(echo_scope, loop=loop) as server:
        off = ask(server, *fields)
    assert host_header(scope) == ["www.example.org"]
    assert scope["server"][1] == 8443
    assert host_header(bad) == ["app.test"]
    assert host_header(off) == ["app.test"]  # --forwarded-host is opt-in
    assert off["server"][1] == 8443  # the port is not: it only describes the client's URL


def test_wildcard_trusts_every_peer(loop: str) -> None:
    with serve(echo_scope, loop=loop, forwarded_allow_ips="*") as server:
        assert ask(server, ("X-Forwarded-For", "203.0.113.7"))["client"] == ["203.0.113.7", 0]


def test_ipv6_peer(loop: str) -> None:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    for trust, expected in (("::1", "203.0.113.7"), ("127.0.0.1", "::1")):
        with serve(echo_scope, loop=loop, host="::1", forwarded_allow_ips=trust) as server:
            scope = ask(server, ("X-Forwarded-For", "203.0.113.7"))
        assert scope["client"][0] == expected


@pytest.mark.parametrize(("trust", "honoured"), [("127.0.0.1", True), ("unix:", True), ("10.0.0.1", False)])
def test_unix_socket_peers(loop: str, tmp_path: Path, trust: str, honoured: bool) -> None:
    path = str(tmp_path / "s.sock")
    with serve(echo_scope, loop=loop, uds=path, forwarded_allow_ips=trust) as server, \
            socket.socket(socket.AF_UNIX) as sock:
        del server
        sock.connect(path)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Forwarded-For: 203.0.113.7\r\n"
                     b"X-Forwarded-Proto: https\r\n\r\n")
        scope = scope_of(read_all(sock))
    assert scope["client"] == (["203.0.113.7", 0] if honoured else None)
    assert scope["scheme"] == ("https" if honoured else "http")
    assert scope["server"] == [path, None]


@pytest.mark.parametrize(("proto", "scheme"), [("https", "wss"), ("wss", "wss"), ("http", "ws"), (None, "ws")])
def test_websocket_scope_behind_a_proxy(loop: str, proto: str | None, scheme: str) -> None:
    headers = {"X-Forwarded-For": "203.0.113.7"} | ({"X-Forwarded-Proto": proto} if proto else {})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps([scope["client"], scope["scheme"]])})
        await send({"type": "websocket.close"})

    with serve(app, loop=loop) as server, \
            connect(server.ws_url, additional_headers=headers, open_timeout=timeout(5)) as ws:
        client, seen = json.loads(ws.recv(timeout(5)))
    assert client == ["203.0.113.7", 0]
    assert seen == scheme


# -- the PROXY protocol ----------------------------------------------------------------------


def v2(source: str, source_port: int, destination: str, destination_port: int, *, command: int = 1) -> bytes:
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    family = 0x11 if src.version == 4 else 0x21
    block = src.packed + dst.packed + source_port.to_bytes(2, "big") + destination_port.to_bytes(2, "big")
    block += b"\x04\x00\x02ok"  # a TLV (PP2_TYPE_NOOP), which is skipped
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20 | command, family]) + len(block).to_bytes(2, "big")
            + block)


REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize(("header", "client", "server"), [
    (b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\n", ["203.0.113.7", 40000], ["192.0.2.1", 443]),
    (b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 443\r\n", ["2001:db8::7", 40000], ["2001:db8::1", 443]),
    (v2("203.0.113.7", 40000, "192.0.2.1", 443), ["203.0.113.7", 40000], ["192.0.2.1", 443]),
    (v2("2001:db8::7", 40000, "2001:db8::1", 443), ["2001:db8::7", 40000], ["2001:db8::1", 443]),
    (b"PROXY UNKNOWN\r\n", "socket", "socket"),
    (v2("203.0.113.7", 1, "192.0.2.1", 2, command=0), "socket", "socket"),  # LOCAL: the proxy's health check
])
@pytest.mark.parametrize("split", [False, True])
def test_proxy_protocol_header(loop: str, header: bytes, client: Any, server: Any, split: bool) -> None:
    with serve(echo_scope, loop=loop, proxy_protocol=True) as running, running.connect() as sock:
        if split:  # in pieces, and the request in the same write as the header's end
            sock.sendall(header[:7])
            sock.sendall(header[7:] + REQUEST)
        else:
            sock.sendall(header)
            sock.sendall(REQUEST)
        scope = scope_of(read_all(sock))
        local = sock.getsockname()
    assert scope["client"] == ([local[0], local[1]] if client == "socket" else client)
    if server != "socket":
        assert scope["server"] == server


def test_proxy_protocol_then_forwarding_fields_trust_the_proxied_client(loop: str) -> None:
    header = b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\n"
    with serve(echo_scope, loop=loop, proxy_protocol=True) as server, server.connect() as sock:
        # 203.0.113.7 is not a trusted proxy: its own X-Forwarded-For is not believed
        sock.sendall(header + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n")
        scope = scope_of(read_all(sock))
    assert scope["client"] == ["203.0.113.7", 40000]


@pytest.mark.parametrize("data", [
    REQUEST,  # no header at all
    b"PROXY TCP4 203.0.113.7 192.0.2.1 40000\r\n" + REQUEST,
    b"PROXY TCP4 nonsense 192.0.2.1 40000 443\r\n" + REQUEST,
    b"PROXY TCP4 " + b"1" * 200 + b"\r\n",
    b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + bytes(12),  # version 3
])
def test_a_bad_or_missing_proxy_header_closes(loop: str, data: bytes, server_log: LogWatch) -> None:
    called: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        called.append(scope["type"])
        await echo_scope(scope, receive, send)

    with serve(app, loop=loop, proxy_protocol=True) as server:
        with server.connect() as sock:
            sock.sendall(data)
            try:
                answer = read_all(sock)
            except ConnectionResetError:
                answer = b""
        assert answer == b""
        with server.connect() as sock:  # still serving
            sock.sendall(b"PROXY UNKNOWN\r\n" + REQUEST)
            assert read_all(sock).startswith(b"HTTP/1.1 200 ")
    assert called == ["http"]
    assert sum("PROXY protocol" in record for record in server_log.records) == 1


def test_proxy_protocol_from_an_untrusted_peer_closes(loop: str) -> None:
    with serve(echo_scope, loop=loop, proxy_protocol=True, **UNTRUSTED) as server, server.connect() as sock:
        sock.sendall(b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\n" + REQUEST)
        try:
            answer = read_all(sock)
        except ConnectionResetError:
            answer = b""
    assert answer == b""


def test_proxy_protocol_before_tls(loop: str, tmp_path: Path) -> None:
    certs = Certs(tmp_path)
    header = v2("203.0.113.7", 40000, "192.0.2.1", 443)
    with serve(ws_scope_echo, loop=loop, proxy_protocol=True, **certs.settings()) as server, \
            server.connect() as raw:
        raw.sendall(header)
        with certs.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(REQUEST)
            response = b""
            while chunk := tls.recv(65536):
                response += chunk
    scope = scope_of(response)
    assert scope["client"] == ["203.0.113.7", 40000]
    assert scope["scheme"] == "https"
    assert scope["extensions"]["tls"]["tls_version"] == 0x0304


def test_proxy_protocol_header_timeout(loop: str) -> None:
    with serve(echo_scope, loop=loop, proxy_protocol=True, timeout_keep_alive=0.3) as server, \
            server.connect() as sock:
        sock.sendall(b"PROXY TCP4 203.0.")  # and nothing more
        assert read_all(sock) == b""


def test_tls_clients_distrusting_the_server_behind_proxy_protocol(loop: str, tmp_path: Path) -> None:
    certs = Certs(tmp_path)
    with serve(echo_scope, loop=loop, proxy_protocol=True, **certs.settings()) as server, \
            server.connect() as raw:
        raw.sendall(b"PROXY UNKNOWN\r\n")
        stranger = ssl.create_default_context()
        trustme.CA().configure_trust(stranger)
        with pytest.raises(ssl.SSLCertVerificationError):
            stranger.wrap_socket(raw, server_hostname="127.0.0.1")
