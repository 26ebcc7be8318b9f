"""HTTP/1.1 response side, sans-I/O: ASGI status and headers in, wire bytes out.

Everything an app sends is checked before it is encoded, so a bad header can never put a
malformed or smuggled response on the wire (RFC 9110 §5.5, RFC 9112 §6).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Final, NamedTuple

from asgisock.http11.headers import FORBIDDEN_VALUE_RE, TOKEN_RE, has_token


class InvalidResponse(Exception):
    """The app asked for a response that cannot be put on the wire."""


class Framing(enum.Enum):
    """How the end of the response body is marked (RFC 9112 §6.3)."""

    NO_BODY = enum.auto()
    CONTENT_LENGTH = enum.auto()
    CHUNKED = enum.auto()
    CLOSE_DELIMITED = enum.auto()


# Module-level names for the members: on Python 3.11 ``Framing.X`` is a descriptor lookup that
# costs more than the rest of a typical comparison on the response path.
NO_BODY: Final = Framing.NO_BODY
CONTENT_LENGTH: Final = Framing.CONTENT_LENGTH
CHUNKED: Final = Framing.CHUNKED
CLOSE_DELIMITED: Final = Framing.CLOSE_DELIMITED


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("ascii")


STATUS_LINES: Final = {status: _status_line(status) for status in range(100, 600)}
_CHECKED_NAMES: dict[bytes, bytes] = {}
"""Names that passed the token check, mapped to their lower-case form (bounded, see below)."""
_MAX_CHECKED_NAMES: Final = 1024
_CHECKED_VALUES: set[bytes] = set()
"""Short values that passed the check: apps send the same few (content types) over and over."""
_MAX_CHECKED_VALUES: Final = 4096
_MAX_CACHED_VALUE: Final = 64
_NO_BODY_STATUSES: Final = frozenset([*range(100, 200), 204, 304])
"""Responses that never have content (RFC 9110 §6.4.1)."""
_LENGTH_LINES: Final = {length: b"content-length: %d\r\n" % length for length in range(4096)}
"""Content-Length lines of short bodies, made once."""


def _connection_end(keep_alive: bool, http11: bool) -> bytes:
    """The connection option (RFC 9112 §9.3), when the version's default is not meant, and the
    empty line that ends a head."""
    if not keep_alive:
        return b"connection: close\r\n\r\n"
    return b"\r\n" if http11 else b"connection: keep-alive\r\n\r\n"


class DefaultHeaders:
    """``Server``, ``Date`` and ``--header`` fields, encoded once (``Date`` once a second).

    Each head ends with these fields, the connection option and the empty line; the three
    possible endings are joined once per second rather than once per response.

    ``clock`` returns the wall-clock time in seconds since the epoch (``time.time``), or is None
    for no ``Date`` field. It is passed in because the clock belongs to the transport: this
    module does no I/O, and a test can hand it a fixed time and check the exact bytes.
    """

    __slots__ = ("_clock", "_close", "_date_expires", "_encoded", "_fixed", "_keep_alive", "_keep_alive_10",
                 "names", "special")

    def __init__(self, *, server: bool, clock: Callable[[], float] | None,
                 extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
        pairs = [(b"server", b"asgisock")] if server else []
        pairs.extend(extra)
        self.names = frozenset(name for name, _ in pairs) | ({b"date"} if clock is not None else set())
        self.special = self.names | {b"content-length", b"transfer-encoding", b"connection"}
        """Names :func:`encode_head` looks at more closely."""
        self._fixed = b"".join(name + b": " + value + b"\r\n" for name, value in pairs)
        self._clock = clock
        self._date_expires = 0.0
        self._set_encoded(self._fixed)

    def _set_encoded(self, encoded: bytes) -> None:
        self._encoded = encoded
        self._keep_alive = encoded + _connection_end(True, True)
        self._close = encoded + _connection_end(False, True)
        self._keep_alive_10 = encoded + _connection_end(True, False)

    def _set_date(self, now: float) -> None:
        second = int(now)
        self._date_expires = second + 1
        date = formatdate(second, usegmt=True).encode("ascii")
        self._set_encoded(self._fixed + b"date: " + date + b"\r\n")

    def encoded(self) -> bytes:
        """The default fields alone, for a head that ends another way."""
        self.ending(True, True)  # brings Date up to date
        return self._encoded

    def ending(self, keep_alive: bool, http11: bool) -> bytes:
        """The default fields, the connection option (RFC 9112 §9.3) and the empty line."""
        clock = self._clock
        if clock is not None and (now := clock()) >= self._date_expires:
            self._set_date(now)
        if not keep_alive:
            return self._close
        return self._keep_alive if http11 else self._keep_alive_10

    def without(self, names: set[bytes]) -> bytes:
        """The defaults minus those the app set itself (the app's value wins)."""
        return b"".join(line + b"\r\n" for line in self.encoded().split(b"\r\n")
                        if line and line.split(b":", 1)[0] not in names)


class ResponseHead(NamedTuple):
    """The encoded head and what it decided about the body."""

    data: bytes
    framing: Framing
    content_length: int | None
    keep_alive: bool


_new_head: Final = tuple.__new__
"""``ResponseHead(...)`` without the Python-level ``__new__`` a named tuple adds."""


def check_name(name: Any) -> bytes:
    """Lower-cased ``name`` if it is a valid field name (RFC 9110 §5.1), else InvalidResponse."""
    lower = _CHECKED_NAMES.get(name)
    if lower is not None:
        return lower
    if not isinstance(name, bytes) or TOKEN_RE.fullmatch(name) is None:
        raise InvalidResponse(f"invalid header name {name!r}")
    lower = name.lower()
    if len(_CHECKED_NAMES) < _MAX_CHECKED_NAMES:
        _CHECKED_NAMES[name] = lower
    return lower


def check_value(value: Any) -> bytes:
    """``value`` if it is a valid field value (RFC 9110 §5.5), else InvalidResponse."""
    if type(value) is not bytes or FORBIDDEN_VALUE_RE.search(value) is not None:
        raise InvalidResponse(f"invalid header value {value!r}")
    if len(value) <= _MAX_CACHED_VALUE and len(_CHECKED_VALUES) < _MAX_CHECKED_VALUES:
        _CHECKED_VALUES.add(value)
    return value


def encode_head(
    status: int,
    headers: Iterable[Any],
    defaults: DefaultHeaders,
    *,
    head_request: bool,
    http11: bool,
    keep_alive: bool,
    body_length: int | None,
) -> ResponseHead:
    """Encode a response head.

    ``body_length`` is the whole body's length when the app already sent it all (so it can be
    framed with Content-Length instead of chunks), else None.
    """
    if type(status) is not int or not 100 <= status <= 599:
        raise InvalidResponse(f"invalid status {status!r}")
    parts = [STATUS_LINES[status] if http11 else b"HTTP/1.0" + STATUS_LINES[status][8:]]
    content_length: int | None = None
    seen_defaults: set[bytes] | None = None
    names = _CHECKED_NAMES
    values = _CHECKED_VALUES
    special = defaults.special
    try:
        for name, value in headers:
            lower = names.get(name) or check_name(name)
            if value not in values:
                check_value(value)
            if lower in special:
                if lower == b"content-length":
                    if content_length is not None or not value.isdigit() or not value.isascii():
                        raise InvalidResponse(f"invalid content-length {value!r}")
                    content_length = int(value)
                elif lower == b"transfer-encoding":
                    # ASGI HTTP spec: "You may send a Transfer-Encoding header in this message,
                    # but the server must ignore it." The framing below is the server's own.
                    continue
                elif lower == b"connection":
                    if has_token(value, b"close"):
                        keep_alive = False
                    continue  # connection management is the server's (RFC 9110 §7.6.1)
                else:
                    seen_defaults = seen_defaults or set()
                    seen_defaults.add(lower)
            parts += (name, b": ", value, b"\r\n")
    except (TypeError, ValueError) as exc:  # not an iterable of [bytes, bytes] pairs
        raise InvalidResponse(f"invalid headers {headers!r}: {exc}") from None
    if head_request or status in _NO_BODY_STATUSES:
        framing = NO_BODY
    elif content_length is not None:
        framing = CONTENT_LENGTH
    elif body_length is not None:
        framing = CONTENT_LENGTH
        content_length = body_length
        parts.append(_LENGTH_LINES.get(body_length) or b"content-length: %d\r\n" % body_length)
    elif http11:
        framing = CHUNKED
        parts.append(b"transfer-encoding: chunked\r\n")
    else:
        framing = CLOSE_DELIMITED
        keep_alive = False
    if seen_defaults is None:
        parts.append(defaults.ending(keep_alive, http11))
    else:
        parts.append(defaults.without(seen_defaults))
        parts.append(_connection_end(keep_alive, http11))
    return _new_head(ResponseHead, (b"".join(parts), framing, content_length, keep_alive))


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 §7.1); never called with empty data."""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK: Final = b"0\r\n\r\n"
CONTINUE_RESPONSE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


def error_response(status: int, reason: str, *, keep_alive: bool = False,
                   extra: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    """A short plain-text response the server sends on its own (bad requests, 500, 503)."""
    body = (reason + "\n").encode("utf-8")
    lines = [STATUS_LINES[status], b"content-type: text/plain; charset=utf-8\r\n",
             b"content-length: %d\r\n" % len(body)]
    lines.extend(name + b": " + value + b"\r\n" for name, value in extra)
    lines.append(b"\r\n" if keep_alive else b"connection: close\r\n\r\n")
    lines.append(body)
    return b"".join(lines)
