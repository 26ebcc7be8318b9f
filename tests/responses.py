"""Responses read back as an HTTP client reads them: llhttp (httptools) parses the bytes,
interim responses (1xx) and trailer sections included."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import httptools


@dataclass
class Response:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    """Fields of the trailer section (RFC 9112 §7.1.2), lower-cased as llhttp gives them."""

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key.lower() == name), None)


class ResponseParser:
    """Feed it the bytes of a connection; :attr:`responses` are those complete so far, in order."""

    def __init__(self) -> None:
        self.responses: list[Response] = []
        self._current = Response()
        self._body: list[bytes] = []
        self._in_body = False
        self._parser = httptools.HttpResponseParser(self)

    def feed(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        (self._current.trailers if self._in_body else self._current.headers).append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._in_body = True
        self._current.status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._current.body = b"".join(self._body)
        self.responses.append(self._current)
        self._current, self._body, self._in_body = Response(), [], False


def read_responses(sock: socket.socket, count: int) -> list[Response]:
    """Read until ``count`` responses (interim ones count) are complete."""
    parser = ResponseParser()
    while len(parser.responses) < count:
        data = sock.recv(1 << 20)
        assert data, f"the connection closed after {len(parser.responses)} of {count} responses"
        parser.feed(data)
    return parser.responses
