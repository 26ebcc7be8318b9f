"""Property tests of the WebSocket frame parser on damaged input.

test_ws_connection.py and test_ws_deflate.py already show that valid streams give the same
events however they are split; these overwrite bytes anywhere in such a stream and check that
the outcome (events, close code, bytes sent back) still does not depend on the reads.
"""

from __future__ import annotations

import itertools
import random
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from asgisock.ws.connection import Event, WebSocketConnection
from asgisock.ws.deflate import PerMessageDeflate
from asgisock.ws.frames import Opcode, encode_close
from tests.sansio.test_ws_connection import client_frame


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


STREAM = (
    client_frame(Opcode.TEXT, "héllo wörld".encode())
    + client_frame(Opcode.BINARY, bytes(range(256)) * 2, fin=False)
    + client_frame(Opcode.PING, b"ping")
    + client_frame(Opcode.CONTINUATION, b"end")
    + client_frame(Opcode.PONG, b"")
    + client_frame(Opcode.CLOSE, encode_close(1000, "bye"))
)
COMPRESSED = client_frame(Opcode.BINARY, deflated(b"\x00" * 2000), rsv=4) + client_frame(
    Opcode.TEXT, deflated("κόσμε".encode() * 40), rsv=4)


def run(chunks: list[bytes], *, compressed: bool, max_size: int | None) -> tuple[list[Event], bytes]:
    conn = WebSocketConnection(max_size=max_size, deflate=PerMessageDeflate() if compressed else None)
    events: list[Event] = []
    output = b""
    for chunk in chunks:
        conn.receive_data(chunk)
        events += conn.events_received()
        output += conn.data_to_send()
    conn.receive_eof()
    return events + conn.events_received(), output + conn.data_to_send()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def damage(data: bytes, garbage: bytes, where: int) -> bytes:
    position = where % (len(data) + 1)
    return data[:position] + garbage + data[position + len(garbage) :]


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=16), st.integers(0, 5000), st.lists(st.integers(0, 5000), max_size=10),
       st.sampled_from([None, 64, 600]))
def test_damaged_stream_any_split_same_outcome(garbage: bytes, where: int, cuts: list[int],
                                               max_size: int | None) -> None:
    data = damage(STREAM, garbage, where)
    whole = run([data], compressed=False, max_size=max_size)
    assert run(split(data, cuts), compressed=False, max_size=max_size) == whole
    assert run([data[i : i + 1] for i in range(len(data))], compressed=False, max_size=max_size) == whole


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=16), st.integers(0, 5000), st.lists(st.integers(0, 5000), max_size=10),
       st.sampled_from([None, 64, 1000]))
def test_damaged_compressed_stream_any_split_same_outcome(garbage: bytes, where: int, cuts: list[int],
                                                          max_size: int | None) -> None:
    data = damage(COMPRESSED, garbage, where)
    whole = run([data], compressed=True, max_size=max_size)
    assert run(split(data, cuts), compressed=True, max_size=max_size) == whole


def compressed_with_context(texts: list[bytes]) -> list[bytes]:
    """Payloads compressed with context takeover: a later one may copy from an earlier one."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return [(compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4] for text in texts]


def words(seed: int, count: int) -> bytes:
    """Text of 1- to 4-byte UTF-8 characters that compresses a little, not to nothing."""
    rng = random.Random(seed)
    vocabulary = ["κόσμε", "héllo", "wörld", "日本語", "ok", "€", "naïve", "𝄞", "x", "q"]
    return " ".join(rng.choice(vocabulary) for _ in range(count)).encode()


# A binary message, then two text messages, the second repeating the first's phrases, so that
# much of its deflate data is matches reaching back into the previous message.
BINARY_FIRST = client_frame(Opcode.BINARY, deflated(bytes(range(256))), rsv=4)
TEXT_PAYLOADS = compressed_with_context([words(1, 60), words(1, 30) + words(2, 30)])
TEXT_FRAMES = [client_frame(Opcode.TEXT, payload, rsv=4) for payload in TEXT_PAYLOADS]
TEXTS = BINARY_FIRST + b"".join(TEXT_FRAMES)


def text_payload_positions() -> list[int]:
    positions: list[int] = []
    start = len(BINARY_FIRST)
    for frame, payload in zip(TEXT_FRAMES, TEXT_PAYLOADS, strict=True):
        header = len(frame) - len(payload)
        positions += range(start + header, start + len(frame))
        start += len(frame)
    return positions


TEXT_PAYLOAD_POSITIONS = text_payload_positions()


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=1, max_size=8), st.integers(0, 5000), st.lists(st.integers(0, 5000), max_size=10),
       st.sampled_from([None, 260, 300, 360, 368, 1000]))
def test_damaged_compressed_text_any_split_same_outcome(garbage: bytes, where: int, cuts: list[int],
                                                        max_size: int | None) -> None:
    """Damage in compressed text payloads, where zlib's error, which comes without the bytes
    inflated before it, races the UTF-8 check and the size limit: the first problem in stream
    order wins, however the input is read."""
    data = damage(TEXTS, garbage, TEXT_PAYLOAD_POSITIONS[where % len(TEXT_PAYLOAD_POSITIONS)])
    whole = run([data], compressed=True, max_size=max_size)
    assert run(split(data, cuts), compressed=True, max_size=max_size) == whole
    assert run([data[i : i + 1] for i in range(len(data))], compressed=True, max_size=max_size) == whole


def test_corrupt_compressed_text_close_code_does_not_depend_on_reads() -> None:
    payload = deflated(b"\xff" * 20) + b"\xff" * 5  # inflates to invalid UTF-8, then is not deflate
    data = client_frame(Opcode.TEXT, payload, rsv=4)
    whole = run([data], compressed=True, max_size=None)
    in_pieces = run([data[:8], data[8:]], compressed=True, max_size=None)
    assert whole == in_pieces
