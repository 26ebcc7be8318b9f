"""Tests of permessage-deflate (RFC 7692): negotiation, compression, bounded inflation."""

from __future__ import annotations

import struct
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgisock.ws.connection import (
    BytesMessage,
    Closed,
    Event,
    PingReceived,
    TextMessage,
    WebSocketConnection,
)
from asgisock.ws.deflate import DeflateSettings, PerMessageDeflate, negotiate
from asgisock.ws.frames import CloseCode, Opcode
from asgisock.ws.handshake import ExtensionOffer, parse_extensions
from asgisock.ws.mask import apply_mask

KEY = b"\x5a\xa5\x0f\xf0"
TAIL = b"\x00\x00\xff\xff"
TEXT, BINARY, CONT, PING, CLOSE = (
    Opcode.TEXT,
    Opcode.BINARY,
    Opcode.CONTINUATION,
    Opcode.PING,
    Opcode.CLOSE,
)


def client_frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False
) -> bytes:
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    length = len(payload)
    if length < 126:
        header = bytes((first, 0x80 | length))
    elif length < 65536:
        header = struct.pack("!BBH", first, 0xFE, length)
    else:
        header = struct.pack("!BBQ", first, 0xFF, length)
    return header + KEY + apply_mask(payload, KEY)


class Peer:
    """The client's half of permessage-deflate, built on zlib directly."""

    def __init__(self, *, no_context_takeover: bool = False, window_bits: int = 15) -> None:
        self.no_context_takeover = no_context_takeover
        self.window_bits = window_bits
        self.compressor = zlib.compressobj(wbits=-window_bits)
        self.decompressor = zlib.decompressobj(-15)

    def compress(self, data: bytes) -> bytes:
        if self.no_context_takeover:
            self.compressor = zlib.compressobj(wbits=-self.window_bits)
        out = self.compressor.compress(data) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(TAIL)
        return out[:-4]

    def message(self, opcode: int, data: bytes) -> bytes:
        return client_frame(opcode, self.compress(data), rsv1=True)

    def read(self, output: bytes) -> list[tuple[int, bytes, bool]]:
        """Server frames as (opcode, inflated payload, rsv1)."""
        frames, pos = [], 0
        while pos < len(output):
            first, length = output[pos], output[pos + 1] & 0x7F
            pos += 2
            if length == 126:
                length, pos = int.from_bytes(output[pos : pos + 2], "big"), pos + 2
            elif length == 127:
                length, pos = int.from_bytes(output[pos : pos + 8], "big"), pos + 8
            payload = output[pos : pos + length]
            pos += length
            rsv1 = bool(first & 0x40)
            if rsv1:
                payload = self.decompressor.decompress(payload + TAIL)
            frames.append((first & 0x0F, payload, rsv1))
        return frames


def offers(value: str) -> list[ExtensionOffer]:
    return parse_extensions([(b"sec-websocket-extensions", value.encode())])


def accepted(value: str, config: DeflateSettings | None = None) -> str | None:
    result = negotiate(offers(value), config or DeflateSettings())
    return None if result is None else result[0]


def connection(
    extension: PerMessageDeflate | None = None, max_size: int | None = 16 * 2**20
) -> WebSocketConnection:
    return WebSocketConnection(max_size=max_size, deflate=extension or PerMessageDeflate())


def has_compressor(extension: PerMessageDeflate) -> bool:
    return extension._compressor is not None


def has_decompressor(extension: PerMessageDeflate) -> bool:
    return extension._decompressor is not None


def assert_failed(conn: WebSocketConnection, code: int) -> None:
    events = conn.events_received()
    assert isinstance(events[-1], Closed)
    assert events[-1].code == code
    assert conn.data_to_send()[2:4] == code.to_bytes(2, "big")
    assert conn.close_transport_now()


# -- Negotiation ---------------------------------------------------------------------------


def test_no_offer() -> None:
    assert negotiate([], DeflateSettings()) is None
    assert accepted("x-webkit-deflate-frame, foo") is None


def test_disabled() -> None:
    assert accepted("permessage-deflate", DeflateSettings(enabled=False)) is None


def test_plain_offer() -> None:
    result = negotiate(offers("permessage-deflate"), DeflateSettings())
    assert result is not None
    response, extension = result
    assert response == "permessage-deflate"
    assert not extension.server_no_context_takeover
    assert not extension.client_no_context_takeover
    assert extension.server_max_window_bits == 15


def test_name_is_case_insensitive() -> None:
    assert accepted("PerMessage-Deflate") == "permessage-deflate"


@pytest.mark.parametrize(
    ("offer", "response"),
    [
        ("permessage-deflate; client_max_window_bits", "permessage-deflate"),
        ("permessage-deflate; client_max_window_bits=10", "permessage-deflate"),
        ('permessage-deflate; client_max_window_bits="8"', "permessage-deflate"),
        (
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover",
        ),
        (
            "permessage-deflate; client_no_context_takeover",
            "permessage-deflate; client_no_context_takeover",
        ),
        (
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10",
        ),
        (
            "permessage-deflate; server_max_window_bits=15",
            "permessage-deflate; server_max_window_bits=15",
        ),
        # zlib cannot deflate with an 8-bit window: answered with 9.
        (
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=9",
        ),
        # What the Autobahn TestSuite client offers in cases 13.5.*.
        (
            "permessage-deflate; client_no_context_takeover; client_max_window_bits;"
            " server_no_context_takeover; server_max_window_bits=8",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
            " server_max_window_bits=9",
        ),
    ],
)
def test_parameters_honoured(offer: str, response: str) -> None:
    assert accepted(offer) == response


@pytest.mark.parametrize(
    "params",
    [
        "; unknown",
        "; unknown=1",
        "; server_no_context_takeover; server_no_context_takeover",
        "; client_max_window_bits; client_max_window_bits=10",
        "; server_no_context_takeover=1",
        "; client_no_context_takeover=",
        "; server_max_window_bits",
        "; server_max_window_bits=",
        "; server_max_window_bits=7",
        "; server_max_window_bits=16",
        "; server_max_window_bits=08",
        "; server_max_window_bits=abc",
        "; server_max_window_bits= 10x",
        "; client_max_window_bits=7",
        "; client_max_window_bits=16",
        '; client_max_window_bits="1 0"',
        ";",
    ],
)
def test_bad_offers_declined(params: str) -> None:
    assert accepted("permessage-deflate" + params) is None
    # Declining an offer moves on to the next one.
    assert accepted(f"permessage-deflate{params}, permessage-deflate") == "permessage-deflate"


def test_first_acceptable_offer_wins() -> None:
    value = (
        "foo, permessage-deflate; server_max_window_bits=10; client_no_context_takeover,"
        " permessage-deflate"
    )
    assert accepted(value) == (
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=10"
    )


def test_server_settings() -> None:
    config = DeflateSettings(server_max_window_bits=12, server_no_context_takeover=True)
    result = negotiate(offers("permessage-deflate"), config)
    assert result is not None
    response, extension = result
    # §7.1.2.1: server_max_window_bits is only answered when offered; the smaller
    # window is used anyway, which any client can inflate.
    assert response == "permessage-deflate; server_no_context_takeover"
    assert extension.server_max_window_bits == 12
    assert extension.server_no_context_takeover
    assert accepted("permessage-deflate; server_max_window_bits=14", config) == (
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=12"
    )
    assert accepted("permessage-deflate; server_max_window_bits=10", config) == (
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"
    )


def test_threshold_carried_over() -> None:
    result = negotiate(offers("permessage-deflate"), DeflateSettings(compress_threshold=64))
    assert result is not None
    assert result[1].compress_threshold == 64


@pytest.mark.parametrize(("bits", "threshold"), [(7, 0), (8, 0), (16, 0), (15, -1)])
def test_settings_validated(bits: int, threshold: int) -> None:
    with pytest.raises(ValueError, match="must"):
        DeflateSettings(server_max_window_bits=bits, compress_threshold=threshold)


# -- PerMessageDeflate ---------------------------------------------------------------------


def test_compress_round_trip_with_context() -> None:
    extension = PerMessageDeflate()
    peer = Peer()
    message = b"the same words again and again " * 20
    first = extension.compress(message)
    second = extension.compress(message)
    assert len(second) < len(first)  # the second refers back to the first
    assert peer.decompressor.decompress(first + TAIL) == message
    assert peer.decompressor.decompress(second + TAIL) == message


def test_compress_without_context_takeover() -> None:
    extension = PerMessageDeflate(server_no_context_takeover=True)
    message = b"the same words again and again " * 20
    first = extension.compress(message)
    assert extension.compress(message) == first
    # Each message inflates on its own.
    assert zlib.decompressobj(-15).decompress(first + TAIL) == message


def test_compress_small_window() -> None:
    extension = PerMessageDeflate(server_max_window_bits=9)
    message = bytes(range(256)) * 64
    assert zlib.decompressobj(-9).decompress(extension.compress(message) + TAIL) == message


def test_compress_empty() -> None:
    assert zlib.decompressobj(-15).decompress(PerMessageDeflate().compress(b"") + TAIL) == b""


def test_contexts_are_lazy_and_released() -> None:
    extension = PerMessageDeflate(server_no_context_takeover=True, client_no_context_takeover=True)
    assert not has_compressor(extension)
    assert not has_decompressor(extension)
    extension.compress(b"x")
    assert not has_compressor(extension)  # dropped after the message
    extension.decompress(Peer().compress(b"abc"), 0)
    assert has_decompressor(extension)
    assert extension.end_message(0) == b""
    assert not has_decompressor(extension)

    kept = PerMessageDeflate()
    kept.compress(b"x")
    kept.decompress(Peer().compress(b"abc"), 0)
    kept.end_message(0)
    assert has_compressor(kept)
    assert has_decompressor(kept)
    kept.close()
    assert not has_compressor(kept)
    assert not has_decompressor(kept)


# -- Connection with compression -----------------------------------------------------------


def test_receive_compressed_messages() -> None:
    peer = Peer()
    conn = connection()
    conn.receive_data(peer.message(TEXT, "héllo".encode()) + peer.message(BINARY, b"\x00" * 1000))
    conn.receive_data(peer.message(TEXT, "héllo".encode()))  # refers to the first message
    assert conn.events_received() == [
        TextMessage("héllo"),
        BytesMessage(b"\x00" * 1000),
        TextMessage("héllo"),
    ]


def test_receive_without_client_context_takeover() -> None:
    peer = Peer(no_context_takeover=True)
    conn = connection(PerMessageDeflate(client_no_context_takeover=True))
    for _ in range(3):
        conn.receive_data(peer.message(TEXT, b"again and again"))
    assert conn.events_received() == [TextMessage("again and again")] * 3


def test_uncompressed_messages_still_accepted() -> None:
    peer = Peer()
    conn = connection()
    conn.receive_data(client_frame(TEXT, b"plain") + peer.message(TEXT, b"packed"))
    conn.receive_data(client_frame(BINARY, b"plain", fin=False) + client_frame(CONT, b"!"))
    assert conn.events_received() == [
        TextMessage("plain"),
        TextMessage("packed"),
        BytesMessage(b"plain!"),
    ]


def test_fragmented_compressed_message() -> None:
    # RFC 7692 §6.1: RSV1 on the first frame only; the payloads concatenate.
    compressed = Peer().compress("κόσμε".encode() * 50)
    thirds = len(compressed) // 3
    conn = connection()
    conn.receive_data(
        client_frame(TEXT, compressed[:thirds], fin=False, rsv1=True)
        + client_frame(CONT, compressed[thirds : 2 * thirds], fin=False)
        + client_frame(PING, b"between")
        + client_frame(CONT, compressed[2 * thirds :])
    )
    assert conn.events_received() == [PingReceived(b"between"), TextMessage("κόσμε" * 50)]


def test_rsv1_on_continuation() -> None:
    conn = connection()
    conn.receive_data(
        client_frame(TEXT, b"", fin=False, rsv1=True) + client_frame(CONT, b"", rsv1=True)
    )
    assert_failed(conn, CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("opcode", [PING, Opcode.PONG, CLOSE])
def test_rsv1_on_control_frame(opcode: Opcode) -> None:
    conn = connection()
    conn.receive_data(client_frame(opcode, b"", rsv1=True))
    assert_failed(conn, CloseCode.PROTOCOL_ERROR)


def test_invalid_compressed_data() -> None:
    conn = connection()
    conn.receive_data(client_frame(BINARY, b"\xff\xff\xff\xff", rsv1=True))
    assert_failed(conn, CloseCode.PROTOCOL_ERROR)


def test_invalid_utf8_fails_fast_while_inflating() -> None:
    compressor = zlib.compressobj(wbits=-15)
    start = compressor.compress(b"valid text, then ") + compressor.flush(zlib.Z_SYNC_FLUSH)
    bad = compressor.compress(b"\xf4\x90\x80\x80 and more") + compressor.flush(zlib.Z_SYNC_FLUSH)
    frame = client_frame(TEXT, start + bad, rsv1=True)
    conn = connection()
    split = 6 + len(start)
    conn.receive_data(frame[:split])
    assert conn.events_received() == []
    conn.receive_data(frame[split:-3])  # the frame is not over yet
    assert_failed(conn, CloseCode.INVALID_DATA)


def test_max_size_counts_inflated_bytes() -> None:
    peer = Peer()
    conn = connection(max_size=1000)
    conn.receive_data(peer.message(BINARY, b"x" * 1000))
    assert conn.events_received() == [BytesMessage(b"x" * 1000)]
    conn.receive_data(peer.message(BINARY, b"x" * 1001))
    assert_failed(conn, CloseCode.MESSAGE_TOO_BIG)


def test_no_max_size() -> None:
    conn = connection(max_size=None)
    conn.receive_data(Peer().message(BINARY, b"z" * 100_000))
    assert conn.events_received() == [BytesMessage(b"z" * 100_000)]


def test_max_size_across_compressed_fragments() -> None:
    compressed = Peer().compress(b"y" * 5000)
    conn = connection(max_size=4000)
    conn.receive_data(client_frame(BINARY, compressed[:5], fin=False, rsv1=True))
    conn.receive_data(client_frame(CONT, compressed[5:], fin=False))
    assert_failed(conn, CloseCode.MESSAGE_TOO_BIG)


def decompression_bomb(gigabytes: int) -> bytes:
    """A raw deflate stream of ``gigabytes`` GiB of zeros, about 1 MiB per GiB.

    Each full flush ends a self-contained run of blocks, so one compressed
    mebibyte of zeros repeated 1024 times inflates to a gibibyte.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = compressor.compress(bytes(2**20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return chunk * (1024 * gigabytes)


def test_decompression_bomb_is_bounded() -> None:
    # A ~1 MiB frame that inflates to 1 GiB fails with 1009 having allocated
    # about max_size, not the gigabyte.
    frame = client_frame(BINARY, decompression_bomb(1), rsv1=True)
    assert len(frame) < 2 * 2**20
    conn = connection(max_size=2**20)
    tracemalloc.start()
    try:
        conn.receive_data(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_failed(conn, CloseCode.MESSAGE_TOO_BIG)
    assert peak < 8 * 2**20


def test_decompression_bomb_in_small_reads() -> None:
    frame = client_frame(BINARY, decompression_bomb(1), rsv1=True)
    conn = connection(max_size=2**20)
    for start in range(0, len(frame), 4096):
        conn.receive_data(frame[start : start + 4096])
        if conn.close_transport_now():
            break
    assert start < 64 * 1024  # failed after reading a small part of the frame
    assert_failed(conn, CloseCode.MESSAGE_TOO_BIG)


def test_send_compressed() -> None:
    peer = Peer()
    conn = connection()
    conn.send_text("héllo " * 100)
    conn.send_bytes(b"\x01" * 500)
    conn.send_ping(b"never compressed")
    frames = peer.read(conn.data_to_send())
    assert frames == [
        (TEXT, ("héllo " * 100).encode(), True),
        (BINARY, b"\x01" * 500, True),
        (PING, b"never compressed", False),
    ]


def test_send_compress_threshold() -> None:
    peer = Peer()
    conn = connection(PerMessageDeflate(compress_threshold=10))
    conn.send_text("short")
    conn.send_text("long enough")
    assert peer.read(conn.data_to_send()) == [(TEXT, b"short", False), (TEXT, b"long enough", True)]


def test_close_releases_contexts() -> None:
    extension = PerMessageDeflate()
    conn = connection(extension)
    conn.send_text("x")
    conn.receive_data(Peer().message(TEXT, b"y"))
    assert has_compressor(extension)
    assert has_decompressor(extension)
    conn.receive_data(client_frame(CLOSE))
    assert not has_compressor(extension)
    assert not has_decompressor(extension)


def test_messages_after_our_close_are_not_inflated() -> None:
    extension = PerMessageDeflate()
    conn = connection(extension)
    conn.send_close()
    conn.receive_data(client_frame(TEXT, b"\xff\xff\xff\xff", rsv1=True))
    assert conn.events_received() == []
    assert not has_decompressor(extension)


@st.composite
def compressed_stream(draw: st.DrawFn) -> tuple[list[Event], bytes]:
    peer = Peer()
    expected: list[Event] = []
    stream = b""
    for _ in range(draw(st.integers(1, 5))):
        text = draw(st.text(max_size=200))
        data = text.encode()
        if draw(st.booleans()):
            stream += peer.message(TEXT, data)
        else:
            stream += client_frame(TEXT, data)
        expected.append(TextMessage(text))
    return expected, stream


@settings(max_examples=100)
@given(data=compressed_stream(), cuts=st.lists(st.integers(0, 2000), max_size=20))
def test_arbitrary_chunking_with_compression(
    data: tuple[list[Event], bytes], cuts: list[int]
) -> None:
    expected, stream = data
    conn = connection()
    events: list[Event] = []
    start = 0
    for cut in [*sorted(c for c in cuts if c <= len(stream)), len(stream)]:
        conn.receive_data(stream[start:cut])
        events += conn.events_received()
        start = cut
    assert events == expected


@settings(max_examples=50)
@given(messages=st.lists(st.binary(max_size=3000), max_size=5), no_context=st.booleans())
def test_send_round_trip(messages: list[bytes], no_context: bool) -> None:
    peer = Peer()
    conn = connection(PerMessageDeflate(server_no_context_takeover=no_context))
    for message in messages:
        conn.send_bytes(message)
    assert peer.read(conn.data_to_send()) == [(BINARY, message, True) for message in messages]
