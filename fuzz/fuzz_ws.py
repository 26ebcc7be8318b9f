"""Fuzz target: WebSocketConnection.receive_data (the frame parser), on any bytes, split any way.

Input layout: byte 0 sets ``max_size`` (None, or 1 to 65281), byte 1 bit 0 negotiates
permessage-deflate and bit 1 ``client_no_context_takeover``, bytes 2-3 seed the split into
reads, the rest is what the client sends. Besides "no exception", every input is checked for:

- the same events and the same output in one read and in the split reads, except the code of
  a failure on a corrupt compressed message: zlib raises for a whole bad input at once, losing
  what it inflated before the damage, so in one read it is 1002 (invalid compressed data),
  while split reads may first inflate enough of it to see invalid UTF-8 (1007) or to cross
  max_size (1009);
- ``Closed`` exactly once at most, last among the message events, with a legal code;
- no message larger than ``max_size`` delivered;
- a bounded receive buffer (one partial header or control frame);
- output that parses as unmasked server frames.

    python fuzz/fuzz_ws.py -max_total_time=60 -dict=fuzz/ws.dict SEED_DIR
"""

from __future__ import annotations

import random
import struct
import sys

import atheris

with atheris.instrument_imports():
    from asgisock.ws.connection import (
        BytesMessage,
        Closed,
        PingReceived,
        PongReceived,
        TextMessage,
        WebSocketConnection,
    )
    from asgisock.ws.deflate import PerMessageDeflate

FAILURE_CODES = {1002, 1006, 1007, 1009}
EITHER = {1002, 1007, 1009}
BUFFER_BOUND = 14 + 125
"""The longest frame header, or a whole control frame: what may wait for more bytes."""


def parameters(data: bytes) -> tuple[int | None, PerMessageDeflate | None, random.Random, bytes]:
    head = data[:4].ljust(4, b"\0")
    max_size = None if head[0] == 255 else 1 + head[0] * 256
    deflate = PerMessageDeflate(client_no_context_takeover=bool(head[1] & 2)) if head[1] & 1 else None
    return max_size, deflate, random.Random(int.from_bytes(head[2:4], "big")), data[4:]


def reads(stream: bytes, rng: random.Random) -> list[bytes]:
    chunks = []
    position = 0
    while position < len(stream):
        size = rng.choice((1, 2, 3, 5, 14, 64, 1000, 70_000))
        chunks.append(stream[position : position + size])
        position += size
    return chunks


def run(chunks: list[bytes], max_size: int | None, compressed: bool, no_context: bool) -> tuple[list[object], bytes]:
    deflate = PerMessageDeflate(client_no_context_takeover=no_context) if compressed else None
    conn = WebSocketConnection(max_size=max_size, deflate=deflate)
    events: list[object] = []
    output = b""
    for chunk in chunks:
        conn.receive_data(chunk)
        assert len(conn._buffer) <= BUFFER_BOUND, len(conn._buffer)
        for event in conn.events_received():
            check_event(event, events, max_size)
            events.append(event)
        output += conn.data_to_send()
    conn.receive_eof()
    for event in conn.events_received():
        check_event(event, events, max_size)
        events.append(event)
    output += conn.data_to_send()
    check_output(output)
    return events, output


def check_event(event: object, events: list[object], max_size: int | None) -> None:
    assert not any(isinstance(e, Closed) for e in events), f"{event} after Closed"
    if isinstance(event, TextMessage):
        assert max_size is None or len(event.data.encode()) <= max_size
    elif isinstance(event, BytesMessage):
        assert max_size is None or len(event.data) <= max_size
    elif isinstance(event, Closed):
        assert event.code in FAILURE_CODES or 1000 <= event.code <= 4999, event
    else:
        assert isinstance(event, PingReceived | PongReceived), event


def check_output(output: bytes) -> None:
    """Server frames: unmasked, known opcodes, control frames short and final."""
    position = 0
    while position < len(output):
        first, second = output[position], output[position + 1]
        assert not second & 0x80, "a masked server frame"
        opcode = first & 0x0F
        assert opcode in (0x8, 0x9, 0xA), opcode  # nothing but control frames is sent unasked
        length = second & 0x7F
        assert length <= 125 and first & 0x80
        if opcode == 0x8 and length:
            (code,) = struct.unpack_from("!H", output, position + 2)
            assert 1000 <= code <= 4999 and code not in (1005, 1006), code
        position += 2 + length
    assert position == len(output)


def agree(one: tuple[list[object], bytes], other: tuple[list[object], bytes]) -> bool:
    if one == other:
        return True
    (events, output), (other_events, other_output) = one, other
    if not events or not other_events or events[:-1] != other_events[:-1]:
        return False
    last, other_last = events[-1], other_events[-1]
    if not (isinstance(last, Closed) and isinstance(other_last, Closed)):
        return False
    corrupt = {last.reason, other_last.reason} & {"invalid compressed data"}
    if not corrupt or not {last.code, other_last.code} <= EITHER:
        return False
    return without_close(output) == without_close(other_output)


def without_close(output: bytes) -> bytes:
    """The output less its final close frame (control frames are at most 127 bytes)."""
    for start in range(max(0, len(output) - 127), len(output)):
        if output[start] == 0x88 and start + 2 + output[start + 1] == len(output):
            return output[:start]
    return output


def test_one_input(data: bytes) -> None:
    max_size, deflate, rng, stream = parameters(data)
    compressed = deflate is not None
    no_context = bool(deflate and deflate.client_no_context_takeover)
    whole = run([stream], max_size, compressed, no_context)
    split = run(reads(stream, rng), max_size, compressed, no_context)
    assert agree(whole, split), (whole, split)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
