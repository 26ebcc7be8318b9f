"""Accepting connections that need work before HTTP starts: a PROXY protocol header, TLS.

A plain listener is served by the event loop's own accept loop. With ``--proxy-protocol`` or
TLS the server accepts each connection itself, so that before any protocol is built:

- the PROXY header is read exactly (peeked, then consumed to its last byte, so whatever
  follows, HTTP or a TLS ClientHello, is left for what comes next), and only from a trusted peer;
- a client that speaks plain HTTP to the TLS port gets a ``400`` that says so, not a silent close;
- the handshake runs under the same deadline as a request head (``--timeout-keep-alive``),
  and one that fails is logged once at debug and never reaches the app;
- each connection gets the certificate that is current when it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Coroutine
from typing import Any, Final

from asgisock.logging import error_logger
from asgisock.proxy.forwarded import TrustedProxies
from asgisock.proxy.protocol import (
    V2_HEADER,
    V2_MAX_LENGTH,
    ProxyHeader,
    ProxyProtocolError,
    ProxyProtocolParser,
)
from asgisock.transport.addresses import format_address
from asgisock.transport.tls import Certificates

__all__ = ["Acceptor"]

_TLS_HANDSHAKE: Final = 0x16
"""The content type of a TLS record carrying a handshake message: every ClientHello starts so."""
_PLAIN_HTTP_ANSWER: Final = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: 46\r\n\r\nThis port speaks HTTPS: use an https:// URL.\r\n"
)
TLS_SHUTDOWN_TIMEOUT: Final = 2.0
"""Seconds a closing TLS connection waits for the peer's close_notify before the socket closes
(asyncio's default, 30 s, lets a client that never answers, as browsers' idle keep-alive
connections do not, hold a graceful shutdown that long)."""
_ACCEPT_RETRY: Final = 0.5
"""Seconds to wait before accepting again after running out of file descriptors."""

ProtocolFactory = Callable[[ProxyHeader | None], asyncio.Protocol]


class Acceptor:
    """Accept loops over listening sockets; quacks like :class:`asyncio.Server` for the server."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sockets: list[socket.socket], factory: ProtocolFactory, *,
                 certificates: Certificates | None, proxy_protocol: bool, trusted: TrustedProxies,
                 timeout: float) -> None:
        self.loop = loop
        self.sockets = sockets
        self.factory = factory
        self.certificates = certificates
        self.proxy_protocol = proxy_protocol
        self.trusted = trusted
        self.timeout = max(timeout, 0.001)
        self.tasks: set[asyncio.Task[None]] = set()
        """The connections not yet handed to their protocol."""
        self.accepting: set[asyncio.Task[None]] = set()
        """The accept loops."""
        for sock in sockets:
            sock.setblocking(False)
            self._spawn(self._accept(sock), self.accepting)

    @property
    def opening(self) -> bool:
        """Some connections are still in their PROXY header or TLS handshake."""
        return bool(self.tasks)

    def close(self) -> None:
        """Stop accepting; the connections in their handshake finish it (each is bounded by
        the handshake's deadline), or are dropped by :meth:`abort`."""
        for sock in self.sockets:
            self.loop.remove_reader(sock.fileno())  # before the close frees the descriptor
        for task in list(self.accepting):
            task.cancel()
        for sock in self.sockets:
            sock.close()

    def abort(self) -> None:
        """Drop the connections whose handshake is not done."""
        for task in list(self.tasks):
            task.cancel()

    def _spawn(self, coroutine: Coroutine[Any, Any, None], tasks: set[asyncio.Task[None]] | None = None) -> None:
        task = self.loop.create_task(coroutine)
        group = self.tasks if tasks is None else tasks
        group.add(task)
        task.add_done_callback(group.discard)

    async def _accept(self, sock: socket.socket) -> None:
        while True:
            # accept() itself is never awaited: a loop cancelled by close() is then always
            # waiting for readability, and a connection it accepted is never lost on the way.
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                await self._readable(sock)
                continue
            except ConnectionAbortedError:
                continue
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: let some connections close first
                error_logger.error("Cannot accept a connection: %s", exc)
                await asyncio.sleep(_ACCEPT_RETRY)
                continue
            conn.setblocking(False)
            self._spawn(self._open(conn))

    async def _open(self, conn: socket.socket) -> None:
        peer = _peer(conn)
        try:
            async with asyncio.timeout(self.timeout):
                await self._handshake(conn, peer)
        except TimeoutError:
            error_logger.debug("%s - Connection not ready within %.1f s: closing", format_address(peer), self.timeout)
            conn.close()
        except ProxyProtocolError as exc:
            error_logger.info("%s - PROXY protocol: %s: closing", format_address(peer), exc)
            conn.close()
        except (OSError, EOFError) as exc:  # ssl.SSLError is an OSError
            error_logger.debug("%s - %s: closing", format_address(peer), _describe(exc))
            conn.close()
        except asyncio.CancelledError:
            conn.close()
            raise

    async def _handshake(self, conn: socket.socket, peer: tuple[str, int] | None) -> None:
        origin = None
        if self.proxy_protocol:
            if not self.trusted.trusts(None if peer is None else peer[0]):
                raise ProxyProtocolError("the peer is not in --forwarded-allow-ips")
            origin = await self._proxy_header(conn)
        loop = self.loop

        def factory() -> asyncio.Protocol:
            return self.factory(origin)

        if self.certificates is None:
            await loop.connect_accepted_socket(factory, conn)
            return
        first = await self._peek(conn, 1)
        if first[0] != _TLS_HANDSHAKE:
            plain_http = first[:1].isalpha()
            _answer_and_close(conn, _PLAIN_HTTP_ANSWER if plain_http else b"")
            raise EOFError("plain HTTP sent to the TLS port" if plain_http else "neither TLS nor HTTP sent to the TLS port")
        await loop.connect_accepted_socket(factory, conn, ssl=self.certificates.current,
                                           ssl_handshake_timeout=self.timeout,
                                           ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT)

    async def _peek(self, conn: socket.socket, size: int) -> bytes:
        """At least one byte of what the peer sent, left unread; EOFError if it closed."""
        while True:
            try:
                data = conn.recv(size, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):
                await self._readable(conn)
                continue
            if not data:
                raise EOFError("closed before sending anything")
            return data

    async def _readable(self, conn: socket.socket) -> None:
        waiter = self.loop.create_future()
        fd = conn.fileno()
        self.loop.add_reader(fd, _wake, waiter)
        try:
            await waiter
        finally:
            self.loop.remove_reader(fd)

    async def _proxy_header(self, conn: socket.socket) -> ProxyHeader:
        """Consume the PROXY header and not one byte more.

        What the peer has sent is peeked; while it holds no whole header it is all header (no
        CRLF yet in version 1, less than the stated length in version 2) and is consumed; once
        the header is whole, exactly its bytes are consumed.
        """
        taken = b""
        while True:
            seen = await self._peek(conn, V2_HEADER + V2_MAX_LENGTH)
            parser = ProxyProtocolParser()
            header = parser.receive_data(taken + seen)
            if header is None:
                taken += _recv_exactly(conn, len(seen))
                continue
            _recv_exactly(conn, len(taken) + len(seen) - len(parser.leftover) - len(taken))
            return header


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    """Bytes already peeked: they are in the socket's buffer, so a read returns them at once."""
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError("closed in the PROXY header")
        data += chunk
    return data


def _answer_and_close(conn: socket.socket, answer: bytes) -> None:
    """Send a short answer and end the connection so that it arrives: what the client sent is
    read first (closing with unread input resets the connection, and the reset can overtake
    the answer)."""
    with contextlib.suppress(OSError):
        if answer:
            conn.send(answer)
        for _ in range(16):
            if not conn.recv(65536):
                break
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_WR)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _peer(conn: socket.socket) -> tuple[str, int] | None:
    try:
        name = conn.getpeername()
    except OSError:
        return None
    return (str(name[0]), int(name[1])) if isinstance(name, tuple) else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or exc})"
    if isinstance(exc, EOFError):
        return str(exc)
    return f"connection failed before HTTP ({exc})"
