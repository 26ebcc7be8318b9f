"""HTTP/1.1 request side, sans-I/O: bytes in, request events out.

llhttp (through httptools) does the tokenising; this module adds what a server must decide on
top of it (RFC 9112): limits on the request head, which versions and transfer codings are
served, keep-alive, ``Expect``, and which requests are protocol upgrades. It never touches a
socket or an event loop, so every rule is tested with plain bytes.
"""

from __future__ import annotations

from typing import Final

import httptools

from asgisock.http11.events import END_OF_MESSAGE, Event, Request, RequestError
from asgisock.http11.headers import has_token

MAX_HEADER_COUNT: Final = 100
"""Requests with more header fields get 431 (as Apache's LimitRequestFields)."""


class _Reject(Exception):
    """Raised inside a parser callback to stop parsing; the error is kept on the connection."""


class HTTP11Connection:
    """Parses a stream of requests; the caller drains :meth:`events_received` after each feed.

    Events: a :class:`Request` once its head is complete, then ``bytes`` chunks of its body, then
    :data:`END_OF_MESSAGE`; or a single :class:`RequestError` after which the connection is
    unusable (the caller answers it and closes, as the framing can no longer be trusted).
    """

    __slots__ = (
        "_accounted",
        "_body_seen",
        "_events",
        "_expect",
        "_head_bytes",
        "_headers",
        "_in_head",
        "_max_header_size",
        "_parser",
        "_rejected",
        "_te",
        "_upgrade_websocket",
        "_url",
        "errored",
        "upgrade_data",
    )

    def __init__(self, *, max_header_size: int = 65536, websocket: bool = True) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._max_header_size = max_header_size
        self._events: list[Event] = []
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._in_head = False
        self._expect: bytes | None = None
        self._te: bytes | None = None
        self._rejected: RequestError | None = None
        self._upgrade_websocket = websocket
        self._body_seen = False
        self._accounted = 0
        self.errored = False
        self.upgrade_data: bytes | None = None
        """Bytes after a WebSocket upgrade request's head: they belong to the new protocol."""

    # -- feeding -------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        if self.errored:
            return
        continued = self._in_head
        self._accounted = 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._on_upgrade(data, exc.args[0])
        except _Reject:
            self._fail(self._rejected or RequestError(400, "Bad Request"))
        except httptools.HttpParserCallbackError:
            self._fail(self._rejected or RequestError(400, "Bad Request"))
        except httptools.HttpParserInvalidMethodError:
            self._fail(RequestError(400, "Invalid HTTP method"))
        except httptools.HttpParserInvalidURLError:
            self._fail(RequestError(400, "Invalid request target"))
        except httptools.HttpParserError as exc:
            self._fail(self._classify(str(exc)))
        else:
            if self._in_head:
                # An unfinished head stays in llhttp's buffers: bound it by the bytes it has taken
                # so far (this chunk, less what earlier messages in it used).
                self._head_bytes += len(data) if continued else len(data) - self._accounted
                if self._head_bytes > self._max_header_size:
                    self._fail(RequestError(431, "Request header fields too large"))

    def events_received(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # -- llhttp callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self._in_head = True
        self._expect = None
        self._te = None
        self._body_seen = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._max_header_size:
            self._reject(414, "URI too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # trailer fields (RFC 9112 §7.1.2): read and dropped, never merged into headers
        name = name.lower()
        self._headers.append((name, value))
        if len(self._headers) > MAX_HEADER_COUNT:
            self._reject(431, "Too many header fields")
        if name == b"expect":
            self._expect = value
        elif name == b"transfer-encoding":
            self._te = value if self._te is None else self._te + b"," + value

    def on_headers_complete(self) -> None:
        self._in_head = False
        size = len(self._url) + sum(len(n) + len(v) + 4 for n, v in self._headers)
        self._accounted += size
        if size > self._max_header_size:
            self._reject(431, "Request header fields too large")
        parser = self._parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            self._reject(505, "HTTP version not supported")
        if self._te is not None:
            self._check_transfer_encoding(self._te, version)
        if self._expect is not None and self._expect.lower() != b"100-continue":
            self._reject(417, "Expectation failed")
        self._events.append(self._make_request(parser.get_method(), version))

    def on_body(self, body: bytes) -> None:
        self._accounted += len(body)
        self._events.append(body)

    def on_chunk_header(self) -> None:
        self._accounted += 5  # the shortest chunk framing: "1\r\n" + "\r\n"

    def on_message_complete(self) -> None:
        self._events.append(END_OF_MESSAGE)

    # -- helpers -------------------------------------------------------------------------
    def _make_request(self, method: bytes, version: str) -> Request:
        headers = self._headers
        keep_alive = version == "1.1"
        upgrade = False
        for name, value in headers:
            if name == b"connection":
                if has_token(value, b"close"):
                    keep_alive = False
                elif version == "1.0" and has_token(value, b"keep-alive"):
                    keep_alive = True
            elif name == b"upgrade" and self._upgrade_websocket and has_token(value, b"websocket"):
                upgrade = True
        expect_continue = self._expect is not None and version == "1.1"
        return Request(method, self._url, version, headers, keep_alive, expect_continue, upgrade)

    def _on_upgrade(self, data: bytes, offset: int) -> None:
        """llhttp stops at any ``Upgrade`` request; only a WebSocket handshake really switches."""
        events = self._events
        request = next((e for e in reversed(events) if isinstance(e, Request)), None)
        rest = data[offset:]
        if request is not None and request.upgrade:
            self.upgrade_data = rest
            return
        # Any other upgrade (h2c ...) is ignored (RFC 9110 §7.8): serve it as plain HTTP/1.1 with
        # a fresh parser for what follows.
        self._parser = httptools.HttpRequestParser(self)
        if rest:
            self.receive_data(rest)

    def _check_transfer_encoding(self, value: bytes, version: str) -> None:
        """Only ``chunked`` is understood (RFC 9112 §6.1: otherwise 501)."""
        if version == "1.0":
            # RFC 9112 §6.1: a Transfer-Encoding in an HTTP/1.0 message is faulty framing.
            self._reject(400, "Transfer-Encoding in an HTTP/1.0 request")
        if [c.strip().lower() for c in value.split(b",")] != [b"chunked"]:
            self._reject(501, "Unsupported Transfer-Encoding")

    def _reject(self, status: int, reason: str) -> None:
        self._rejected = RequestError(status, reason)
        raise _Reject

    def _fail(self, error: RequestError) -> None:
        self.errored = True
        self._events.append(error)

    def _classify(self, message: str) -> RequestError:
        if "PRI" in message:
            return RequestError(505, "HTTP/2 is not supported on this port")
        return RequestError(400, f"Malformed request: {message}")

