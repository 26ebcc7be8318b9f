"""The server's side of the WebSocket opening handshake (RFC 6455 §4.2).

The HTTP layer parses the request; this module decides whether it is a valid
WebSocket upgrade, extracts what the application and the extensions need
(subprotocols, extension offers), and builds the responses that end the
handshake: the 101 head, or the error that refuses it. Both are HTTP/1.1
responses, so they take the header checks and the default fields from the
HTTP/1.1 writer, the same as any other response. It never raises for a malformed ``Sec-WebSocket-Extensions`` header: an
offer the server cannot understand is one it does not accept (RFC 6455 §9.1).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from asgisock.http11.writer import (
    STATUS_LINES,
    DefaultHeaders,
    check_name,
    check_value,
    error_response,
)

__all__ = [
    "ExtensionOffer",
    "Handshake",
    "HandshakeError",
    "accept_key",
    "accept_response",
    "is_upgrade_request",
    "parse_extensions",
    "reject_response",
    "response_headers",
    "validate_handshake",
]

Headers = list[tuple[bytes, bytes]]

# §1.3: the GUID concatenated to the client's key to prove the server read it.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_SUPPORTED_VERSION = b"13"


def accept_key(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key`` (§4.2.2 item 5.4)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def _values(headers: Headers, name: bytes) -> list[bytes]:
    return [value for key, value in headers if key == name]


def _tokens(headers: Headers, name: bytes) -> list[bytes]:
    """Lower-cased elements of a comma-separated header, over all its lines (RFC 9110 §5.3)."""
    return [
        token.strip().lower()
        for value in _values(headers, name)
        for token in value.split(b",")
        if token.strip()
    ]


def is_upgrade_request(headers: Headers) -> bool:
    """Whether a request asks to become a WebSocket (§4.2.1 items 3 and 4).

    ``Upgrade`` must list ``websocket`` and ``Connection`` must list
    ``upgrade``, in any case, possibly among other tokens (``keep-alive,
    Upgrade``) and over several header lines. Header names are lower-case.
    """
    return b"websocket" in _tokens(headers, b"upgrade") and b"upgrade" in _tokens(
        headers, b"connection"
    )


class HandshakeError(Exception):
    """The request is not a valid WebSocket handshake; answer it with ``status``.

    ``reason`` is a short plain-text explanation for the response body and
    ``headers`` are extra response headers (``Sec-WebSocket-Version`` on 426).
    """

    def __init__(self, status: int, reason: str, headers: Headers | None = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.headers: Headers = headers if headers is not None else []


@dataclass(frozen=True)
class ExtensionOffer:
    """One element of ``Sec-WebSocket-Extensions``: a name and its parameters.

    A parameter is ``(name, value)``, the value None for a bare parameter and
    unquoted when it was a quoted-string (§9.1). Names are kept as sent (not
    validated) so that the extension's negotiation can decline what it does
    not understand.
    """

    name: str
    params: tuple[tuple[str, str | None], ...] = ()


@dataclass
class Handshake:
    """What a valid opening handshake carries that the rest of the server needs."""

    key: bytes
    """The ``Sec-WebSocket-Key`` value, as sent (base64 text)."""
    subprotocols: list[str] = field(default_factory=list)
    """``Sec-WebSocket-Protocol`` values, in the client's order of preference."""
    extensions: list[ExtensionOffer] = field(default_factory=list)
    """``Sec-WebSocket-Extensions`` offers, in the client's order of preference."""


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split on ``separator`` except inside quoted-strings (RFC 9110 §5.6.4)."""
    parts: list[str] = []
    start = 0
    quoted = escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


_QUOTED_PAIR = re.compile(r"\\(.)")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return _QUOTED_PAIR.sub(r"\1", value[1:-1])
    return value


def _parse_offer(element: str) -> ExtensionOffer | None:
    name, *raw_params = (part.strip() for part in _split_outside_quotes(element, ";"))
    if not name:
        return None
    params: list[tuple[str, str | None]] = []
    for raw in raw_params:
        key, equals, value = raw.partition("=")
        params.append((key.strip(), _unquote(value.strip()) if equals else None))
    return ExtensionOffer(name, tuple(params))


def parse_extensions(headers: Headers) -> list[ExtensionOffer]:
    """All extension offers, over every ``Sec-WebSocket-Extensions`` line (§9.1)."""
    offers: list[ExtensionOffer] = []
    for value in _values(headers, b"sec-websocket-extensions"):
        for element in _split_outside_quotes(value.decode("latin-1"), ","):
            offer = _parse_offer(element)
            if offer is not None:
                offers.append(offer)
    return offers


def _parse_subprotocols(headers: Headers) -> list[str]:
    return [
        token.decode("latin-1")
        for value in _values(headers, b"sec-websocket-protocol")
        for token in (part.strip() for part in value.split(b","))
        if token
    ]


def _bad_request(reason: str) -> HandshakeError:
    return HandshakeError(400, reason)


def _check_request_line(method: bytes, http_version: str) -> None:
    # §4.1: "The method of the request MUST be GET, and the HTTP version MUST be at least 1.1."
    if method != b"GET":
        raise _bad_request("A WebSocket handshake must use the GET method.")
    major, _, minor = http_version.partition(".")
    try:
        version = (int(major), int(minor or "0"))
    except ValueError:
        raise _bad_request("A WebSocket handshake needs HTTP/1.1 or later.") from None
    if version < (1, 1):
        raise _bad_request("A WebSocket handshake needs HTTP/1.1 or later.")


def _check_upgrade_headers(headers: Headers) -> None:
    # §4.2.1 items 2-4: Host, "Upgrade: websocket", "Connection: Upgrade".
    if not _values(headers, b"host"):
        raise _bad_request("Missing Host header.")
    if not is_upgrade_request(headers):
        raise _bad_request("Missing 'Upgrade: websocket' or 'Connection: Upgrade' header.")


def _check_version(headers: Headers) -> None:
    # §4.2.2: "If this version does not match a version understood by the server,
    # the server MUST abort the WebSocket handshake ... and instead send an
    # appropriate HTTP error code (such as 426 Upgrade Required) and a
    # |Sec-WebSocket-Version| header field indicating the version(s) the server
    # is capable of understanding."
    versions = _values(headers, b"sec-websocket-version")
    if len(versions) != 1 or versions[0].strip() != _SUPPORTED_VERSION:
        raise HandshakeError(
            426,
            "Unsupported WebSocket version: this server speaks version 13.",
            [(b"sec-websocket-version", _SUPPORTED_VERSION)],
        )


def _check_key(headers: Headers) -> bytes:
    # §4.2.1 item 5: "A |Sec-WebSocket-Key| header field with a base64-encoded
    # value that, when decoded, is 16 bytes in length."
    keys = _values(headers, b"sec-websocket-key")
    if len(keys) != 1:
        raise _bad_request("Expected exactly one Sec-WebSocket-Key header.")
    key = keys[0].strip()
    try:
        raw = base64.b64decode(key, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 16:
        raise _bad_request("Sec-WebSocket-Key must be 16 bytes encoded in base64.")
    return key


def validate_handshake(method: bytes, http_version: str, headers: Headers) -> Handshake:
    """Check a client's opening handshake (§4.2.1) and extract what it offers.

    Raises HandshakeError: 426 with ``Sec-WebSocket-Version: 13`` for a missing
    or other protocol version, 400 for any other defect (§4.2.1: "the server
    MUST stop processing the client's handshake and return an HTTP response
    with an appropriate error code (such as 400 Bad Request)").
    """
    _check_request_line(method, http_version)
    _check_upgrade_headers(headers)
    _check_version(headers)
    key = _check_key(headers)
    return Handshake(key, _parse_subprotocols(headers), parse_extensions(headers))


def response_headers(
    handshake: Handshake, subprotocol: str | None, extensions: str | None
) -> Headers:
    """Headers of the 101 response (§4.2.2 item 5), without the status line.

    Raises ValueError for a subprotocol the client did not offer: the value
    "MUST be derived from the client's handshake", and a client fails any
    other.
    """
    headers: Headers = [
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-accept", accept_key(handshake.key)),
    ]
    if subprotocol is not None:
        if subprotocol not in handshake.subprotocols:
            raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
        headers.append((b"sec-websocket-protocol", subprotocol.encode("latin-1")))
    if extensions is not None:
        headers.append((b"sec-websocket-extensions", extensions.encode("latin-1")))
    return headers


def accept_response(
    handshake: Handshake,
    subprotocol: str | None,
    extensions: str | None,
    headers: Iterable[tuple[Any, Any]],
    defaults: DefaultHeaders,
) -> bytes:
    """The whole head of the 101 response that completes the handshake (§4.2.2 item 5).

    The handshake's own fields come first, then the app's extra ``headers``, checked as in any
    response so that none can put a malformed head on the wire (RFC 9110 §5.5), then the
    server's default fields (``Server``, ``Date``). Raises ValueError for a subprotocol the
    client did not offer or a header that is not a pair, InvalidResponse for an invalid name
    or value.
    """
    lines = [STATUS_LINES[101]]
    for name, value in response_headers(handshake, subprotocol, extensions):
        lines.append(name + b": " + value + b"\r\n")
    for name, value in headers:
        check_name(name)
        check_value(value)
        lines.append(name + b": " + value + b"\r\n")
    lines.append(defaults.encoded())
    lines.append(b"\r\n")
    return b"".join(lines)


def reject_response(error: HandshakeError) -> bytes:
    """The response that refuses an invalid handshake, then closes the connection (§4.2.1:
    "return an HTTP response with an appropriate error code")."""
    return error_response(error.status, error.reason, extra=error.headers)
