"""Events that :class:`~asgisock.http11.connection.HTTP11Connection` produces.

A request's body arrives as plain ``bytes`` events between its :class:`Request` and
:data:`END_OF_MESSAGE`; that keeps the hot path free of wrapper objects.
"""

from __future__ import annotations

from typing import Final, NamedTuple


class Request(NamedTuple):
    """A request head, complete and validated.

    A named tuple: built with ``tuple.__new__`` on the hot path, it costs half what a class
    with an ``__init__`` does, and its fields read as fast.
    """

    method: bytes
    target: bytes
    http_version: str
    headers: list[tuple[bytes, bytes]]
    """Names lower-cased, order and duplicates kept."""
    keep_alive: bool
    """The client allows the connection to be reused (RFC 9112 §9.3)."""
    expect_continue: bool
    """``Expect: 100-continue`` on HTTP/1.1: answer 100 before reading the body."""
    upgrade: bool
    """A WebSocket opening handshake candidate (``Upgrade: websocket``)."""
    path: bytes | None = None
    """The target's path, percent-encoded as sent (ASGI ``raw_path``); None: split ``target``
    with :func:`~asgisock.http11.target.split_target`."""
    query: bytes = b""
    """The target's query, without the ``?``, when ``path`` is set."""
    forwarded: bool = False
    """The head has a field a proxy writes about the client (``Forwarded``, ``X-Forwarded-For``,
    ``-Proto``, ``-Host``, ``-Port``): found while parsing, so that a request without one costs
    nothing more behind a trusted proxy."""

    def __repr__(self) -> str:
        return f"<Request {self.method.decode()} {self.target!r} HTTP/{self.http_version}>"


new_request: Final = tuple.__new__
"""``new_request(Request, (method, target, ...))``: a :class:`Request` without the Python-level
``__new__`` of a named tuple."""


class EndOfMessage:
    """The request's body is complete."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "END_OF_MESSAGE"


END_OF_MESSAGE: Final = EndOfMessage()


class RequestError:
    """The stream is not valid HTTP/1.1: answer ``status`` and close the connection."""

    __slots__ = ("reason", "status")

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason

    def __repr__(self) -> str:
        return f"<RequestError {self.status} {self.reason!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RequestError) and (other.status, other.reason) == (self.status, self.reason)

    def __hash__(self) -> int:
        return hash((self.status, self.reason))


Event = Request | bytes | EndOfMessage | RequestError
