"""Tests of the scope's client and server addresses, read from real transports."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from asgisock.server import loop_factory
from asgisock.transport.addresses import client_address, format_address, server_address


def transports_of(loop_name: str, start: Any, connect: Any) -> tuple[Any, Any]:
    """The server side's transport, and the client socket's own name."""

    async def main() -> tuple[Any, Any]:
        accepted: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # The writer itself, kept until the end: from 3.13 a StreamWriter collected with its
            # transport open warns, and the callback's own reference ends when it returns.
            accepted.set_result(writer)

        server = await start(on_connect)
        async with server:
            _, writer = await connect(server)
            accepted_writer = await accepted
            transport = accepted_writer.transport
            result = (client_address(transport), server_address(transport)), writer.get_extra_info("sockname")
            writer.close()
            accepted_writer.close()
            return result

    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as runner:
        return runner.run(main())


def test_tcp(loop: str) -> None:
    (client, server), client_name = transports_of(
        loop, lambda cb: asyncio.start_server(cb, "127.0.0.1", 0),
        lambda srv: asyncio.open_connection(*srv.sockets[0].getsockname()),
    )
    assert client == ("127.0.0.1", client_name[1])
    assert server is not None and server[0] == "127.0.0.1" and isinstance(server[1], int)


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_tcp_ipv6(loop: str) -> None:
    try:
        (client, server), _ = transports_of(
            loop, lambda cb: asyncio.start_server(cb, "::1", 0),
            lambda srv: asyncio.open_connection(*srv.sockets[0].getsockname()[:2]),
        )
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    assert client is not None and client[0] == "::1"
    assert server is not None and server[0] == "::1"


def test_unix_socket(loop: str, tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    (client, server), _ = transports_of(
        loop, lambda cb: asyncio.start_unix_server(cb, path), lambda srv: asyncio.open_unix_connection(path),
    )
    assert client is None  # ASGI: "client" is None when the peer has no address
    assert server == (path, None)


@pytest.mark.parametrize(("address", "text"), [
    (None, "-"), (("127.0.0.1", 80), "127.0.0.1:80"), (("/run/s.sock", None), "/run/s.sock"),
])
def test_format_address(address: tuple[str, int | None] | None, text: str) -> None:
    assert format_address(address) == text
