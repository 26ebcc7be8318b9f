"""Tests of the sans-I/O WebSocket connection: bytes in, events and bytes out."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgisock.ws.connection import (
    SEPARATE_PAYLOAD,
    BytesMessage,
    Closed,
    ConnectionClosedError,
    Event,
    PingReceived,
    PongReceived,
    State,
    TextMessage,
    WebSocketConnection,
)
from asgisock.ws.deflate import PerMessageDeflate
from asgisock.ws.frames import CloseCode, Opcode, encode_close
from asgisock.ws.mask import apply_mask

KEY = b"\x9a\x33\x0f\xe1"

TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION
CLOSE, PING, PONG = Opcode.CLOSE, Opcode.PING, Opcode.PONG


def client_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    key: bytes = KEY,
    length: int | None = None,
) -> bytes:
    """A masked client frame; ``length`` overrides the announced payload length."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    announced = len(payload) if length is None else length
    if announced < 126:
        header = bytes((first, 0x80 | announced))
    elif announced < 65536:
        header = struct.pack("!BBH", first, 0xFE, announced)
    else:
        header = struct.pack("!BBQ", first, 0xFF, announced)
    return header + key + apply_mask(payload, key)


@dataclass
class Frame:
    opcode: int
    payload: bytes
    fin: bool = True
    rsv1: bool = False


def server_frames(data: bytes) -> list[Frame]:
    """Parse what the server wrote; its frames must be unmasked (RFC 6455 §5.1)."""
    frames, pos = [], 0
    while pos < len(data):
        first, second = data[pos], data[pos + 1]
        assert not second & 0x80, "server frames must not be masked"
        length, pos = second & 0x7F, pos + 2
        if length == 126:
            length, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        elif length == 127:
            length, pos = int.from_bytes(data[pos : pos + 8], "big"), pos + 8
        payload = data[pos : pos + length]
        assert len(payload) == length
        frames.append(Frame(first & 0x0F, payload, bool(first & 0x80), bool(first & 0x40)))
        pos += length
    return frames


def close_frame(code: int, reason: str = "") -> Frame:
    return Frame(CLOSE, encode_close(code, reason))


def state_of(conn: WebSocketConnection) -> State:
    """Read the state through a call, so that type checkers do not narrow it."""
    return conn.state


def feed(data: bytes, conn: WebSocketConnection | None = None) -> WebSocketConnection:
    conn = conn or WebSocketConnection()
    conn.receive_data(data)
    return conn


def assert_failed(conn: WebSocketConnection, code: int) -> None:
    """§7.1.7: a close frame with ``code`` went out, Closed was reported, TCP closes now."""
    events = conn.events_received()
    assert isinstance(events[-1], Closed)
    assert events[-1].code == code
    frames = server_frames(conn.data_to_send())
    assert frames[-1].opcode == CLOSE
    assert frames[-1].payload[:2] == code.to_bytes(2, "big")
    assert conn.state is State.CLOSED
    assert conn.close_sent
    assert conn.close_transport_now()


# -- Messages ------------------------------------------------------------------------------


def test_text_message() -> None:
    conn = feed(client_frame(TEXT, "héllo wörld".encode()))
    assert conn.events_received() == [TextMessage("héllo wörld")]
    assert conn.events_received() == []
    assert conn.data_to_send() == b""
    assert not conn.close_transport_now()


def test_binary_message() -> None:
    conn = feed(client_frame(BINARY, b"\x00\xff" * 100))
    assert conn.events_received() == [BytesMessage(b"\x00\xff" * 100)]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 1023, 1024, 65535, 65536, 200_000])
def test_message_sizes(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    conn = feed(client_frame(BINARY, payload) + client_frame(TEXT, b"a" * size))
    assert conn.events_received() == [BytesMessage(payload), TextMessage("a" * size)]


def test_several_messages_in_one_read() -> None:
    data = client_frame(TEXT, b"one") + client_frame(BINARY, b"two") + client_frame(TEXT, b"")
    conn = feed(data)
    assert conn.events_received() == [TextMessage("one"), BytesMessage(b"two"), TextMessage("")]


def test_fragmented_text() -> None:
    # "κόσμε" split inside multi-byte characters at each fragment boundary.
    data = "κόσμε".encode()
    conn = feed(
        client_frame(TEXT, data[:3], fin=False)
        + client_frame(CONT, data[3:7], fin=False)
        + client_frame(CONT, b"", fin=False)
        + client_frame(CONT, data[7:])
    )
    assert conn.events_received() == [TextMessage("κόσμε")]


def test_fragmented_binary() -> None:
    conn = feed(client_frame(BINARY, b"ab", fin=False))
    assert conn.events_received() == []
    conn.receive_data(client_frame(CONT, b"cd"))
    assert conn.events_received() == [BytesMessage(b"abcd")]


def test_frame_split_in_reads() -> None:
    conn = WebSocketConnection()
    frame = client_frame(BINARY, b"x" * 1000)
    for start in range(0, len(frame), 7):
        assert conn.events_received() == []
        conn.receive_data(frame[start : start + 7])
    assert conn.events_received() == [BytesMessage(b"x" * 1000)]


# -- Control frames ------------------------------------------------------------------------


def test_ping_gets_pong() -> None:
    conn = feed(client_frame(PING, b"are you there"))
    assert conn.events_received() == [PingReceived(b"are you there")]
    # §5.5.3: the pong "MUST have identical 'Application data'".
    assert server_frames(conn.data_to_send()) == [Frame(PONG, b"are you there")]


def test_ping_between_fragments() -> None:
    # §5.4: "Control frames MAY be injected in the middle of a fragmented message."
    conn = feed(
        client_frame(TEXT, b"frag", fin=False)
        + client_frame(PING, b"p")
        + client_frame(CONT, b"ment")
    )
    assert conn.events_received() == [PingReceived(b"p"), TextMessage("fragment")]
    assert server_frames(conn.data_to_send()) == [Frame(PONG, b"p")]


def test_ping_within_a_frame_split_in_reads() -> None:
    conn = feed(client_frame(TEXT, b"abc", fin=False)[:-1])
    conn.receive_data(client_frame(TEXT, b"abc", fin=False)[-1:] + client_frame(PING, b"125"))
    assert conn.events_received() == [PingReceived(b"125")]


def test_ping_max_payload() -> None:
    conn = feed(client_frame(PING, b"\xfe" * 125))
    assert server_frames(conn.data_to_send()) == [Frame(PONG, b"\xfe" * 125)]


def test_pong_reported() -> None:
    conn = feed(client_frame(PONG, b"unsolicited") + client_frame(PONG))
    assert conn.events_received() == [PongReceived(b"unsolicited"), PongReceived(b"")]
    assert conn.data_to_send() == b""


# -- Protocol violations (§7.1.7, code 1002) -----------------------------------------------


def test_unmasked_frame() -> None:
    assert_failed(feed(b"\x81\x05Hello"), CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("rsv", [1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("opcode", [TEXT, BINARY, PING, PONG, CLOSE])
def test_reserved_bits(rsv: int, opcode: Opcode) -> None:
    # §5.2: RSV1-3 "MUST be 0 unless an extension is negotiated".
    assert_failed(feed(client_frame(opcode, b"", rsv=rsv)), CloseCode.PROTOCOL_ERROR)


def test_reserved_bits_on_continuation() -> None:
    conn = feed(client_frame(TEXT, b"a", fin=False) + client_frame(CONT, b"b", rsv=4))
    assert_failed(conn, CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_reserved_opcodes(opcode: int) -> None:
    assert_failed(feed(client_frame(opcode, b"x")), CloseCode.PROTOCOL_ERROR)


def test_reserved_opcode_fails_from_the_first_bytes() -> None:
    assert_failed(feed(client_frame(5, b"x" * 300)[:2]), CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_control_frame_too_long(opcode: Opcode) -> None:
    # §5.5: "All control frames MUST have a payload length of 125 bytes or less".
    frame = client_frame(opcode, b"\x03\xe8" + b"x" * 124)
    assert_failed(feed(frame[:4]), CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_fragmented_control_frame(opcode: Opcode) -> None:
    # §5.5: control frames "MUST NOT be fragmented".
    assert_failed(feed(client_frame(opcode, b"", fin=False)), CloseCode.PROTOCOL_ERROR)


def test_continuation_without_message() -> None:
    assert_failed(feed(client_frame(CONT, b"x")), CloseCode.PROTOCOL_ERROR)


def test_continuation_after_finished_message() -> None:
    conn = feed(client_frame(TEXT, b"done"))
    assert conn.events_received() == [TextMessage("done")]
    conn.receive_data(client_frame(CONT, b"x"))
    assert_failed(conn, CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_new_message_inside_fragmented_message(opcode: Opcode) -> None:
    # §5.4: fragments of messages "MUST NOT be interleaved".
    conn = feed(client_frame(TEXT, b"a", fin=False) + client_frame(opcode, b"b"))
    assert_failed(conn, CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize(
    "header",
    [
        b"\x82\xfe\x00\x7d",  # 16-bit length 125
        b"\x82\xff" + (65535).to_bytes(8, "big"),  # 64-bit length 65535
        b"\x82\xff" + (2**63).to_bytes(8, "big"),  # most significant bit set
    ],
)
def test_bad_lengths(header: bytes) -> None:
    assert_failed(feed(header + KEY), CloseCode.PROTOCOL_ERROR)


# -- UTF-8 (§8.1, code 1007) ---------------------------------------------------------------

# Autobahn TestSuite 6.4.1: valid, then an invalid code point (U+110000), then valid.
PART1 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
PART2 = b"\xf4\x90\x80\x80"
PART3 = b"\x65\x64\x69\x74\x65\x64"


@pytest.mark.parametrize(
    "payload",
    [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"ab\xf4\x90\x80\x80", PART1 + PART2 + PART3],
)
def test_invalid_utf8(payload: bytes) -> None:
    assert_failed(feed(client_frame(TEXT, payload)), CloseCode.INVALID_DATA)


def test_invalid_utf8_fragmented() -> None:
    conn = feed(client_frame(TEXT, b"\xce", fin=False) + client_frame(CONT, b"\xce\xba"))
    assert_failed(conn, CloseCode.INVALID_DATA)


def test_utf8_fails_fast_across_fragments() -> None:
    # Autobahn 6.4.1/6.4.2: fail on the fragment that makes the text invalid,
    # before the message is complete.
    conn = feed(client_frame(TEXT, PART1 + PART2[:1], fin=False))
    assert conn.events_received() == []
    conn.receive_data(client_frame(CONT, PART2[1:2], fin=False))
    assert_failed(conn, CloseCode.INVALID_DATA)


def test_utf8_fails_fast_within_a_frame() -> None:
    # Autobahn 6.4.3/6.4.4: one frame, the invalid byte arrives in a later read;
    # the connection fails then, without waiting for the rest of the frame.
    frame = client_frame(TEXT, PART1 + PART2 + PART3)
    split = 6 + len(PART1)
    conn = feed(frame[:split])
    assert conn.events_received() == []
    conn.receive_data(frame[split : split + 2])
    assert_failed(conn, CloseCode.INVALID_DATA)
    conn.receive_data(frame[split + 2 :])
    assert conn.events_received() == []
    assert conn.data_to_send() == b""


def test_utf8_surrogate_fails_on_second_byte() -> None:
    frame = client_frame(TEXT, b"ab\xed\xa0\x80cd")
    conn = feed(frame[: 6 + 4])
    assert_failed(conn, CloseCode.INVALID_DATA)


def test_utf8_incomplete_at_end_of_message() -> None:
    conn = feed(client_frame(TEXT, b"ok\xe2\x82", fin=False))
    assert conn.events_received() == []
    conn.receive_data(client_frame(CONT, b""))
    assert_failed(conn, CloseCode.INVALID_DATA)


def test_utf8_split_in_reads_is_valid() -> None:
    payload = "€𝄞κόσμε".encode() * 10
    frame = client_frame(TEXT, payload)
    conn = WebSocketConnection()
    for byte in frame:
        conn.receive_data(bytes([byte]))
    assert conn.events_received() == [TextMessage("€𝄞κόσμε" * 10)]


# -- Closing handshake ---------------------------------------------------------------------


def test_peer_close_is_echoed() -> None:
    conn = feed(client_frame(CLOSE, encode_close(1001, "bye")))
    assert conn.events_received() == [Closed(1001, "bye")]
    # §5.5.1: the endpoint "typically echos the status code it received".
    assert server_frames(conn.data_to_send()) == [close_frame(1001)]
    assert conn.close_received
    assert conn.close_sent
    assert conn.state is State.CLOSED
    # §7.1.1: the server closes the TCP connection first.
    assert conn.close_transport_now()


def test_peer_empty_close() -> None:
    conn = feed(client_frame(CLOSE))
    assert conn.events_received() == [Closed(CloseCode.NO_STATUS_RCVD, "")]
    assert server_frames(conn.data_to_send()) == [Frame(CLOSE, b"")]
    assert conn.close_transport_now()


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999])
def test_valid_close_codes_echoed(code: int) -> None:
    conn = feed(client_frame(CLOSE, encode_close(code)))
    assert conn.events_received() == [Closed(code, "")]
    assert server_frames(conn.data_to_send()) == [close_frame(code)]


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
def test_invalid_close_codes(code: int) -> None:
    assert_failed(feed(client_frame(CLOSE, code.to_bytes(2, "big"))), CloseCode.PROTOCOL_ERROR)


def test_close_payload_of_one_byte() -> None:
    assert_failed(feed(client_frame(CLOSE, b"\x03")), CloseCode.PROTOCOL_ERROR)


def test_close_reason_invalid_utf8() -> None:
    payload = b"\x03\xe8" + PART1 + b"\xed\xa0\x80"
    assert_failed(feed(client_frame(CLOSE, payload)), CloseCode.INVALID_DATA)


def test_input_after_close_is_ignored() -> None:
    conn = feed(client_frame(CLOSE, encode_close(1000)) + client_frame(TEXT, b"late"))
    assert conn.events_received() == [Closed(1000, "")]
    conn.receive_data(client_frame(PING) + client_frame(CLOSE))
    conn.receive_eof()
    assert conn.events_received() == []
    assert server_frames(conn.data_to_send()) == [close_frame(1000)]


def test_close_in_the_middle_of_a_fragmented_message() -> None:
    conn = feed(client_frame(TEXT, b"a", fin=False) + client_frame(CLOSE, encode_close(1000)))
    assert conn.events_received() == [Closed(1000, "")]


def test_server_initiated_close() -> None:
    conn = WebSocketConnection()
    conn.send_close(4000, "going")
    assert state_of(conn) is State.CLOSING
    assert conn.close_sent
    assert server_frames(conn.data_to_send()) == [close_frame(4000, "going")]
    assert not conn.close_transport_now()
    conn.receive_data(client_frame(CLOSE, encode_close(4000)))
    assert conn.events_received() == [Closed(4000, "")]
    assert conn.data_to_send() == b""  # no second close frame
    assert state_of(conn) is State.CLOSED
    assert conn.close_transport_now()


def test_data_after_our_close_is_discarded() -> None:
    conn = WebSocketConnection(max_size=10)
    conn.receive_data(client_frame(TEXT, b"abc", fin=False))
    conn.send_close()
    conn.data_to_send()
    conn.receive_data(
        client_frame(CONT, b"\xff" * 20)  # neither UTF-8 nor size is checked any more
        + client_frame(BINARY, b"x" * 50)
        + client_frame(PING, b"still")
        + client_frame(PONG, b"there")
    )
    # §5.5.2: a ping is answered "unless it already received a Close frame".
    assert conn.events_received() == [PingReceived(b"still"), PongReceived(b"there")]
    assert server_frames(conn.data_to_send()) == [Frame(PONG, b"still")]
    conn.receive_data(client_frame(CLOSE))
    assert conn.events_received() == [Closed(CloseCode.NO_STATUS_RCVD, "")]
    assert conn.close_transport_now()


def test_protocol_error_after_our_close() -> None:
    conn = WebSocketConnection()
    conn.send_close()
    conn.data_to_send()
    conn.receive_data(client_frame(CONT, b"x"))
    assert conn.events_received() == [Closed(CloseCode.PROTOCOL_ERROR, "no message to continue")]
    assert conn.data_to_send() == b""  # our close frame is already out
    assert conn.close_transport_now()


def test_eof() -> None:
    conn = feed(client_frame(TEXT, b"partial", fin=False))
    conn.receive_eof()
    assert conn.events_received() == [Closed(CloseCode.ABNORMAL_CLOSURE, "")]
    assert conn.data_to_send() == b""
    assert conn.close_transport_now()
    conn.receive_eof()
    assert conn.events_received() == []


def test_eof_after_our_close() -> None:
    conn = WebSocketConnection()
    conn.send_close()
    conn.receive_eof()
    assert conn.events_received() == [Closed(CloseCode.ABNORMAL_CLOSURE, "")]


def test_failure_stops_processing() -> None:
    conn = feed(client_frame(CONT, b"x") + client_frame(TEXT, b"never") + client_frame(PING))
    assert_failed(conn, CloseCode.PROTOCOL_ERROR)
    conn.receive_data(client_frame(TEXT, b"never"))
    conn.receive_eof()
    assert conn.events_received() == []
    assert conn.data_to_send() == b""


def test_closed_reported_once() -> None:
    conn = feed(client_frame(CLOSE) + client_frame(CLOSE))
    conn.receive_data(b"\x00\x00")
    conn.receive_eof()
    assert [e for e in conn.events_received() if isinstance(e, Closed)] == [
        Closed(CloseCode.NO_STATUS_RCVD, "")
    ]


# -- Failing after messages the application may still answer ------------------------------


def test_failure_after_message_waits_for_the_application() -> None:
    # Autobahn 3.2: a valid message, a frame with RSV set, a ping, in one read.
    # The echo of the valid message must go out before the close frame.
    conn = feed(
        client_frame(TEXT, b"Hello, world!")
        + client_frame(TEXT, b"Hello, world!", rsv=2)
        + client_frame(PING)
    )
    assert conn.events_received() == [
        TextMessage("Hello, world!"),
        Closed(CloseCode.PROTOCOL_ERROR, "reserved bits set"),
    ]
    assert conn.data_to_send() == b""  # no pong: reading stopped at the bad frame
    assert not conn.close_transport_now()
    conn.send_text("Hello, world!")  # the application's echo
    assert server_frames(conn.data_to_send()) == [Frame(TEXT, b"Hello, world!")]
    conn.receive_data(client_frame(TEXT, b"ignored"))
    assert conn.events_received() == []
    conn.closed_delivered()
    assert server_frames(conn.data_to_send()) == [close_frame(1002, "reserved bits set")]
    assert conn.close_sent
    assert conn.state is State.CLOSED
    assert conn.close_transport_now()
    with pytest.raises(ConnectionClosedError):
        conn.send_text("too late")


def test_fragmented_message_then_failure() -> None:
    # Autobahn 5.15: two fragments, a continuation with nothing to continue, a message.
    conn = feed(
        client_frame(TEXT, b"fragment1", fin=False)
        + client_frame(CONT, b"fragment2")
        + client_frame(CONT, b"fragment3", fin=False)
        + client_frame(TEXT, b"fragment4")
    )
    assert conn.events_received() == [
        TextMessage("fragment1fragment2"),
        Closed(CloseCode.PROTOCOL_ERROR, "no message to continue"),
    ]
    conn.send_text("fragment1fragment2")
    conn.closed_delivered()
    frames = server_frames(conn.data_to_send())
    assert [frame.opcode for frame in frames] == [TEXT, CLOSE]
    assert conn.close_transport_now()


def test_failure_without_pending_messages_is_immediate() -> None:
    conn = feed(client_frame(TEXT, b"first"))
    assert conn.events_received() == [TextMessage("first")]
    conn.receive_data(client_frame(5))
    assert_failed(conn, CloseCode.PROTOCOL_ERROR)
    conn.closed_delivered()  # harmless
    assert conn.data_to_send() == b""


def test_send_close_releases_the_held_failure() -> None:
    conn = feed(client_frame(BINARY, b"x") + client_frame(CONT))
    assert isinstance(conn.events_received()[-1], Closed)
    conn.send_close(1000)  # e.g. the application returned
    assert server_frames(conn.data_to_send()) == [close_frame(1002, "no message to continue")]
    assert conn.close_transport_now()


def test_eof_releases_the_held_failure() -> None:
    conn = feed(client_frame(BINARY, b"x") + client_frame(TEXT, b"\xff"))
    assert conn.events_received() == [
        BytesMessage(b"x"),
        Closed(CloseCode.INVALID_DATA, "invalid UTF-8 in text message"),
    ]
    conn.receive_eof()
    assert conn.events_received() == []  # Closed is reported once
    assert server_frames(conn.data_to_send()) == [
        close_frame(1007, "invalid UTF-8 in text message")
    ]
    assert conn.close_transport_now()


def test_no_hold_after_our_close() -> None:
    conn = WebSocketConnection()
    conn.send_close()
    conn.data_to_send()
    conn.receive_data(client_frame(CONT))
    assert conn.events_received() == [Closed(CloseCode.PROTOCOL_ERROR, "no message to continue")]
    assert conn.close_transport_now()


# -- max_size (code 1009) ------------------------------------------------------------------


def test_max_size_exact() -> None:
    conn = feed(client_frame(BINARY, b"x" * 100), WebSocketConnection(max_size=100))
    assert conn.events_received() == [BytesMessage(b"x" * 100)]


def test_max_size_header_fails_at_once() -> None:
    # A frame announcing more than the limit fails before any payload arrives.
    conn = WebSocketConnection(max_size=100)
    conn.receive_data(client_frame(BINARY, length=2**40))
    assert_failed(conn, CloseCode.MESSAGE_TOO_BIG)


def test_max_size_header_fails_at_once_for_complete_frame() -> None:
    conn = feed(client_frame(TEXT, b"x" * 101), WebSocketConnection(max_size=100))
    assert_failed(conn, CloseCode.MESSAGE_TOO_BIG)


def test_max_size_counts_the_whole_message() -> None:
    conn = WebSocketConnection(max_size=100)
    conn.receive_data(client_frame(TEXT, b"x" * 60, fin=False))
    assert conn.events_received() == []
    conn.receive_data(client_frame(CONT, b"x" * 41)[:6])  # the header only
    assert_failed(conn, CloseCode.MESSAGE_TOO_BIG)


def test_max_size_none() -> None:
    conn = feed(client_frame(BINARY, b"x" * 100_000), WebSocketConnection(max_size=None))
    assert conn.events_received() == [BytesMessage(b"x" * 100_000)]


def test_max_size_does_not_count_control_frames() -> None:
    conn = WebSocketConnection(max_size=4)
    conn.receive_data(client_frame(PING, b"x" * 100) + client_frame(TEXT, b"abcd"))
    assert conn.events_received() == [PingReceived(b"x" * 100), TextMessage("abcd")]


# -- Sending -------------------------------------------------------------------------------


def test_send_messages() -> None:
    conn = WebSocketConnection()
    conn.send_text("héllo")
    conn.send_bytes(b"\x00" * 70000)
    conn.send_ping(b"p")
    conn.send_pong(b"q")
    assert server_frames(conn.data_to_send()) == [
        Frame(TEXT, "héllo".encode()),
        Frame(BINARY, b"\x00" * 70000),
        Frame(PING, b"p"),
        Frame(PONG, b"q"),
    ]
    assert conn.data_to_send() == b""


@pytest.mark.parametrize("size", [0, 1, 125, 126])
def test_send_message_sizes(size: int) -> None:
    conn = WebSocketConnection()
    conn.send_text("é" * size)
    conn.send_bytes(b"\xff" * size)
    assert server_frames(conn.data_to_send()) == [Frame(TEXT, "é".encode() * size), Frame(BINARY, b"\xff" * size)]


def test_send_small_messages_compressed() -> None:
    conn = WebSocketConnection(deflate=PerMessageDeflate(compress_threshold=0))
    conn.send_text("a" * 100)
    conn.send_bytes(b"b" * 100)
    assert [frame.rsv1 for frame in server_frames(conn.data_to_send())] == [True, True]


@pytest.mark.parametrize("send", [lambda c: c.send_text("a"), lambda c: c.send_bytes(b"a")])
def test_send_small_message_after_close(send: Callable[[WebSocketConnection], None]) -> None:
    conn = WebSocketConnection()
    conn.send_close()
    with pytest.raises(ConnectionClosedError):
        send(conn)
    conn = feed(client_frame(CLOSE))
    with pytest.raises(ConnectionClosedError):
        send(conn)


def test_send_ping_too_long() -> None:
    with pytest.raises(ValueError, match="125"):
        WebSocketConnection().send_ping(b"x" * 126)


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 2999, 5000])
def test_send_close_invalid_code(code: int) -> None:
    conn = WebSocketConnection()
    with pytest.raises(ValueError, match="invalid close code"):
        conn.send_close(code)
    assert conn.state is State.OPEN
    assert conn.data_to_send() == b""


def test_send_close_reason_length() -> None:
    conn = WebSocketConnection()
    with pytest.raises(ValueError, match="123"):
        conn.send_close(1000, "é" * 62)  # 124 bytes in UTF-8
    conn.send_close(1000, "é" * 61 + "x")  # 123 bytes
    assert server_frames(conn.data_to_send()) == [close_frame(1000, "é" * 61 + "x")]


Action = Callable[[WebSocketConnection], object]


@pytest.mark.parametrize(
    "send",
    [
        lambda c: c.send_text("x"),
        lambda c: c.send_bytes(b"x"),
        lambda c: c.send_ping(),
        lambda c: c.send_pong(),
        lambda c: c.send_close(),
    ],
)
@pytest.mark.parametrize(
    "closing",
    [
        lambda c: c.send_close(),
        lambda c: c.receive_data(client_frame(CLOSE)),
        lambda c: c.receive_data(client_frame(CONT)),
        lambda c: c.receive_eof(),
    ],
)
def test_send_after_close(send: Action, closing: Action) -> None:
    conn = WebSocketConnection()
    closing(conn)
    with pytest.raises(ConnectionClosedError):
        send(conn)


def test_connection_closed_error_is_oserror() -> None:
    assert issubclass(ConnectionClosedError, OSError)


# -- Chunking properties -------------------------------------------------------------------

SMALL_CONVERSATION = (
    client_frame(TEXT, "κόσμε".encode())
    + client_frame(BINARY, b"\x00" * 130, fin=False, key=b"\x01\x02\x03\x04")
    + client_frame(PING, b"ping")
    + client_frame(CONT, b"\x01" * 3, key=b"\xff\x00\xff\x00")
    + client_frame(TEXT, "€".encode()[:2], fin=False)
    + client_frame(CONT, "€".encode()[2:] + b"!")
    + client_frame(PONG)
    + client_frame(CLOSE, encode_close(1000, "done"))
)

SMALL_CONVERSATION_EVENTS: list[Event] = [
    TextMessage("κόσμε"),
    PingReceived(b"ping"),
    BytesMessage(b"\x00" * 130 + b"\x01" * 3),
    TextMessage("€!"),
    PongReceived(b""),
    Closed(1000, "done"),
]

CONVERSATION = SMALL_CONVERSATION.replace(
    client_frame(CONT, b"\x01" * 3, key=b"\xff\x00\xff\x00"),
    client_frame(CONT, b"\x01" * 70000, key=b"\xff\x00\xff\x00"),
)

CONVERSATION_EVENTS: list[Event] = [
    *SMALL_CONVERSATION_EVENTS[:2],
    BytesMessage(b"\x00" * 130 + b"\x01" * 70000),
    *SMALL_CONVERSATION_EVENTS[3:],
]

# The pong answering the ping, then the echo of the close code.
CONVERSATION_OUTPUT = b"\x8a\x04ping\x88\x02\x03\xe8"


def run_chunks(data: bytes, cuts: list[int]) -> tuple[list[Event], bytes]:
    conn = WebSocketConnection()
    events: list[Event] = []
    output = b""
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        conn.receive_data(data[start:cut])
        events += conn.events_received()
        output += conn.data_to_send()
        start = cut
    assert conn.close_transport_now()
    return events, output


def test_every_single_split_gives_the_same_events() -> None:
    for cut in range(len(SMALL_CONVERSATION) + 1):
        events, output = run_chunks(SMALL_CONVERSATION, [cut])
        assert events == SMALL_CONVERSATION_EVENTS, cut
        assert output == CONVERSATION_OUTPUT


def test_byte_by_byte() -> None:
    events, output = run_chunks(SMALL_CONVERSATION, list(range(1, len(SMALL_CONVERSATION))))
    assert events == SMALL_CONVERSATION_EVENTS
    assert output == CONVERSATION_OUTPUT


@given(cuts=st.lists(st.integers(0, len(CONVERSATION)), max_size=30))
def test_arbitrary_chunking_of_conversation(cuts: list[int]) -> None:
    events, output = run_chunks(CONVERSATION, cuts)
    assert events == CONVERSATION_EVENTS
    assert output == CONVERSATION_OUTPUT


@st.composite
def messages_and_stream(draw: st.DrawFn) -> tuple[list[Event], bytes]:
    """Random messages, each split into random masked frames, with pings mixed in."""
    expected: list[Event] = []
    stream = b""
    for _ in range(draw(st.integers(0, 6))):
        is_text = draw(st.booleans())
        if is_text:
            text = draw(st.text(max_size=300))
            payload = text.encode()
            expected.append(TextMessage(text))
        else:
            payload = draw(st.binary(max_size=300))
            expected.append(BytesMessage(payload))
        cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=4)))
        pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
        for index, piece in enumerate(pieces):
            opcode = (TEXT if is_text else BINARY) if index == 0 else CONT
            key = draw(st.binary(min_size=4, max_size=4))
            stream += client_frame(opcode, piece, fin=index == len(pieces) - 1, key=key)
            if draw(st.booleans()):
                ping = draw(st.binary(max_size=125))
                stream += client_frame(PING, ping, key=key)
                # A ping between fragments is reported before the message it interrupts.
                position = len(expected) if index == len(pieces) - 1 else len(expected) - 1
                expected.insert(position, PingReceived(ping))
    return expected, stream


@settings(max_examples=200)
@given(data=messages_and_stream(), cuts=st.lists(st.integers(0, 4000), max_size=20))
def test_random_frames_random_chunks(data: tuple[list[Event], bytes], cuts: list[int]) -> None:
    expected, stream = data
    stream += client_frame(CLOSE)
    expected.append(Closed(CloseCode.NO_STATUS_RCVD, ""))
    events, output = run_chunks(stream, [cut for cut in cuts if cut <= len(stream)])
    assert events == expected
    pings = [event.payload for event in expected if isinstance(event, PingReceived)]
    assert server_frames(output) == [*(Frame(PONG, ping) for ping in pings), Frame(CLOSE, b"")]


def test_invalid_utf8_within_the_size_limit_wins_over_the_limit() -> None:
    """A compressed text message that inflates past max_size, with invalid UTF-8 before the
    limit: 1007 whatever the reads, since the bad byte comes first in the stream (found by
    fuzzing)."""
    stream = bytes.fromhex("c191fb37cc82000029824f1d37")
    for chunks in ([stream], [stream[i : i + 1] for i in range(len(stream))]):
        conn = WebSocketConnection(max_size=1, deflate=PerMessageDeflate())
        for chunk in chunks:
            conn.receive_data(chunk)
        assert conn.events_received() == [Closed(1007, "invalid UTF-8 in text message")]


# -- The fast path for a read of one small message -----------------------------------------


def read_frames(conn: WebSocketConnection, reads: list[bytes], *, fast: bool) -> list[Event]:
    """Feed one read at a time, trying ``receive_whole_message`` first as the transport does."""
    events: list[Event] = []
    for data in reads:
        message = conn.receive_whole_message(data) if fast else None
        if message is None:
            conn.receive_data(data)
            events += conn.events_received()
        elif isinstance(message, str):
            events.append(TextMessage(message))
        else:
            events.append(BytesMessage(message))
    return events


def test_whole_message_fast_path() -> None:
    conn = WebSocketConnection()
    assert conn.receive_whole_message(client_frame(TEXT, "héllo".encode())) == "héllo"
    assert conn.receive_whole_message(client_frame(BINARY, b"\x00" * 125)) == b"\x00" * 125
    assert conn.receive_whole_message(client_frame(TEXT)) == ""
    assert conn.events_received() == []
    assert conn.data_to_send() == b""


@pytest.mark.parametrize(
    "data",
    [
        client_frame(TEXT, b"x" * 126),
        client_frame(TEXT, b"\xff"),
        client_frame(TEXT, b"ab", fin=False),
        client_frame(TEXT, b"ab", rsv=4),
        client_frame(CONT, b"ab"),
        client_frame(PING, b"ab"),
        client_frame(TEXT, b"ab") + client_frame(TEXT, b"cd"),
        client_frame(TEXT, b"ab")[:-1],
        bytes((0x81, 0x02)) + b"ab",
    ],
)
def test_whole_message_fast_path_leaves_the_rest_to_receive_data(data: bytes) -> None:
    conn = WebSocketConnection()
    assert conn.receive_whole_message(data) is None
    assert conn.events_received() == []
    assert read_frames(conn, [data], fast=False) == read_frames(WebSocketConnection(), [data], fast=False)


def test_whole_message_fast_path_respects_max_size() -> None:
    conn = WebSocketConnection(max_size=3)
    assert conn.receive_whole_message(client_frame(BINARY, b"abc")) == b"abc"
    assert conn.receive_whole_message(client_frame(BINARY, b"abcd")) is None


def test_whole_message_fast_path_not_inside_a_message_or_after_close() -> None:
    conn = feed(client_frame(TEXT, b"a", fin=False))
    assert conn.receive_whole_message(client_frame(TEXT, b"b")) is None
    conn = WebSocketConnection()
    conn.send_close()
    assert conn.receive_whole_message(client_frame(TEXT, b"b")) is None


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """One client frame, valid or not: any opcode, flags, small payload and mask key."""
    opcode = draw(st.sampled_from([TEXT, BINARY, CONT, PING, PONG, CLOSE, 3]))
    if draw(st.booleans()):
        payload = draw(st.text(max_size=60)).encode()
    else:
        payload = draw(st.binary(max_size=130))
    rsv = draw(st.sampled_from([0, 0, 0, 4, 2, 1]))
    key = draw(st.binary(min_size=4, max_size=4))
    return client_frame(opcode, payload, fin=draw(st.booleans()) or opcode == TEXT, rsv=rsv, key=key)


@settings(max_examples=300)
@given(
    reads=st.lists(frames(), max_size=8),
    max_size=st.sampled_from([None, 0, 10, 100]),
    deflate=st.booleans(),
)
def test_fast_path_changes_nothing(reads: list[bytes], max_size: int | None, deflate: bool) -> None:
    """With or without the fast path, one frame a read gives the same events, output, state."""
    results = []
    for fast in (False, True):
        conn = WebSocketConnection(max_size=max_size, deflate=PerMessageDeflate() if deflate else None)
        events = read_frames(conn, reads, fast=fast)
        results.append((events, conn.data_to_send(), conn.state, conn.close_sent))
    assert results[0] == results[1]


# -- Parsing to a message budget (the transport's --ws-max-queue) ---------------------------


def test_budget_holds_input_and_says_so() -> None:
    conn = WebSocketConnection()
    conn.receive_data(b"".join(client_frame(TEXT, str(i).encode()) for i in range(3)), max_messages=1)
    assert conn.events_received() == [TextMessage("0")]
    assert conn.input_held
    conn.receive_data(b"", max_messages=5)
    assert conn.events_received() == [TextMessage("1"), TextMessage("2")]
    assert not conn.input_held


def test_budget_not_held_for_an_incomplete_frame() -> None:
    conn = WebSocketConnection()
    conn.receive_data(client_frame(TEXT, b"ab") + client_frame(TEXT, b"cd")[:3], max_messages=1)
    assert conn.events_received() == [TextMessage("ab")]
    assert conn.input_held  # the budget stopped parsing before the partial frame
    conn.receive_data(b"", max_messages=1)
    assert conn.events_received() == []
    assert not conn.input_held  # nothing more can come out without more input


@settings(max_examples=200)
@given(data=messages_and_stream(), cuts=st.lists(st.integers(0, 4000), max_size=20),
       budgets=st.lists(st.integers(0, 3), min_size=1, max_size=20))
def test_any_budgets_give_the_same_events(data: tuple[list[Event], bytes], cuts: list[int],
                                          budgets: list[int]) -> None:
    """Whatever the budgets of the reads, once the caller goes on while ``input_held`` is set,
    the same events come out in the same order, and ``input_held`` is never set when there is
    nothing left that a call without new input could parse."""
    expected, stream = data
    conn = WebSocketConnection()
    events: list[Event] = []
    start = 0
    budget = iter(budgets * 100)
    for cut in [*sorted(c for c in cuts if c <= len(stream)), len(stream)]:
        conn.receive_data(stream[start:cut], max_messages=next(budget, 1))
        events += conn.events_received()
        while conn.input_held:
            conn.receive_data(b"", max_messages=max(1, next(budget, 1)))
            events += conn.events_received()
        start = cut
    assert events == expected
    conn.receive_data(b"")
    assert conn.events_received() == []


# -- send_message ----------------------------------------------------------------------------


def _sent_both_ways(data: str | bytes, deflate: Callable[[], PerMessageDeflate | None],
                    close_first: bool) -> tuple[object, object]:
    """What ``send_message`` and the typed ``send_text``/``send_bytes`` put out, or raise."""
    outcomes: list[object] = []
    for general in (False, True):
        conn = WebSocketConnection(deflate=deflate())
        if close_first:
            conn.send_close()
            conn.data_to_send()
        try:
            if general:
                conn.send_text(data) if isinstance(data, str) else conn.send_bytes(data)
            else:
                conn.send_message(data)
        except ConnectionClosedError:
            outcomes.append(ConnectionClosedError)
        else:
            outcomes.append((conn.data_to_send(), conn.state))
    return outcomes[0], outcomes[1]


@settings(max_examples=200)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)), st.booleans(), st.booleans())
def test_send_message_is_send_text_or_send_bytes(data: str | bytes, compressed: bool, close_first: bool) -> None:
    """The fast paths written out in ``send_message`` give exactly what the typed methods give."""
    def deflate() -> PerMessageDeflate | None:
        return PerMessageDeflate(compress_threshold=0) if compressed else None

    fast, general = _sent_both_ways(data, deflate, close_first)
    assert fast == general


def test_send_message_chooses_the_opcode() -> None:
    conn = WebSocketConnection()
    conn.send_message("é")
    conn.send_message(b"\x00")
    assert conn.data_to_send() == b"\x81\x02\xc3\xa9" + b"\x82\x01\x00"


def test_send_message_large() -> None:
    conn = WebSocketConnection()
    conn.send_message("x" * 200)
    assert conn.data_to_send() == b"\x81\x7e\x00\xc8" + b"x" * 200


def test_encode_message() -> None:
    assert WebSocketConnection.encode_message("é") == (Opcode.TEXT, b"\xc3\xa9")
    assert WebSocketConnection.encode_message(b"\xff") == (Opcode.BINARY, b"\xff")


@given(st.lists(st.one_of(st.binary(max_size=200), st.text(max_size=50),
                          st.integers(min_value=SEPARATE_PAYLOAD - 2, max_value=70_000).map(lambda n: b"x" * n)),
                max_size=6))
def test_the_pieces_to_send_join_into_the_bytes_to_send(messages: list[str | bytes]) -> None:
    """The transport writes the pieces as they are; they must make the same bytes, with every
    large payload a piece of its own, the very object the app sent (never copied)."""
    joined, pieces = WebSocketConnection(), WebSocketConnection()
    for connection in (joined, pieces):
        for message in messages:
            connection.send_message(message)
    chunks = pieces.chunks_to_send()
    assert b"".join(chunks) == joined.data_to_send()
    large = [message for message in messages if isinstance(message, bytes) and len(message) >= SEPARATE_PAYLOAD]
    assert [chunk for chunk in chunks if any(chunk is message for message in large)] == large
    assert pieces.chunks_to_send() == [] and pieces.data_to_send() == b""
