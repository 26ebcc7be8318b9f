"""A raw-socket HTTP/1.1 client that sends a corpus case and reports what the server did.

It reads responses byte-exactly (Content-Length, chunked or close-delimited bodies), so it sees a
response the server should not have sent, and tells a closed connection from an open one.
"""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass, field

PROBE = b"GET /__probe HTTP/1.1\r\nHost: probe.example\r\n\r\n"
"""A request the test app answers without recording it."""


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n == name), None)


@dataclass
class Outcome:
    """What a server did with one case."""

    statuses: list[int] = field(default_factory=list)
    """Final responses in order; 1xx responses are left out."""
    closed: bool = False
    """The server closed the connection (or reset it)."""
    reused: bool = False
    """The connection stayed open and answered another request."""
    garbage: bytes = b""
    """Bytes that were not a well-formed response."""

    def describe(self) -> str:
        if self.garbage:
            return "garbage"
        states = "closed" if self.closed else "open" if self.reused else "stalled"
        return " ".join(str(s) for s in self.statuses) + (" " if self.statuses else "") + states


class ResponseReader:
    """Reads responses off a socket until a deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buffer = b""
        self.eof = False

    def _fill(self) -> bool:
        """Read more; False at EOF. Raises TimeoutError at the deadline."""
        if self.eof:
            return False
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)  # TimeoutError (socket.timeout) goes up to the caller
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def _until(self, marker: bytes) -> bytes | None:
        while marker not in self.buffer:
            if not self._fill():
                return None
        head, self.buffer = self.buffer.split(marker, 1)
        return head

    def _exactly(self, size: int) -> bytes | None:
        while len(self.buffer) < size:
            if not self._fill():
                return None
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def response(self, *, interim: list[int] | None = None) -> Response | None:
        """The next final response; None at EOF. Raises ValueError for malformed bytes."""
        while True:
            if not self.buffer and not self._fill():
                return None
            head = self._until(b"\r\n\r\n")
            if head is None:
                raise ValueError("truncated response head")
            lines = head.split(b"\r\n")
            version, status_text = lines[0].split(b" ", 2)[:2]
            if not version.startswith(b"HTTP/1.") or not status_text.isdigit():
                raise ValueError(f"not a status line: {lines[0]!r}")
            status = int(status_text)
            headers = [(n.strip().lower(), v.strip()) for n, _, v in (line.partition(b":") for line in lines[1:])]
            if 100 <= status < 200:
                if interim is not None:
                    interim.append(status)
                continue
            return Response(status, headers, self._body(headers, status))

    def _body(self, headers: list[tuple[bytes, bytes]], status: int) -> bytes:
        names = dict(headers)
        if status in (204, 304):
            return b""
        if b"chunked" in names.get(b"transfer-encoding", b"").lower():
            return self._chunked_body()
        length = names.get(b"content-length")
        if length is not None:
            body = self._exactly(int(length))
            if body is None:
                raise ValueError("truncated response body")
            return body
        while self._fill():
            pass
        body, self.buffer = self.buffer, b""
        return body

    def _chunked_body(self) -> bytes:
        parts: list[bytes] = []
        while True:
            line = self._until(b"\r\n")
            if line is None:
                raise ValueError("truncated chunked body")
            size = int(line.split(b";")[0], 16)
            if size == 0:
                if self._until(b"\r\n") is None:
                    raise ValueError("truncated chunked body")
                return b"".join(parts)
            data = self._exactly(size + 2)
            if data is None:
                raise ValueError("truncated chunked body")
            parts.append(data[:-2])

    def at_eof(self) -> bool:
        """Whether the server closes without sending anything more."""
        return not self.buffer and not self._fill()


def connect(address: tuple[str, int], timeout: float) -> socket.socket:
    return socket.create_connection(address, timeout=timeout)


def send(sock: socket.socket, data: bytes) -> None:
    """Send everything the server takes; it may well close before reading it all."""
    with contextlib.suppress(OSError):
        sock.sendall(data)


def expect(address: tuple[str, int], data: bytes, *, responses: int, close: bool, timeout: float) -> Outcome:
    """Send ``data``; read ``responses`` responses, then check the connection is closed (``close``)
    or still serves a request. Waits on data only: the deadline matters only when a server fails."""
    outcome = Outcome()
    with connect(address, timeout) as sock:
        reader = ResponseReader(sock, time.monotonic() + timeout)
        send(sock, data)
        try:
            for _ in range(responses):
                response = reader.response()
                if response is None:
                    outcome.closed = True
                    return outcome
                outcome.statuses.append(response.status)
            if close:
                while not reader.at_eof():
                    response = reader.response()
                    if response is None:
                        break
                    outcome.statuses.append(response.status)
                outcome.closed = True
            else:
                send(sock, PROBE)
                response = reader.response()
                outcome.reused = response is not None and response.status == 200
                outcome.closed = response is None
        except ValueError:
            outcome.garbage = reader.buffer or b"?"
        except TimeoutError:
            pass
    return outcome


def observe(address: tuple[str, int], data: bytes, *, idle: float, timeout: float) -> Outcome:
    """Send ``data`` and take whatever comes until the server closes or stays silent for ``idle``
    seconds; then try another request on the same connection. For servers whose behaviour is
    not known in advance (the comparison with other servers), so it does wait on a clock."""
    outcome = Outcome()
    with connect(address, timeout) as sock:
        send(sock, data)
        reader = ResponseReader(sock, time.monotonic() + timeout)
        try:
            while True:
                reader.deadline = min(time.monotonic() + idle, time.monotonic() + timeout)
                response = reader.response()
                if response is None:
                    outcome.closed = True
                    return outcome
                outcome.statuses.append(response.status)
        except TimeoutError:
            pass
        except ValueError:
            outcome.garbage = reader.buffer or b"?"
            return outcome
        if reader.buffer:
            outcome.garbage = reader.buffer
            return outcome
        send(sock, PROBE)
        reader.deadline = time.monotonic() + idle
        try:
            response = reader.response()
        except (TimeoutError, ValueError):
            return outcome
        outcome.reused = response is not None and response.status == 200
        outcome.closed = response is None
    return outcome
