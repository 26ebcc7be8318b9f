"""Client and server addresses for the ASGI scope."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence


def client_address(transport: asyncio.BaseTransport) -> tuple[str, int] | None:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple | list) and len(peer) >= 2:
        return str(peer[0]), int(peer[1])
    return None


def server_address(transport: asyncio.BaseTransport) -> tuple[str, int | None] | None:
    sock: socket.socket | None = transport.get_extra_info("socket")
    if sock is not None and sock.family == getattr(socket, "AF_UNIX", None):
        return str(sock.getsockname()), None
    name = transport.get_extra_info("sockname")
    if isinstance(name, tuple | list) and len(name) >= 2:
        return str(name[0]), int(name[1])
    if isinstance(name, str):
        return name, None
    return None


def listening_address(sockets: Sequence[socket.socket]) -> tuple[str, int | None] | None:
    """The server address of every connection accepted on ``sockets``, when it is the same for
    all: one socket bound to one IP address, or to a Unix path. None where it varies (a wildcard
    address, several sockets) and each connection's own must be asked for (``getsockname()``, a
    system call per connection that this saves)."""
    if len(sockets) != 1:
        return None
    sock = sockets[0]
    name = sock.getsockname()
    if sock.family == getattr(socket, "AF_UNIX", None):
        return str(name), None
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(name, tuple):
        return None
    try:
        if ipaddress.ip_address(name[0]).is_unspecified:
            return None
    except ValueError:
        return None
    return str(name[0]), int(name[1])


def format_address(address: tuple[str, int | None] | None) -> str:
    if address is None:
        return "-"
    return f"{address[0]}:{address[1]}" if address[1] is not None else address[0]
