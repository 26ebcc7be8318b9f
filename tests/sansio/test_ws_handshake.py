"""Tests of the WebSocket opening handshake, server side (RFC 6455 §4.2)."""

from __future__ import annotations

import pytest

from asgisock.http11.writer import DefaultHeaders, InvalidResponse
from asgisock.ws.handshake import (
    ExtensionOffer,
    Handshake,
    HandshakeError,
    accept_key,
    accept_response,
    is_upgrade_request,
    parse_extensions,
    reject_response,
    response_headers,
    validate_handshake,
)

Headers = list[tuple[bytes, bytes]]

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def request_headers(*extra: tuple[bytes, bytes], drop: tuple[bytes, ...] = ()) -> Headers:
    """The RFC 6455 §1.2 example request, with headers added or removed."""
    base = [
        (b"host", b"server.example.com"),
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-key", KEY),
        (b"origin", b"http://example.com"),
        (b"sec-websocket-version", b"13"),
    ]
    return [(name, value) for name, value in base if name not in drop] + list(extra)


def handshake_error(
    headers: Headers, method: bytes = b"GET", http_version: str = "1.1"
) -> HandshakeError:
    with pytest.raises(HandshakeError) as info:
        validate_handshake(method, http_version, headers)
    return info.value


def test_accept_key_rfc_example() -> None:
    # RFC 6455 §1.3.
    assert accept_key(KEY) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


# -- is_upgrade_request --------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [(b"upgrade", b"websocket"), (b"connection", b"Upgrade")],
        [(b"upgrade", b"WebSocket"), (b"connection", b"keep-alive, Upgrade")],
        [(b"upgrade", b"h2c, websocket"), (b"connection", b"upgrade,keep-alive")],
        [(b"connection", b"keep-alive"), (b"connection", b" UPGRADE "), (b"upgrade", b"websocket")],
    ],
)
def test_is_upgrade_request(headers: Headers) -> None:
    assert is_upgrade_request(headers)


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"upgrade", b"websocket")],
        [(b"connection", b"Upgrade")],
        [(b"upgrade", b"h2c"), (b"connection", b"Upgrade")],
        [(b"upgrade", b"websocket"), (b"connection", b"keep-alive")],
        [(b"upgrade", b"websockets"), (b"connection", b"Upgrade")],
        [(b"upgrade", b"websocket"), (b"connection", b"upgraded")],
    ],
)
def test_is_not_upgrade_request(headers: Headers) -> None:
    assert not is_upgrade_request(headers)


# -- validate_handshake --------------------------------------------------------------------


def test_valid_handshake() -> None:
    handshake = validate_handshake(b"GET", "1.1", request_headers())
    assert handshake == Handshake(KEY, [], [])


def test_valid_handshake_later_http_version() -> None:
    assert validate_handshake(b"GET", "2", request_headers()).key == KEY


def test_key_whitespace_is_stripped() -> None:
    headers = request_headers(
        (b"sec-websocket-key", b" " + KEY + b" "), drop=(b"sec-websocket-key",)
    )
    assert validate_handshake(b"GET", "1.1", headers).key == KEY


@pytest.mark.parametrize("method", [b"POST", b"HEAD", b"get", b"CONNECT"])
def test_wrong_method(method: bytes) -> None:
    error = handshake_error(request_headers(), method=method)
    assert error.status == 400
    assert "GET" in error.reason


@pytest.mark.parametrize("version", ["1.0", "0.9", "x"])
def test_old_http_version(version: str) -> None:
    error = handshake_error(request_headers(), http_version=version)
    assert error.status == 400
    assert "HTTP/1.1" in error.reason


@pytest.mark.parametrize("name", [b"host", b"upgrade", b"connection"])
def test_missing_required_header(name: bytes) -> None:
    assert handshake_error(request_headers(drop=(name,))).status == 400


@pytest.mark.parametrize(
    "keys",
    [
        [],
        [KEY, KEY],
        [b"not base64!"],
        [b"dGhlIHNhbXBsZSBub25jZQ"],  # missing padding
        [b"c2hvcnQ="],  # "short": 5 bytes
        [b"dGhpcyBpcyAxNyBieXRlcyE="],  # 17 bytes
        [b""],
    ],
)
def test_bad_key(keys: list[bytes]) -> None:
    headers = request_headers(
        *((b"sec-websocket-key", key) for key in keys), drop=(b"sec-websocket-key",)
    )
    error = handshake_error(headers)
    assert error.status == 400
    assert "Sec-WebSocket-Key" in error.reason
    assert error.headers == []


@pytest.mark.parametrize("versions", [[], [b"8"], [b"14"], [b"13", b"13"], [b"13, 8"]])
def test_bad_websocket_version(versions: list[bytes]) -> None:
    # §4.2.2: answer 426 with the version(s) the server understands.
    headers = request_headers(
        *((b"sec-websocket-version", v) for v in versions), drop=(b"sec-websocket-version",)
    )
    error = handshake_error(headers)
    assert error.status == 426
    assert error.headers == [(b"sec-websocket-version", b"13")]
    assert error.reason


def test_error_attributes() -> None:
    error = HandshakeError(400, "Bad.")
    assert (error.status, error.reason, error.headers) == (400, "Bad.", [])
    assert str(error) == "400 Bad."


def test_subprotocols() -> None:
    headers = request_headers(
        (b"sec-websocket-protocol", b"chat, superchat"),
        (b"sec-websocket-protocol", b" ,v2.json ,,"),
    )
    assert validate_handshake(b"GET", "1.1", headers).subprotocols == [
        "chat",
        "superchat",
        "v2.json",
    ]


# -- Sec-WebSocket-Extensions --------------------------------------------------------------


def extensions(*values: bytes) -> list[ExtensionOffer]:
    return parse_extensions([(b"sec-websocket-extensions", value) for value in values])


def test_extensions_parsed_in_order() -> None:
    offers = extensions(
        b"permessage-deflate; client_max_window_bits, permessage-deflate",
        b"x-webkit-deflate-frame",
    )
    assert offers == [
        ExtensionOffer("permessage-deflate", (("client_max_window_bits", None),)),
        ExtensionOffer("permessage-deflate"),
        ExtensionOffer("x-webkit-deflate-frame"),
    ]


def test_extension_parameter_values() -> None:
    (offer,) = extensions(
        b'permessage-deflate ; server_max_window_bits = 10;client_max_window_bits="12" ;'
        b' x="a,b;c\\"d"'
    )
    assert offer.params == (
        ("server_max_window_bits", "10"),
        ("client_max_window_bits", "12"),
        ("x", 'a,b;c"d'),
    )


def test_extensions_tolerate_garbage() -> None:
    # Malformed offers are kept as sent for the negotiation to decline, or dropped
    # when they have no name; parsing never fails the handshake.
    offers = extensions(b",, ;a=1, foo;=;bar=", b'baz; q="unterminated')
    assert offers == [
        ExtensionOffer("foo", (("", ""), ("bar", ""))),
        ExtensionOffer("baz", (("q", '"unterminated'),)),
    ]


def test_handshake_extensions() -> None:
    headers = request_headers((b"sec-websocket-extensions", b"permessage-deflate"))
    handshake = validate_handshake(b"GET", "1.1", headers)
    assert handshake.extensions == [ExtensionOffer("permessage-deflate")]


# -- response_headers ----------------------------------------------------------------------


def test_response_headers_minimal() -> None:
    assert response_headers(Handshake(KEY), None, None) == [
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    ]


def test_response_headers_full() -> None:
    handshake = Handshake(KEY, ["chat", "superchat"])
    headers = response_headers(handshake, "superchat", "permessage-deflate")
    assert headers[3:] == [
        (b"sec-websocket-protocol", b"superchat"),
        (b"sec-websocket-extensions", b"permessage-deflate"),
    ]


def test_response_headers_subprotocol_not_offered() -> None:
    with pytest.raises(ValueError, match="not offered"):
        response_headers(Handshake(KEY, ["chat"]), "other", None)


# -- accept_response and reject_response ---------------------------------------------------


def test_accept_response_is_the_whole_101_head() -> None:
    defaults = DefaultHeaders(server=True, clock=lambda: 784111777.0)
    head = accept_response(Handshake(KEY, ["chat"]), "chat", "permessage-deflate", [(b"x-a", b"1")], defaults)
    assert head == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"upgrade: websocket\r\n"
        b"connection: Upgrade\r\n"
        b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"sec-websocket-protocol: chat\r\n"
        b"sec-websocket-extensions: permessage-deflate\r\n"
        b"x-a: 1\r\n"
        b"server: asgisock\r\n"
        b"date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        b"\r\n"
    )


def test_accept_response_without_defaults() -> None:
    head = accept_response(Handshake(KEY), None, None, [], DefaultHeaders(server=False, clock=None))
    assert head.endswith(b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")


@pytest.mark.parametrize("header", [(b"bad name", b"1"), (b"x", b"a\r\nb"), (b"x", "text")])
def test_accept_response_checks_the_apps_headers(header: tuple[object, object]) -> None:
    with pytest.raises(InvalidResponse):
        accept_response(Handshake(KEY), None, None, [header], DefaultHeaders(server=False, clock=None))


def test_accept_response_subprotocol_not_offered() -> None:
    with pytest.raises(ValueError, match="not offered"):
        accept_response(Handshake(KEY), "chat", None, [], DefaultHeaders(server=False, clock=None))


def test_reject_response_carries_the_errors_headers() -> None:
    response = reject_response(handshake_error(request_headers(drop=(b"sec-websocket-version",))))
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"\r\nsec-websocket-version: 13\r\n" in head + b"\r\n"
    assert b"\r\nconnection: close" in head
    assert body == b"Unsupported WebSocket version: this server speaks version 13.\n"
