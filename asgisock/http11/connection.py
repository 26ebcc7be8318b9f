"""HTTP/1.1 request side, sans-I/O: bytes in, request events out.

llhttp (through httptools) does the tokenising, in its strict mode: it already refuses bare CR
and bare LF, obs-fold, whitespace before a colon, invalid field names, CTLs in values and the
target, Content-Length with Transfer-Encoding, duplicate or non-numeric Content-Length, a
``chunked`` that is not the final coding, and malformed chunk lines. This module adds what a
server must decide on top of it (RFC 9112): limits on the request head and the chunk framing,
which versions, targets, ``Host`` values and transfer codings are served, keep-alive,
``Expect``, and which requests are protocol upgrades. It never touches a socket or an event
loop, so every rule is tested with plain bytes.
"""

from __future__ import annotations

import enum
import functools
from typing import Final, NoReturn

import httptools

from asgisock.http11.events import END_OF_MESSAGE, Event, Request, RequestError, new_request
from asgisock.http11.headers import HOST_RE, has_token, list_members, parse_digits
from asgisock.http11.target import split_target

MAX_HEADER_COUNT: Final = 100
"""Requests with more header fields get 431 (as Apache's LimitRequestFields)."""

FORWARDING_FIELDS: Final = frozenset(
    {b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port"}
)
"""Fields a proxy writes about the client; a request with one is flagged ``forwarded``."""
_WATCHED: Final = frozenset(
    {b"host", b"expect", b"transfer-encoding", b"content-length", b"connection", b"upgrade"}
) | FORWARDING_FIELDS
"""Fields whose values decide how the request is framed or answered; kept aside as they arrive,
so that the head is not searched again once complete."""

_HEAD_OVERHEAD: Final = len(b"  HTTP/1.1\r\n\r\n")
"""Bytes of a request head besides the method, the target and the field lines."""

_SLICE: Final = 65536
"""Bytes fed to llhttp at once. Chunk extensions and trailers are bounded between feeds, so a
feed that ends in them may hide up to this many bytes from the limit. A Content-Length body
holds no framing, and goes to llhttp whole however long."""
_HEAD_END: Final = b"\r\n\r\n"


_HASH: Final = ord("#")
_QUESTION: Final = ord("?")
"""Single bytes are looked for by value: ``b"#" in data`` first tries ``b"#"`` as an integer and
raises (and clears) a TypeError inside, several times the cost of the search itself."""


class ParserState(enum.Enum):
    """Where in the request stream the parser is, as far as this module's rules care.

    llhttp keeps the byte-level state; these are the positions that decide which limit applies
    to an unfinished read and whether bytes are parsed at all.
    """

    # Identity hashes: the members key the transition table, and ``Enum.__hash__`` is a
    # Python-level function that would cost more than the rest of a transition.
    __hash__ = object.__hash__

    IDLE = enum.auto()
    """Between requests."""
    BODY = enum.auto()
    """Inside a Content-Length body, which llhttp bounds by its length: no framing to limit."""
    HEAD = enum.auto()
    """Inside a request head: its bytes so far count against the head limit."""
    CHUNKED = enum.auto()
    """Inside a chunked body, between chunks."""
    IN_CHUNK = enum.auto()
    """Inside a chunk, or the last chunk's trailer section."""
    SWITCHED = enum.auto()
    """After a WebSocket upgrade request's head: the bytes belong to the new protocol."""
    ERRORED = enum.auto()
    """After a :class:`RequestError`: nothing more is parsed."""


IDLE: Final = ParserState.IDLE
BODY: Final = ParserState.BODY
HEAD: Final = ParserState.HEAD
CHUNKED: Final = ParserState.CHUNKED
IN_CHUNK: Final = ParserState.IN_CHUNK
SWITCHED: Final = ParserState.SWITCHED
ERRORED: Final = ParserState.ERRORED
"""Module-level names for the members: on Python 3.11 ``ParserState.X`` is a descriptor lookup."""


class ParserEvent(enum.Enum):
    """What moves the parser from one :class:`ParserState` to another (llhttp's callbacks)."""

    MESSAGE_BEGIN = enum.auto()
    HEAD_COMPLETE = enum.auto()
    """The head of a request without a body."""
    BODY_HEAD_COMPLETE = enum.auto()
    """The head of a request with a Content-Length body."""
    CHUNKED_HEAD_COMPLETE = enum.auto()
    CHUNK_BEGIN = enum.auto()
    CHUNK_COMPLETE = enum.auto()
    MESSAGE_COMPLETE = enum.auto()
    SWITCH = enum.auto()
    """A WebSocket upgrade request's head was read (llhttp has ended its message)."""
    FAIL = enum.auto()


PARSER_TRANSITIONS: Final[dict[ParserEvent, dict[ParserState, ParserState]]] = {
    ParserEvent.MESSAGE_BEGIN: {IDLE: HEAD},
    ParserEvent.HEAD_COMPLETE: {HEAD: IDLE},
    ParserEvent.BODY_HEAD_COMPLETE: {HEAD: BODY, IDLE: BODY},
    ParserEvent.CHUNKED_HEAD_COMPLETE: {HEAD: CHUNKED, IDLE: CHUNKED},
    ParserEvent.CHUNK_BEGIN: {CHUNKED: IN_CHUNK},
    ParserEvent.CHUNK_COMPLETE: {IN_CHUNK: CHUNKED},
    ParserEvent.MESSAGE_COMPLETE: {IDLE: IDLE, BODY: IDLE, CHUNKED: IDLE, IN_CHUNK: IDLE},
    ParserEvent.SWITCH: {IDLE: SWITCHED},
    ParserEvent.FAIL: {IDLE: ERRORED, HEAD: ERRORED, BODY: ERRORED, CHUNKED: ERRORED, IN_CHUNK: ERRORED},
}
"""The allowed transitions, as data: ``PARSER_TRANSITIONS[event][state]`` is the next state; a
missing entry is a refused transition (KeyError). ``BODY_HEAD_COMPLETE`` and
``CHUNKED_HEAD_COMPLETE`` from ``IDLE`` are the body of a request whose upgrade was not taken,
which llhttp reports as ended after its head."""

_ON_MESSAGE_BEGIN: Final = PARSER_TRANSITIONS[ParserEvent.MESSAGE_BEGIN]
_ON_HEAD_COMPLETE: Final = PARSER_TRANSITIONS[ParserEvent.HEAD_COMPLETE]
_ON_BODY_HEAD_COMPLETE: Final = PARSER_TRANSITIONS[ParserEvent.BODY_HEAD_COMPLETE]
_ON_CHUNKED_HEAD_COMPLETE: Final = PARSER_TRANSITIONS[ParserEvent.CHUNKED_HEAD_COMPLETE]
_ON_CHUNK_BEGIN: Final = PARSER_TRANSITIONS[ParserEvent.CHUNK_BEGIN]
_ON_CHUNK_COMPLETE: Final = PARSER_TRANSITIONS[ParserEvent.CHUNK_COMPLETE]
_ON_MESSAGE_COMPLETE: Final = PARSER_TRANSITIONS[ParserEvent.MESSAGE_COMPLETE]
_ON_SWITCH: Final = PARSER_TRANSITIONS[ParserEvent.SWITCH]
_ON_FAIL: Final = PARSER_TRANSITIONS[ParserEvent.FAIL]


class _Reject(Exception):
    """Raised inside a parser callback to stop parsing; the error is kept on the connection."""


_METHOD_ROOM: Final = 24
"""Bytes kept from an unfinished head besides its target: enough for the longest method, a space
and the line end."""

_NO_VERSION: Final = RequestError(400, "Request line without an HTTP/1.x version")
"""RFC 9112 §3: a request line without an HTTP-version (HTTP/0.9's ``GET /``) is an invalid
request-line, and "a recipient SHOULD respond with a 400 (Bad Request)". llhttp reports such a
line as version 0.9, as it does ``HTTP/0.9`` spelt out, so a major version 0 is answered the
same way: either is a client that does not speak HTTP/1.x."""


KNOWN_HOST_SIZE: Final = 255
"""Host values up to this size are remembered once checked (a DNS name is at most 253 bytes)."""


@functools.lru_cache(maxsize=64)
def _known_host(host: bytes) -> bool:
    """Whether a ``Host`` value is valid, remembered: most connections repeat the same few, and a
    new connection per request would otherwise run the pattern on every one."""
    return HOST_RE.fullmatch(host) is not None


def _new_parser(protocol: object) -> httptools.HttpRequestParser:
    parser = httptools.HttpRequestParser(protocol)
    # llhttp only knows HTTP/0.9, 1.0, 1.1 and 2.0 and calls any other version malformed (400).
    # Let every DIGIT.DIGIT through so that the version rules below apply: RFC 9112 §2.3 serves
    # a higher 1.x as 1.1, and other major versions get 505 (RFC 9110 §15.6.6).
    parser.set_dangerous_leniencies(lenient_version=True)
    return parser


class HTTP11Connection:
    """Parses a stream of requests; the caller drains :meth:`events_received` after each feed.

    Events: a :class:`Request` once its head is complete, then ``bytes`` chunks of its body, then
    :data:`END_OF_MESSAGE`; or a single :class:`RequestError` after which the connection is
    unusable (the caller answers it and closes, as the framing can no longer be trusted). After
    a WebSocket upgrade request no more events come: the bytes that follow its head belong to
    the new protocol and collect in :attr:`upgrade_data`.
    """

    __slots__ = (
        "_accounted",
        "_authority",
        "_body_left",
        "_body_length",
        "_chunked",
        "_events",
        "_fields_size",
        "_framing_run",
        "_head_bytes",
        "_head_size",
        "_headers",
        "_max_header_size",
        "_parser",
        "_progress",
        "_rejected",
        "_state",
        "_tail",
        "_upgrade_websocket",
        "_url",
        "_valid_host",
        "_watched",
        "upgrade_data",
    )

    def __init__(self, *, max_header_size: int = 65536, websocket: bool = True) -> None:
        self._parser = _new_parser(self)
        self._max_header_size = max_header_size
        self._events: list[Event] = []
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._watched: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._head_size = 0
        self._fields_size = 0
        self._state = IDLE
        self._authority: bytes | None = None
        self._valid_host: bytes | None = None
        self._chunked = False
        self._body_length = 0
        self._body_left = 0
        """Bytes of the Content-Length body still to come, while in ``BODY``."""
        self._progress = False
        """Chunk headers or body data were read since the last feed: data, not a state."""
        self._framing_run = 0
        self._rejected: RequestError | None = None
        self._upgrade_websocket = websocket
        self._accounted = 0
        self._tail = b""
        self.upgrade_data: bytes | None = None
        """Bytes after a WebSocket upgrade request's head: they belong to the new protocol."""

    @property
    def state(self) -> ParserState:
        return self._state

    @property
    def errored(self) -> bool:
        """A :class:`RequestError` was reported: the connection is unusable."""
        return self._state is ERRORED

    # -- feeding -------------------------------------------------------------------------
    def receive_data(self, data: bytes | memoryview) -> None:
        state = self._state
        if state is SWITCHED:
            self.upgrade_data = (self.upgrade_data or b"") + data
            return
        if state is ERRORED:
            return
        if len(data) > _SLICE and not (state is BODY and len(data) <= self._body_left):
            self._receive_slices(data)
            return
        continued = state is HEAD
        self._accounted = 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._on_upgrade(bytes(data[exc.args[0] :]))
        except (_Reject, httptools.HttpParserCallbackError):
            self._fail(self._first_error(self._rejected or RequestError(400, "Bad Request")))
        except httptools.HttpParserInvalidMethodError:
            self._fail(RequestError(400, "Invalid HTTP method"))
        except httptools.HttpParserInvalidURLError:
            self._fail(RequestError(400, "Invalid request target"))
        except httptools.HttpParserError as exc:
            self._fail(self._first_error(self._classify(str(exc))))
        else:
            state = self._state
            if state is IDLE:  # the read ended with a message, or inside a Content-Length body
                return
            if state is HEAD:
                # An unfinished head stays in llhttp's buffers: bound it by the bytes it has taken
                # so far (this chunk, less what earlier messages in it used).
                self._head_bytes += len(data) if continued else len(data) - self._accounted
                if self._unfinished_head(data):
                    self._fail(_NO_VERSION)
                elif self._head_bytes > self._max_header_size:
                    self._fail(self._too_large(self._head_bytes))
            elif state is CHUNKED or state is IN_CHUNK:
                self._bound_chunk_framing(len(data))

    def _first_error(self, error: RequestError) -> RequestError:
        """The request line comes first in the stream, so a missing version wins over whatever
        else stopped the parser in that head, however the head was split into reads."""
        return _NO_VERSION if self._parser.get_http_version() == "0.9" else error

    def _unfinished_head(self, data: bytes | memoryview) -> bool:
        """A read ended inside a request head: answer a request line without an HTTP version
        now. llhttp reads ``GET /`` CRLF as HTTP/0.9 and then waits for header fields, which an
        HTTP/0.9 client never sends, so waiting for the end of the head would wait for the head
        timeout. llhttp reports 0.9 once a byte follows the line, and 0.0 until then: a head that
        is, so far, exactly its method, a space, its target and a line end has had a request line
        without a version.

        The decision depends only on the stream so far, never on how it was split into reads.
        llhttp keeps a connection's last version until it reads a new one, so 0.0 here is either
        the first head on the connection (the stream so far is leading line ends and this head,
        whose last bytes are kept across reads) or a later head that spells ``HTTP/0.0`` out
        (refused once complete)."""
        version = self._parser.get_http_version()
        if version == "0.9":
            return True
        if version != "0.0":
            return False  # a version was read: the head's bytes are no longer needed
        keep = len(self._url) + _METHOD_ROOM
        self._tail = tail = (self._tail + bytes(data[-keep:]))[-keep:]
        if tail[-1:] != b"\n":
            return False
        line = self._parser.get_method() + b" " + self._url
        return tail.lstrip(b"\r\n") in (line + b"\r\n", line + b"\n")

    def _receive_slices(self, data: bytes | memoryview) -> None:
        """Limits are checked between feeds: slices keep what one feed can hide from them small.

        The rest of a Content-Length body goes in one piece; between requests, a slice ends
        where the next head does (when that is in reach), so that the body after it can. Where
        the slices fall never changes the events, only how body bytes are grouped."""
        view = memoryview(data)
        searched = data if isinstance(data, bytes) else view.tobytes()
        start, end = 0, len(view)
        while start < end:
            state = self._state
            if state is BODY and self._body_left > 0:
                stop = start + self._body_left
            elif state is IDLE:
                head_end = searched.find(_HEAD_END, start, start + _SLICE)
                stop = head_end + len(_HEAD_END) if head_end >= 0 else start + _SLICE
            else:
                stop = start + _SLICE
            self.receive_data(view[start:stop])
            start = stop

    def events_received(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # -- llhttp callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._watched = []
        self._head_bytes = 0
        self._fields_size = 0
        self._tail = b""
        self._state = _ON_MESSAGE_BEGIN[self._state]
        self._authority = None
        self._chunked = False
        self._body_length = 0

    def on_url(self, url: bytes) -> None:
        self._url = url = self._url + url
        if len(url) > self._max_header_size:
            self._reject(414, "URI too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._state is not HEAD:
            return  # trailer fields (RFC 9112 §7.1.2): read and dropped, never merged into headers
        name = name.lower()
        # RFC 9112 §5.1: the field value does not include leading or trailing whitespace (llhttp
        # drops the leading part only).
        value = value.rstrip(b" \t")
        field = (name, value)
        headers = self._headers
        headers.append(field)
        self._fields_size += len(name) + len(value)  # and 4 for ": " and CRLF, added once complete
        if len(headers) > MAX_HEADER_COUNT:
            # Checked as fields arrive: the objects held for a head must stay few, whatever its size.
            self._reject(431, "Too many header fields")
        if name in _WATCHED:
            self._watched.append(field)

    def on_headers_complete(self) -> None:
        parser = self._parser
        method = parser.get_method()
        # The head as sent, less optional whitespace: "METHOD target HTTP/1.1", the fields with
        # ": " and CRLF, and the empty line.
        headers = self._headers
        version = parser.get_http_version()
        if version[0] == "0":  # the request line comes first: before the size of the rest
            self._rejected = _NO_VERSION
            raise _Reject
        self._head_size = size = len(method) + len(self._url) + _HEAD_OVERHEAD + self._fields_size + 4 * len(headers)
        self._accounted += size
        if size > self._max_header_size:
            error = self._too_large(size)
            self._reject(error.status, error.reason)
        if version != "1.1" and version != "1.0":
            version = self._other_version(version)
        if method == b"CONNECT":
            # RFC 9110 §9.3.6: CONNECT asks for a tunnel, which only a proxy provides; an ASGI app
            # cannot. Whatever follows the head would be tunnel data, so the connection closes.
            self._reject(501, "CONNECT is not supported")
        target = self._url
        if target[:1] != b"/" or _HASH in target:
            self._check_target(method, target)
            path, query = split_target(target)
        elif _QUESTION in target:
            path, _, query = target.partition(b"?")
        else:
            path, query = target, b""
        watched = self._watched
        if len(watched) == 1 and watched[0][0] == b"host":  # most requests: no body, no options
            if watched[0][1] != self._valid_host or self._authority is not None:
                self._check_host(version, watched[0][1], 1)
            request = new_request(Request, (method, target, version, headers, version == "1.1", False, False,
                                            path, query, False))
        else:
            request = self._check_fields(method, version, watched, path, query)
            if request.upgrade and (self._chunked or self._body_length):
                # A handshake is a GET without content (RFC 6455 §4.1); here the bytes after the
                # head would be read as a body by some and as WebSocket frames by others.
                self._reject(400, "WebSocket handshake with a body")
        self._progress = chunked = self._chunked
        if chunked or self._body_length:
            self._enter_body()
        else:
            self._state = _ON_HEAD_COMPLETE[self._state]
        self._events.append(request)

    def _enter_body(self) -> None:
        """Move into the body the head announced, chunked or of a Content-Length (if any)."""
        if self._chunked:
            self._state = _ON_CHUNKED_HEAD_COMPLETE[self._state]
        elif self._body_length:
            self._body_left = self._body_length
            self._state = _ON_BODY_HEAD_COMPLETE[self._state]

    def on_body(self, body: bytes) -> None:
        size = len(body)
        self._accounted += size
        self._body_left -= size  # meaningful in BODY only
        self._progress = True
        self._events.append(body)

    def on_chunk_header(self) -> None:
        self._accounted += 5  # the shortest chunk framing: "1\r\n" + "\r\n"
        self._progress = True
        self._state = _ON_CHUNK_BEGIN[self._state]

    def on_chunk_complete(self) -> None:
        self._state = _ON_CHUNK_COMPLETE[self._state]

    def on_message_complete(self) -> None:
        self._state = _ON_MESSAGE_COMPLETE[self._state]
        self._framing_run = 0
        self._events.append(END_OF_MESSAGE)

    # -- the request head ----------------------------------------------------------------
    def _other_version(self, version: str) -> str:
        if version[:2] == "1.":
            # RFC 9112 §2.3: a higher minor version is processed "as if it were in the highest
            # minor version within that major version to which the recipient is conformant".
            return "1.1"
        # 2.0 in plain text, 3.0, 9.9...
        self._reject(505, "HTTP version not supported")

    def _check_target(self, method: bytes, target: bytes) -> None:
        """RFC 9112 §3.2: origin-form, absolute-form, or ``*`` for OPTIONS (authority-form is
        CONNECT's, refused earlier). llhttp already refused CTLs, spaces and non-ASCII."""
        if b"#" in target:
            # A fragment is never part of a request-target (RFC 9112 §3.2).
            self._reject(400, "Fragment in request target")
        if target[:1] == b"/":
            return
        if target == b"*":
            if method != b"OPTIONS":
                self._reject(400, "Asterisk-form target is only for OPTIONS")
            return
        scheme, separator, rest = target.partition(b"://")
        authority = rest.split(b"/", 1)[0].split(b"?", 1)[0]
        if not separator or scheme.lower() not in (b"http", b"https"):
            self._reject(400, "Invalid request target")
        # RFC 9110 §4.2.4: userinfo in an http(s) URI is to be treated as an error.
        if not authority or b"@" in authority or HOST_RE.fullmatch(authority) is None:
            self._reject(400, "Invalid authority in request target")
        self._authority = authority

    def _check_fields(self, method: bytes, version: str, watched: list[tuple[bytes, bytes]], path: bytes,
                      query: bytes) -> Request:
        """Check Host, framing, Expect and the connection options; the request they describe."""
        # One pass over the fields kept aside, with a field's lines combined with commas as
        # they come (RFC 9110 §5.3); then the checks, in the order that decides which error wins.
        # Named locals rather than a dict of the combined lines: that costs 4% more instructions
        # per request with a body (bench/instructions.py).
        host = codings = length = expectations = options = protocols = None
        hosts = 0
        forwarded = False
        for name, value in watched:
            if name == b"host":
                host = value
                hosts += 1
            elif name == b"content-length":
                length = value  # llhttp refuses a second
            elif name == b"transfer-encoding":
                codings = value if codings is None else codings + b"," + value
            elif name == b"connection":
                options = value if options is None else options + b"," + value
            elif name == b"expect":
                expectations = value if expectations is None else expectations + b"," + value
            elif name == b"upgrade":
                protocols = value if protocols is None else protocols + b"," + value
            else:
                forwarded = True  # the rest of the watched fields are FORWARDING_FIELDS
        self._check_host(version, host, hosts)
        if codings is not None:
            self._check_codings(version, codings)
        elif length is not None:
            self._body_length = self._content_length(length)
        expect_continue = expectations is not None and self._check_expect(version, expectations)
        # RFC 9112 §9.3: HTTP/1.1 is persistent unless "close"; HTTP/1.0 only with "keep-alive".
        if options is None:
            keep_alive = version == "1.1"
        else:
            keep_alive = not has_token(options, b"close") and (version == "1.1" or has_token(options, b"keep-alive"))
        # llhttp flags an upgrade only with a ``Connection: upgrade`` option too (RFC 9110 §7.8);
        # an ``Upgrade`` field alone is informational and served as plain HTTP.
        upgrade = (self._upgrade_websocket and protocols is not None and has_token(protocols, b"websocket")
                   and self._parser.should_upgrade())
        return new_request(Request, (method, self._url, version, self._headers, keep_alive, expect_continue, upgrade,
                                     path, query, forwarded))

    def _check_host(self, version: str, host: bytes | None, count: int) -> None:
        """RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
        HTTP/1.1 request message that lacks a Host header field and to any request message that
        contains more than one Host header field line or a Host header field with an invalid
        field value."""
        if count > 1:
            self._reject(400, "More than one Host header")
        if host is None:
            if version == "1.1":
                self._reject(400, "Missing Host header")
        elif host != self._valid_host:  # a keep-alive connection repeats its Host: check it once
            if not (_known_host(host) if len(host) <= KNOWN_HOST_SIZE else HOST_RE.fullmatch(host) is not None):
                self._reject(400, "Invalid Host header")
            self._valid_host = host
        if self._authority is not None:
            self._use_target_authority(self._authority)

    def _use_target_authority(self, authority: bytes) -> None:
        """RFC 9112 §3.2.2: with an absolute-form target, the server "MUST ignore the received
        Host header field (if any) and instead use the host information of the request-target";
        the app reads the host from ``Host``, so that is where it goes."""
        headers = self._headers
        index = next((i for i, (name, _) in enumerate(headers) if name == b"host"), None)
        # The app never gets more than the limits allow, however long the authority.
        grows = len(authority) - (len(headers[index][1]) if index is not None else -len(b"host: \r\n"))
        if self._head_size + grows > self._max_header_size:
            self._reject(431, "Request header fields too large")
        if index is not None:
            headers[index] = (b"host", authority)
            return
        if len(headers) >= MAX_HEADER_COUNT:
            self._reject(431, "Too many header fields")
        headers.append((b"host", authority))

    def _check_codings(self, version: str, codings: bytes) -> None:
        """Transfer-Encoding (RFC 9112 §6.1). llhttp refused the ambiguous cases already: with
        Content-Length, ``chunked`` not last or twice; these are the rules it leaves to servers."""
        if version == "1.0":
            # RFC 9112 §6.1: a server MUST treat Transfer-Encoding in an HTTP/1.0 message as
            # faulty framing and close the connection after answering.
            self._reject(400, "Transfer-Encoding in an HTTP/1.0 request")
        members = [part.strip(b" \t").lower() for part in codings.split(b",")]
        if members != [b"chunked"]:
            if b"" in members:
                # Empty list members are legal in general, but this field decides the framing:
                # any spelling another parser could read differently is refused.
                self._reject(400, "Invalid Transfer-Encoding")
            if members[-1] != b"chunked":
                # RFC 9112 §6.3: "If a Transfer-Encoding header field is present in a request and
                # the chunked transfer coding is not the final encoding, [...] the server MUST
                # respond with the 400 (Bad Request) status code and then close the connection."
                self._reject(400, "Transfer-Encoding does not end with chunked")
            # "A server that receives a request message with a transfer coding it does not
            # understand SHOULD respond with 501 (Not Implemented)."
            self._reject(501, "Unsupported Transfer-Encoding")
        self._chunked = True

    def _content_length(self, value: bytes) -> int:
        length = parse_digits(value)
        if length is None:
            self._reject(400, "Invalid Content-Length")  # llhttp refuses these first
        return length

    def _check_expect(self, version: str, value: bytes) -> bool:
        """Whether to answer ``100 Continue`` (RFC 9110 §10.1.1); 417 for other expectations."""
        members = list_members(value)
        if any(member != b"100-continue" for member in members):
            self._reject(417, "Expectation failed")
        # "A server that receives a 100-continue expectation in an HTTP/1.0 request MUST ignore
        # that expectation."
        return bool(members) and version == "1.1"

    # -- upgrades ------------------------------------------------------------------------
    def _on_upgrade(self, rest: bytes) -> None:
        """llhttp stops after the head of any request with ``Connection: upgrade`` and skips its
        body; only a WebSocket handshake really switches protocols. ``rest`` follows the head."""
        request = next((e for e in reversed(self._events) if isinstance(e, Request)), None)
        if request is not None and request.upgrade:
            self._state = _ON_SWITCH[self._state]
            self.upgrade_data = rest
            return
        # Any other upgrade (h2c ...) is ignored (RFC 9110 §7.8): the request is plain HTTP/1.1,
        # body included. A fresh parser reads that body, then whatever follows it.
        last = self._events.pop()
        assert last is END_OF_MESSAGE, last  # llhttp ended the message where the body begins
        self._enter_body()
        self._parser = _new_parser(_BodyAfterUpgrade(self))
        self._parser.feed_data(self._body_head(request))
        if rest:
            self.receive_data(rest)

    def _body_head(self, request: Request | None) -> bytes:
        """A head that tells a fresh parser how the skipped body is framed; never reported."""
        framing = b"transfer-encoding: chunked" if self._chunked else b"content-length: %d" % self._body_length
        close = b"" if request is None or request.keep_alive else b"connection: close\r\n"
        return b"POST / HTTP/1.1\r\n" + framing + b"\r\n" + close + b"\r\n"

    # -- limits and failures -------------------------------------------------------------
    def _bound_chunk_framing(self, size: int) -> None:
        """Chunk extensions and trailer fields are not body, yet arrive inside it: llhttp reads
        any length of them (and httptools buffers a trailer field whole). Bound the bytes read
        with neither a chunk header nor body data in them by the limit on a request head."""
        if self._progress:
            self._progress = False
            self._framing_run = 0
            return
        self._framing_run += size
        if self._framing_run > self._max_header_size:
            if self._state is IN_CHUNK:
                self._fail(RequestError(431, "Trailer fields too large"))
            else:
                self._fail(RequestError(400, "Chunk extension too long"))

    def _too_large(self, size: int) -> RequestError:
        """414 when the target is most of an oversized head (RFC 9110 §15.5.15), else 431 (RFC
        6585 §5): the same answer however the head was split into reads."""
        if 2 * len(self._url) > size:
            return RequestError(414, "URI too long")
        return RequestError(431, "Request header fields too large")

    def _reject(self, status: int, reason: str) -> NoReturn:
        self._rejected = RequestError(status, reason)
        raise _Reject

    def _fail(self, error: RequestError) -> None:
        self._state = _ON_FAIL[self._state]
        self._events.append(error)

    def _classify(self, message: str) -> RequestError:
        if "PRI" in message:
            return RequestError(505, "HTTP/2 is not supported on this port")
        return RequestError(400, f"Malformed request: {message}")


class _BodyAfterUpgrade:
    """Parser callbacks after a non-switching upgrade request: the made-up head of
    :meth:`HTTP11Connection._body_head` is swallowed, everything after goes to the connection."""

    __slots__ = ("_conn", "_in_made_up_head")

    def __init__(self, conn: HTTP11Connection) -> None:
        self._conn = conn
        self._in_made_up_head = True

    def on_message_begin(self) -> None:
        if not self._in_made_up_head:
            self._conn.on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self._in_made_up_head:
            self._conn.on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_made_up_head:
            self._conn.on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._in_made_up_head:
            self._in_made_up_head = False
        else:
            self._conn.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._conn.on_body(body)

    def on_chunk_header(self) -> None:
        self._conn.on_chunk_header()

    def on_chunk_complete(self) -> None:
        self._conn.on_chunk_complete()

    def on_message_complete(self) -> None:
        self._conn.on_message_complete()
