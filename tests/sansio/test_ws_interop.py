"""Interoperability with an independent implementation: the websockets library's client.

Both sides are sans-I/O, so the two talk through plain bytes handed back and
forth: the client's opening handshake, our 101 answer, then frames. The
client checks everything a real peer would: ``Sec-WebSocket-Accept``, the
negotiated extension parameters, masking, RSV bits, compression, closing.
"""

from __future__ import annotations

import os

import pytest
from websockets.client import ClientProtocol
from websockets.extensions.base import ClientExtensionFactory
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State as ClientState
from websockets.uri import parse_uri

from asgisock.ws.connection import BytesMessage, Closed, TextMessage, WebSocketConnection
from asgisock.ws.deflate import DeflateSettings, negotiate
from asgisock.ws.handshake import response_headers, validate_handshake


def parse_request(data: bytes) -> tuple[bytes, str, list[tuple[bytes, bytes]]]:
    head, _, _ = data.partition(b"\r\n\r\n")
    request_line, *lines = head.split(b"\r\n")
    method, _, version = request_line.split(b" ")
    headers = []
    for line in lines:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    return method, version.decode().removeprefix("HTTP/"), headers


def open_connection(
    extensions: list[ClientExtensionFactory], settings: DeflateSettings
) -> tuple[ClientProtocol, WebSocketConnection, str | None]:
    client = ClientProtocol(parse_uri("ws://localhost/chat"), extensions=extensions)
    client.send_request(client.connect())
    method, version, headers = parse_request(b"".join(client.data_to_send()))
    handshake = validate_handshake(method, version, headers)
    negotiated = negotiate(handshake.extensions, settings)
    extension, deflate = negotiated if negotiated is not None else (None, None)
    lines = [b"HTTP/1.1 101 Switching Protocols"]
    for name, value in response_headers(handshake, None, extension):
        lines.append(name + b": " + value)
    client.receive_data(b"\r\n".join(lines) + b"\r\n\r\n")
    (response,) = client.events_received()
    assert isinstance(response, Response)
    assert client.handshake_exc is None, client.handshake_exc
    assert client.state is ClientState.OPEN
    return client, WebSocketConnection(deflate=deflate), extension


def to_server(client: ClientProtocol, server: WebSocketConnection) -> None:
    for data in client.data_to_send():
        server.receive_data(data)


def to_client(server: WebSocketConnection, client: ClientProtocol) -> list[Frame]:
    client.receive_data(server.data_to_send())
    events = client.events_received()
    assert all(isinstance(event, Frame) for event in events)
    return events  # type: ignore[return-value]


MESSAGES: list[str | bytes] = [
    "",
    "hello",
    "κόσμε " * 500,
    b"",
    os.urandom(3000),
    b"\x00" * 70000,
    '{"json": [1, 2, 3], "text": "repeated repeated repeated"}' * 100,
]

DEFLATE_OFFERS: list[ClientPerMessageDeflateFactory] = [
    ClientPerMessageDeflateFactory(),
    ClientPerMessageDeflateFactory(client_max_window_bits=None),
    ClientPerMessageDeflateFactory(server_no_context_takeover=True),
    ClientPerMessageDeflateFactory(client_no_context_takeover=True),
    ClientPerMessageDeflateFactory(server_max_window_bits=10, client_max_window_bits=9),
    ClientPerMessageDeflateFactory(
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        server_max_window_bits=12,
    ),
]


@pytest.mark.parametrize("offer", [None, *DEFLATE_OFFERS])
@pytest.mark.parametrize("server_no_context", [False, True])
def test_messages_both_ways(
    offer: ClientPerMessageDeflateFactory | None, server_no_context: bool
) -> None:
    settings = DeflateSettings(server_no_context_takeover=server_no_context)
    client, server, extension = open_connection([] if offer is None else [offer], settings)
    assert (extension is None) == (offer is None)
    for message in MESSAGES:
        if isinstance(message, str):
            client.send_text(message.encode())
        else:
            client.send_binary(message)
        to_server(client, server)
        expected = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        assert server.events_received() == [expected]
        # Echo it back, the way the Autobahn TestSuite's echo app does.
        if isinstance(message, str):
            server.send_text(message)
        else:
            server.send_bytes(message)
        (frame,) = to_client(server, client)
        assert frame.opcode is (Opcode.TEXT if isinstance(message, str) else Opcode.BINARY)
        assert frame.data == (message.encode() if isinstance(message, str) else message)


def test_fragmented_messages_and_pings() -> None:
    client, server, _ = open_connection([ClientPerMessageDeflateFactory()], DeflateSettings())
    client.send_text(b"frag", fin=False)
    client.send_ping(b"ping")
    client.send_continuation(b"mented", fin=True)
    to_server(client, server)
    events = server.events_received()
    assert events[-1] == TextMessage("fragmented")
    (pong,) = to_client(server, client)
    assert pong.opcode is Opcode.PONG
    assert pong.data == b"ping"


def test_client_initiated_close() -> None:
    client, server, _ = open_connection([], DeflateSettings())
    client.send_close(1001, "bye")
    to_server(client, server)
    assert server.events_received() == [Closed(1001, "bye")]
    assert server.close_transport_now()
    to_client(server, client)
    assert client.state is ClientState.CLOSING  # closed once TCP closes
    assert client.close_rcvd is not None
    assert client.close_rcvd.code == 1001


def test_server_initiated_close() -> None:
    client, server, _ = open_connection([], DeflateSettings())
    server.send_close(4000, "done")
    to_client(server, client)
    assert client.close_rcvd is not None
    assert (client.close_rcvd.code, client.close_rcvd.reason) == (4000, "done")
    to_server(client, server)
    assert server.events_received() == [Closed(4000, "done")]
    assert server.close_transport_now()
