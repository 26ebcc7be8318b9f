"""HTTP/1.1 response side, sans-I/O: ASGI status and headers in, wire bytes out.

Everything an app sends is checked before it is encoded, so a bad header can never put a
malformed or smuggled response on the wire (RFC 9110 §5.5, RFC 9112 §6).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Final, Literal, NamedTuple

from asgisock.exceptions import BrokenFraming, InvalidResponse
from asgisock.http11.events import Request
from asgisock.http11.headers import FORBIDDEN_VALUE_RE, TOKEN_RE, has_token
from asgisock.implementations import Implementation, choose

__all__ = [
    "CHUNKED", "CLOSE_DELIMITED", "CONTENT_LENGTH", "CONTINUE_RESPONSE", "HEAD_IMPLEMENTATION", "LAST_CHUNK",
    "NO_BODY", "WRITER_TRANSITIONS", "BrokenFraming", "DefaultHeaders", "FileFraming", "Framing",
    "InvalidResponse", "ResponseHead", "ResponseWriter", "WriterEvent", "WriterState", "encode_chunk",
    "encode_head", "encode_head_c", "encode_head_python", "error_response", "select",
]


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
    if not isinstance(value, bytes) or FORBIDDEN_VALUE_RE.search(value) is not None:
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
    return _new_head(ResponseHead, _encode_head(status, headers, defaults, head_request, http11, keep_alive,
                                                body_length))


def _encode_fields(headers: Iterable[Any], special: AbstractSet[bytes]) -> tuple[
        bytes, int | None, bool, set[bytes] | None]:
    """The app's header fields, checked (RFC 9110 §5.1, §5.5) and encoded.

    ``special`` holds the lower-case names looked at more closely: the framing names
    ``content-length``, ``transfer-encoding`` and ``connection``, and the default fields'
    (:attr:`DefaultHeaders.special`). Returns the encoded fields, less ``Transfer-Encoding``
    and ``Connection``; the Content-Length they state, or None; whether ``Connection`` lists
    ``close``; and the default fields' names the app set itself, or None. A bad name, value or
    Content-Length raises InvalidResponse; headers that are not pairs, TypeError or ValueError.
    """
    parts: list[bytes] = []
    content_length: int | None = None
    close = False
    seen: set[bytes] | None = None
    names = _CHECKED_NAMES
    values = _CHECKED_VALUES
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
                # but the server must ignore it." The framing is the server's own.
                continue
            elif lower == b"connection":
                close = close or has_token(value, b"close")
                continue  # connection management is the server's (RFC 9110 §7.6.1)
            else:
                if seen is None:
                    seen = set()
                seen.add(lower)
        parts += (name, b": ", value, b"\r\n")
    return b"".join(parts), content_length, close, seen


EncodedHead = tuple[bytes, Framing, "int | None", bool]
"""A :class:`ResponseHead`'s fields, as :func:`encode_head_python` returns them."""
HeadEncoder = Callable[[int, Iterable[Any], DefaultHeaders, bool, bool, bool, "int | None"], EncodedHead]


def encode_head_python(status: int, headers: Iterable[Any], defaults: DefaultHeaders, head_request: bool,
                       http11: bool, keep_alive: bool, body_length: int | None) -> EncodedHead:
    """:func:`encode_head` with positional arguments, returning a plain tuple: what the response
    writer calls. ``asgisock.http11._head.encode_head`` is the same routine in C."""
    if type(status) is not int or not 100 <= status <= 599:
        raise InvalidResponse(f"invalid status {status!r}")
    try:
        fields, content_length, close, seen_defaults = _encode_fields(headers, defaults.special)
    except (TypeError, ValueError) as exc:  # not an iterable of [bytes, bytes] pairs
        raise InvalidResponse(f"invalid headers {headers!r}: {exc}") from None
    if close:
        keep_alive = False
    if head_request or status in _NO_BODY_STATUSES:
        framing = NO_BODY
        length_line = b""
    elif content_length is not None:
        framing = CONTENT_LENGTH
        length_line = b""
    elif body_length is not None:
        framing = CONTENT_LENGTH
        content_length = body_length
        length_line = _LENGTH_LINES.get(body_length) or b"content-length: %d\r\n" % body_length
    elif http11:
        framing = CHUNKED
        length_line = b"transfer-encoding: chunked\r\n"
    else:
        framing = CLOSE_DELIMITED
        length_line = b""
        keep_alive = False
    if seen_defaults is None:
        ending = defaults.ending(keep_alive, http11)
    else:
        ending = defaults.without(seen_defaults) + _connection_end(keep_alive, http11)
    status_line = STATUS_LINES[status] if http11 else b"HTTP/1.0" + STATUS_LINES[status][8:]
    return b"".join((status_line, fields, length_line, ending)), framing, content_length, keep_alive


encode_head_c: HeadEncoder | None
try:
    from asgisock.http11 import _head
except ImportError:  # not built for this interpreter
    encode_head_c = None
else:
    _head.configure(STATUS_LINES, NO_BODY, CONTENT_LENGTH, CHUNKED, CLOSE_DELIMITED)
    encode_head_c = _head.encode_head


def select(implementation: Implementation | Literal["auto"]) -> Implementation:
    """Make ``implementation`` the encoding of every head from now on, and return its name:
    "auto" is the C one if it is built, else the pure-Python one; asking for "c" where it is
    not built raises ImportError. Chosen with the masking, by ``asgisock.extensions``."""
    global _encode_head, HEAD_IMPLEMENTATION
    _encode_head, HEAD_IMPLEMENTATION = choose(implementation, encode_head_c, encode_head_python,
                                               "asgisock.http11._head")
    return HEAD_IMPLEMENTATION


_encode_head: HeadEncoder
"""The encoding :func:`select` chose; the response writer calls it."""
HEAD_IMPLEMENTATION: Implementation
select("auto")


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 §7.1); never called with empty data."""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK: Final = b"0\r\n\r\n"
CONTINUE_RESPONSE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
EARLY_HINTS_LINE: Final = b"HTTP/1.1 103 Early Hints\r\n"
_FORBIDDEN_TRAILERS: Final = frozenset({b"content-length", b"transfer-encoding", b"trailer", b"host", b"te",
                                         b"connection", b"keep-alive", b"upgrade"})
"""Fields a trailer section must not carry: framing and connection control (RFC 9110 §6.5.1,
"a sender MUST NOT generate a trailer field unless the sender knows the corresponding header
field name's definition permits the field to be sent in trailers")."""


class FileFraming(NamedTuple):
    """How a body part read from a file goes on the wire: the file's bytes between two others."""

    before: bytes
    """The head (for the first part of the body) and a chunk-size line."""
    send: bool
    """Whether the file's bytes are sent at all: not for HEAD, 204 and 304, nor for an empty part."""
    after: bytes
    """The chunk's CRLF, and the last chunk when the part ends the body."""


def accepts_trailers(request: Request) -> bool:
    """Whether the client said it accepts trailer fields: ``TE: trailers`` (RFC 9110 §10.1.4)."""
    return any(name == b"te" and has_token(value, b"trailers") for name, value in request.headers)


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


def _encode_trailers(headers: Any) -> bytes:
    """Trailer fields, checked as header fields are and against :data:`_FORBIDDEN_TRAILERS`."""
    parts: list[bytes] = []
    try:
        for name, value in headers:
            lower = check_name(name)
            check_value(value)
            if lower in _FORBIDDEN_TRAILERS:
                raise InvalidResponse(f"{name!r} is not allowed in trailers")
            parts += (name, b": ", value, b"\r\n")
    except (TypeError, ValueError) as exc:  # not an iterable of [bytes, bytes] pairs
        raise InvalidResponse(f"invalid trailers {headers!r}: {exc}") from None
    return b"".join(parts)


class WriterState(enum.Enum):
    """Where one response is on the wire; see :data:`WRITER_TRANSITIONS`."""

    # Identity hashes: the members key the transition table, and ``Enum.__hash__`` is a
    # Python-level function that would cost more than the rest of a transition.
    __hash__ = object.__hash__

    EXPECT_CONTINUE = enum.auto()
    """Nothing sent, and the client waits for ``100 Continue`` before it sends its body."""
    IDLE = enum.auto()
    """Nothing of the response sent yet (a ``100 Continue`` may have been)."""
    BODY = enum.auto()
    """The head is sent and more body follows."""
    TRAILERS = enum.auto()
    """The body is complete and its trailer section is being written (RFC 9112 §7.1.2)."""
    DONE = enum.auto()
    """The response is complete; the connection carries another if :attr:`ResponseWriter.keep_alive`."""
    FAILED = enum.auto()
    """The response ended incomplete (the app failed, or its body broke the framing): close."""


class WriterEvent(enum.Enum):
    """What the ASGI layer asks of a response writer, and what the request side tells it."""

    CONTINUE = enum.auto()
    """The app waits for the request body."""
    REQUEST_COMPLETE = enum.auto()
    """The whole request body has been read."""
    START = enum.auto()
    """The head and the first part of the body."""
    START_FINAL = enum.auto()
    """The head and the whole body."""
    BODY = enum.auto()
    BODY_FINAL = enum.auto()
    EARLY_HINT = enum.auto()
    """A 103 (Early Hints) before the final head (RFC 8297)."""
    TRAILERS = enum.auto()
    """Trailer fields after the body; the first ends the body."""
    TRAILERS_FINAL = enum.auto()
    """The last trailer fields: the response is complete."""
    FAIL = enum.auto()
    """The app ended without completing its response, or its body broke the framing."""


EXPECT_CONTINUE: Final = WriterState.EXPECT_CONTINUE
IDLE: Final = WriterState.IDLE
BODY: Final = WriterState.BODY
TRAILERS: Final = WriterState.TRAILERS
DONE: Final = WriterState.DONE
FAILED: Final = WriterState.FAILED

WRITER_TRANSITIONS: Final[dict[WriterEvent, dict[WriterState, WriterState]]] = {
    WriterEvent.CONTINUE: {EXPECT_CONTINUE: IDLE, IDLE: IDLE, BODY: BODY, TRAILERS: TRAILERS},
    WriterEvent.REQUEST_COMPLETE: {EXPECT_CONTINUE: IDLE, IDLE: IDLE, BODY: BODY, TRAILERS: TRAILERS},
    WriterEvent.START: {EXPECT_CONTINUE: BODY, IDLE: BODY},
    WriterEvent.START_FINAL: {EXPECT_CONTINUE: DONE, IDLE: DONE},
    WriterEvent.BODY: {BODY: BODY},
    WriterEvent.BODY_FINAL: {BODY: DONE},
    # A 103 waits for nothing and changes nothing: the client still owes its body if it waited
    # for a 100, and once the final head is out a hint is too late and dropped.
    WriterEvent.EARLY_HINT: {EXPECT_CONTINUE: EXPECT_CONTINUE, IDLE: IDLE, BODY: BODY},
    WriterEvent.TRAILERS: {BODY: TRAILERS, TRAILERS: TRAILERS},
    WriterEvent.TRAILERS_FINAL: {BODY: DONE, TRAILERS: DONE},
    WriterEvent.FAIL: {EXPECT_CONTINUE: FAILED, IDLE: FAILED, BODY: FAILED, TRAILERS: FAILED},
}
"""The allowed transitions, as data: ``WRITER_TRANSITIONS[event][state]`` is the next state, and
a missing entry is refused. ``DONE`` and ``FAILED`` are final: :meth:`ResponseWriter.begin`
starts the next response."""

_ON_CONTINUE: Final = WRITER_TRANSITIONS[WriterEvent.CONTINUE]
_ON_REQUEST_COMPLETE: Final = WRITER_TRANSITIONS[WriterEvent.REQUEST_COMPLETE]
_ON_START: Final = WRITER_TRANSITIONS[WriterEvent.START]
_ON_START_FINAL: Final = WRITER_TRANSITIONS[WriterEvent.START_FINAL]
_ON_BODY: Final = WRITER_TRANSITIONS[WriterEvent.BODY]
_ON_BODY_FINAL: Final = WRITER_TRANSITIONS[WriterEvent.BODY_FINAL]
_ON_FAIL: Final = WRITER_TRANSITIONS[WriterEvent.FAIL]
_ON_EARLY_HINT: Final = WRITER_TRANSITIONS[WriterEvent.EARLY_HINT]
_ON_TRAILERS: Final = WRITER_TRANSITIONS[WriterEvent.TRAILERS]
_ON_TRAILERS_FINAL: Final = WRITER_TRANSITIONS[WriterEvent.TRAILERS_FINAL]
_new_file_framing: Final = tuple.__new__


class WriterStateError(RuntimeError):
    """A refused transition: the caller broke the order of a response."""

    def __init__(self, event: WriterEvent, state: WriterState) -> None:
        super().__init__(f"{event.name} refused in state {state.name}")
        self.event = event
        self.state = state


class ResponseWriter:
    """The HTTP/1.1 side of one response at a time: framing, keep-alive, what to send after an error.

    Sans-I/O: each method returns the bytes to write. One writer serves a connection's
    responses in turn, :meth:`begin` starting each. The connection is reused after a response
    only if every condition holds, decided here and nowhere else (:attr:`keep_alive`): the
    request allows it (RFC 9112 §9.3), the server is not closing, the response's ``Connection``
    does not say ``close``, its framing does not depend on the close (HTTP/1.0 streaming), the
    body matched its Content-Length, the client is not still waiting for a ``100 Continue``,
    and the response completed.
    """

    __slots__ = ("content_length", "defaults", "framing", "keep_alive", "request", "sent", "state")

    def __init__(self, defaults: DefaultHeaders) -> None:
        self.defaults = defaults
        self.state = DONE
        self.keep_alive = False
        self.framing = NO_BODY
        self.content_length: int | None = None
        self.sent = 0
        """Body bytes the app has sent (for Content-Length and the access log)."""

    def begin(self, request: Request, body_complete: bool) -> None:
        """A new response, to ``request``; ``body_complete`` when its whole body is already read."""
        self.request = request
        self.keep_alive = request.keep_alive
        self.state = EXPECT_CONTINUE if request.expect_continue and not body_complete else IDLE

    @property
    def reused(self) -> bool:
        """A response is complete and the connection carries the next one (before the first
        response, ``keep_alive`` is False)."""
        return self.state is DONE and self.keep_alive

    def close_after_response(self) -> None:
        """The server is closing: this response is the connection's last."""
        self.keep_alive = False

    def request_complete(self) -> None:
        """The request body is all read: a client that sent it no longer waits for a 100."""
        self.state = _ON_REQUEST_COMPLETE[self.state]

    def continue_(self) -> bytes:
        """RFC 9110 §10.1.1: the interim 100, once the app wants the body and only while no
        response has gone out; else nothing."""
        state = self.state
        try:
            self.state = _ON_CONTINUE[state]
        except KeyError:
            raise WriterStateError(WriterEvent.CONTINUE, state) from None
        return CONTINUE_RESPONSE if state is EXPECT_CONTINUE else b""

    def start(self, status: int, headers: Iterable[Any], body: bytes, more: bool) -> bytes:
        """The head and the first part of the body (all of it unless ``more``).

        The head waits for the first body message so that a body sent whole is framed with
        Content-Length rather than chunks. InvalidResponse leaves the state as it was (nothing
        is sent); BrokenFraming ends the response (nothing is sent).
        """
        state = self.state
        try:
            new = (_ON_START if more else _ON_START_FINAL)[state]
        except KeyError:
            raise WriterStateError(WriterEvent.START if more else WriterEvent.START_FINAL, state) from None
        request = self.request
        # A client still waiting for 100 would send its body after this response, where the
        # next request should be: the connection cannot be reused.
        keep_alive = self.keep_alive and state is not EXPECT_CONTINUE
        head = _encode_head(status, headers, self.defaults, request.method == b"HEAD", request.http_version == "1.1",
                            keep_alive, None if more else len(body))
        data, framing, content_length, self.keep_alive = head
        self.framing = framing
        self.content_length = content_length
        self.sent = size = len(body)
        if framing is CONTENT_LENGTH:
            if more or content_length != size:  # else the length is the body's own
                self._check_length(size, more)
            data += body
        elif framing is CHUNKED:
            if body:
                data += encode_chunk(body)
            if not more:
                data += LAST_CHUNK
        elif framing is CLOSE_DELIMITED:
            data += body
        self.state = new
        return data

    def body(self, body: bytes, more: bool) -> bytes:
        """More of the body; the last part unless ``more``."""
        state = self.state
        try:
            new = (_ON_BODY if more else _ON_BODY_FINAL)[state]
        except KeyError:
            raise WriterStateError(WriterEvent.BODY if more else WriterEvent.BODY_FINAL, state) from None
        framing = self.framing
        self.sent += len(body)
        if framing is CHUNKED:
            if body:
                data = encode_chunk(body) if more else encode_chunk(body) + LAST_CHUNK
            else:
                data = b"" if more else LAST_CHUNK
        elif framing is NO_BODY:
            data = b""
        else:
            self._check_length(self.sent, more)
            data = body
        self.state = new
        return data

    # -- the ASGI extensions: bodies read from files, early hints, trailers ---------------------
    def file_start(self, status: int, headers: Iterable[Any], size: int, more: bool) -> FileFraming:
        """:meth:`start` with the first part of the body ``size`` bytes of a file, which the
        transport sends itself between the two byte strings returned.

        A whole body read from a file gets a Content-Length like any other, and an app's
        Content-Length is checked against the file's size as against bytes. InvalidResponse and
        BrokenFraming leave the writer as :meth:`start` does.
        """
        state = self.state
        try:
            new = (_ON_START if more else _ON_START_FINAL)[state]
        except KeyError:
            raise WriterStateError(WriterEvent.START if more else WriterEvent.START_FINAL, state) from None
        request = self.request
        keep_alive = self.keep_alive and state is not EXPECT_CONTINUE
        head = _encode_head(status, headers, self.defaults, request.method == b"HEAD", request.http_version == "1.1",
                            keep_alive, None if more else size)
        data, self.framing, self.content_length, self.keep_alive = head
        self.sent = 0
        self.state = BODY  # the head is encoded: a broken length now fails the response
        before, send, after = self._file_part(size, more)
        self.state = new
        return _new_file_framing(FileFraming, (data + before, send, after))

    def file_body(self, size: int, more: bool) -> FileFraming:
        """:meth:`body` with a part that is ``size`` bytes of a file."""
        state = self.state
        try:
            new = (_ON_BODY if more else _ON_BODY_FINAL)[state]
        except KeyError:
            raise WriterStateError(WriterEvent.BODY if more else WriterEvent.BODY_FINAL, state) from None
        framing = self._file_part(size, more)
        self.state = new
        return framing

    def _file_part(self, size: int, more: bool) -> FileFraming:
        framing = self.framing
        self.sent += size
        if framing is CHUNKED:
            if not size:  # a chunk of size 0 would be the last chunk (RFC 9112 §7.1)
                return _new_file_framing(FileFraming, (b"", False, b"" if more else LAST_CHUNK))
            return _new_file_framing(FileFraming, (b"%x\r\n" % size, True, b"\r\n" if more else b"\r\n" + LAST_CHUNK))
        if framing is NO_BODY:
            return _new_file_framing(FileFraming, (b"", False, b""))
        self._check_length(self.sent, more)
        return _new_file_framing(FileFraming, (b"", size > 0, b""))

    def early_hint(self, links: Any) -> bytes:
        """RFC 8297: a 103 (Early Hints) with one ``Link`` field for each of ``links``, while the
        final head has not gone out; after it a hint is of no use, and nothing is sent.

        Only to HTTP/1.1 clients: RFC 9110 §15.2, "a server MUST NOT send a 1xx response to an
        HTTP/1.0 client". The links are checked as field values whether or not they are sent.
        """
        state = self.state
        try:
            new = _ON_EARLY_HINT[state]
        except KeyError:
            raise WriterStateError(WriterEvent.EARLY_HINT, state) from None
        lines = [EARLY_HINTS_LINE]
        try:
            for link in links:
                lines += (b"link: ", check_value(link), b"\r\n")
        except TypeError:
            raise InvalidResponse(f"invalid links {links!r}: not an iterable of byte strings") from None
        self.state = new
        if len(lines) == 1 or state is BODY or self.request.http_version != "1.1":
            return b""
        lines.append(b"\r\n")
        return b"".join(lines)

    def trailers(self, headers: Iterable[Any], more: bool) -> bytes:
        """Trailer fields after a body that was sent as not final; the last (not ``more``)
        completes the response.

        The first call ends the body: the last chunk of a chunked body (its trailer section
        follows, RFC 9112 §7.1.2), or the check of a Content-Length. The fields reach the wire
        only in a chunked body to a client that sent ``TE: trailers`` (which "indicates that the
        sender will not discard trailer fields", RFC 9110 §10.1.4; ASGI: the server "will only
        send the trailing headers" then); otherwise they are checked and dropped.
        """
        state = self.state
        try:
            new = (_ON_TRAILERS if more else _ON_TRAILERS_FINAL)[state]
        except KeyError:
            raise WriterStateError(WriterEvent.TRAILERS if more else WriterEvent.TRAILERS_FINAL, state) from None
        fields = _encode_trailers(headers)
        framing = self.framing
        data = b""
        if state is BODY:
            if framing is CHUNKED:
                data = b"0\r\n"
            elif framing is not NO_BODY:
                self._check_length(self.sent, False)
        if framing is CHUNKED:
            if fields and accepts_trailers(self.request):
                data += fields
            if not more:
                data += b"\r\n"
        self.state = new
        return data

    def fail(self) -> bytes:
        """The response will not be completed: a 500 if nothing was sent, else nothing; close."""
        state = self.state
        try:
            self.state = _ON_FAIL[state]
        except KeyError:
            raise WriterStateError(WriterEvent.FAIL, state) from None
        self.keep_alive = False
        if state is BODY or state is TRAILERS:
            return b""
        return error_response(500, "Internal Server Error")

    def _check_length(self, sent: int, more: bool) -> None:
        expected = self.content_length
        if expected is None:
            return
        if sent > expected or (not more and sent < expected):
            # The framing is broken: the connection cannot carry another response.
            self.state = _ON_FAIL[self.state]
            self.keep_alive = False
            raise BrokenFraming(f"response body is {sent} bytes, content-length says {expected}")
