"""Client and server addresses for the ASGI scope."""

from __future__ import annotations

import asyncio
import socket


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


def format_address(address: tuple[str, int | None] | None) -> str:
    if address is None:
        return "-"
    return f"{address[0]}:{address[1]}" if address[1] is not None else address[0]
