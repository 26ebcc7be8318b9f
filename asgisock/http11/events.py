"""Events that :class:`~asgisock.http11.connection.HTTP11Connection` produces.

A request's body arrives as plain ``bytes`` events between its :class:`Request` and
:data:`END_OF_MESSAGE`; that keeps the hot path free of wrapper objects.
"""

from __future__ import annotations

from typing import Final


class Request:
    """A request head, complete and validated."""

    __slots__ = ("expect_continue", "headers", "http_version", "keep_alive", "method", "target", "upgrade")

    def __init__(
        self,
        method: bytes,
        target: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        expect_continue: bool,
        upgrade: bool,
    ) -> None:
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        """Names lower-cased, order and duplicates kept."""
        self.keep_alive = keep_alive
        """The client allows the connection to be reused (RFC 9112 §9.3)."""
        self.expect_continue = expect_continue
        """``Expect: 100-continue`` on HTTP/1.1: answer 100 before reading the body."""
        self.upgrade = upgrade
        """A WebSocket opening handshake candidate (``Upgrade: websocket``)."""

    def __repr__(self) -> str:
        return f"<Request {self.method.decode()} {self.target!r} HTTP/{self.http_version}>"


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
