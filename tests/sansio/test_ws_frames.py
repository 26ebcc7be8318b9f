"""Tests of the WebSocket frame codec: headers, lengths, close payloads."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgisock.ws.frames import (
    SHORT_BINARY_HEADERS,
    SHORT_TEXT_HEADERS,
    CloseCode,
    Opcode,
    ProtocolError,
    build_frame,
    decode_close,
    encode_close,
    is_valid_close_code,
    parse_header,
)
from asgisock.ws.mask import apply_mask

KEY = b"\x01\x02\x03\x04"


def client_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    key: bytes = KEY,
) -> bytes:
    """A masked frame as a client sends it (RFC 6455 §5.2), minimal length encoding."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    length = len(payload)
    if length < 126:
        header = bytes((first, 0x80 | length))
    elif length < 65536:
        header = struct.pack("!BBH", first, 0xFE, length)
    else:
        header = struct.pack("!BBQ", first, 0xFF, length)
    return header + key + apply_mask(payload, key)


def masked(frame: bytes, key: bytes = KEY) -> bytes:
    """Turn a server frame into the client frame with the same fields."""
    header_size = {126: 4, 127: 10}.get(frame[1] & 0x7F, 2)
    header, payload = frame[:header_size], frame[header_size:]
    return bytes((header[0], header[1] | 0x80)) + header[2:] + key + apply_mask(payload, key)


def protocol_error(data: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_header(data)
    return info.value


# -- Enums ---------------------------------------------------------------------------------


def test_opcode_values() -> None:
    assert [op.value for op in Opcode] == [0, 1, 2, 8, 9, 10]
    assert [op.is_control for op in Opcode] == [False, False, False, True, True, True]


def test_close_code_values() -> None:
    assert CloseCode.NORMAL_CLOSURE.value == 1000
    assert CloseCode.MESSAGE_TOO_BIG.value == 1009
    assert CloseCode.BAD_GATEWAY.value == 1014
    assert 1004 not in {code.value for code in CloseCode}


# -- Building ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_build_frame_length_forms(length: int, header: bytes) -> None:
    # RFC 6455 §5.2: 7-bit, 16-bit and 64-bit lengths, minimal form.
    payload = b"a" * length
    assert build_frame(Opcode.TEXT, payload) == header + payload


def test_short_headers_match_build_frame() -> None:
    for length in range(126):
        payload = b"a" * length
        assert SHORT_TEXT_HEADERS[length] + payload == build_frame(Opcode.TEXT, payload)
        assert SHORT_BINARY_HEADERS[length] + payload == build_frame(Opcode.BINARY, payload)


def test_build_frame_rfc_examples() -> None:
    # RFC 6455 §5.7.
    assert build_frame(Opcode.TEXT, b"Hello") == bytes.fromhex("810548656c6c6f")
    assert build_frame(Opcode.TEXT, b"Hel", fin=False) == bytes.fromhex("010348656c")
    assert build_frame(Opcode.CONTINUATION, b"lo") == bytes.fromhex("80026c6f")
    assert build_frame(Opcode.PONG, b"Hello") == bytes.fromhex("8a0548656c6c6f")


def test_build_frame_flags() -> None:
    assert build_frame(Opcode.BINARY, b"", rsv1=True)[0] == 0xC2
    assert build_frame(Opcode.BINARY, b"", fin=False, rsv1=True)[0] == 0x42


def test_build_frame_is_unmasked() -> None:
    # §5.1: "A server MUST NOT mask any frames that it sends to the client."
    assert not build_frame(Opcode.BINARY, b"x" * 200)[1] & 0x80


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_build_frame_rejects_bad_control_frames(opcode: Opcode) -> None:
    with pytest.raises(ValueError, match="control frames"):
        build_frame(opcode, b"x" * 126)
    with pytest.raises(ValueError, match="control frames"):
        build_frame(opcode, b"", fin=False)


# -- Parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 5, 125, 126, 65535, 65536])
def test_parse_header(length: int) -> None:
    frame = client_frame(Opcode.BINARY, b"z" * length, fin=False, key=b"wxyz")
    header = parse_header(frame)
    assert header is not None
    assert header.opcode is Opcode.BINARY
    assert not header.fin
    assert (header.rsv1, header.rsv2, header.rsv3) == (False, False, False)
    assert header.length == length
    assert header.mask == b"wxyz"
    assert header.size == len(frame) - length


def test_parse_header_at_offset() -> None:
    frame = client_frame(Opcode.TEXT, b"hi")
    header = parse_header(b"garbage" + frame, 7)
    assert header is not None
    assert header.length == 2
    assert header.mask == KEY


@pytest.mark.parametrize("length", [3, 300, 70000])
def test_parse_header_incomplete(length: int) -> None:
    frame = client_frame(Opcode.TEXT, b"a" * length)
    header = parse_header(frame)
    assert header is not None
    for stop in range(header.size):
        assert parse_header(frame[:stop]) is None


@pytest.mark.parametrize("rsv", [1, 2, 4, 7])
def test_parse_header_reports_rsv_bits(rsv: int) -> None:
    header = parse_header(client_frame(Opcode.TEXT, b"", rsv=rsv))
    assert header is not None
    assert (header.rsv1, header.rsv2, header.rsv3) == (bool(rsv & 4), bool(rsv & 2), bool(rsv & 1))


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_reserved_opcodes(opcode: int) -> None:
    # §5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail
    # the WebSocket Connection_." Detected from the first two bytes.
    error = protocol_error(bytes((0x80 | opcode, 0x80)))
    assert error.code == CloseCode.PROTOCOL_ERROR


def test_unmasked_frame() -> None:
    # §5.1: "The server MUST close the connection upon receiving a frame that is not masked."
    assert protocol_error(b"\x81\x05Hello").code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_control_frame_too_long(opcode: Opcode) -> None:
    assert protocol_error(bytes((0x80 | opcode, 0x80 | 126))).code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_fragmented_control_frame(opcode: Opcode) -> None:
    assert protocol_error(bytes((opcode, 0x80))).code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize(
    "length_bytes",
    [
        b"\x7e\x00\x00",  # 16-bit form for 0
        b"\x7e\x00\x7d",  # 16-bit form for 125
        b"\x7f" + (65535).to_bytes(8, "big"),  # 64-bit form below 65536
        b"\x7f" + (0).to_bytes(8, "big"),
        b"\x7f" + (1 << 63).to_bytes(8, "big"),  # most significant bit set
        b"\x7f" + (2**64 - 1).to_bytes(8, "big"),
    ],
)
def test_bad_length_encodings(length_bytes: bytes) -> None:
    data = bytes((0x82, 0x80 | length_bytes[0])) + length_bytes[1:] + KEY
    assert protocol_error(data).code == CloseCode.PROTOCOL_ERROR


def test_largest_length() -> None:
    data = b"\x82\xff" + (2**63 - 1).to_bytes(8, "big") + KEY
    header = parse_header(data)
    assert header is not None
    assert header.length == 2**63 - 1


@given(
    opcode=st.sampled_from(list(Opcode)),
    payload=st.binary(max_size=70000),
    fin=st.booleans(),
    rsv1=st.booleans(),
    key=st.binary(min_size=4, max_size=4),
)
def test_build_parse_round_trip(
    opcode: Opcode, payload: bytes, fin: bool, rsv1: bool, key: bytes
) -> None:
    if opcode.is_control:
        payload, fin = payload[:125], True
    frame = masked(build_frame(opcode, payload, fin=fin, rsv1=rsv1), key)
    header = parse_header(frame)
    assert header is not None
    assert (header.opcode, header.fin, header.rsv1, header.length) == (
        opcode,
        fin,
        rsv1,
        len(payload),
    )
    assert apply_mask(frame[header.size :], header.mask) == payload


# -- Close payloads ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "valid"),
    [
        (0, False),
        (999, False),
        (1000, True),
        (1001, True),
        (1002, True),
        (1003, True),
        (1004, False),
        (1005, False),
        (1006, False),
        (1007, True),
        (1011, True),
        (1012, True),
        (1013, True),
        (1014, True),
        (1015, False),
        (1016, False),
        (2000, False),
        (2999, False),
        (3000, True),
        (3999, True),
        (4000, True),
        (4999, True),
        (5000, False),
        (65535, False),
    ],
)
def test_is_valid_close_code(code: int, valid: bool) -> None:
    assert is_valid_close_code(code) is valid


def test_encode_close() -> None:
    assert encode_close(1000) == b"\x03\xe8"
    assert encode_close(4000, "héllo") == b"\x0f\xa0" + "héllo".encode()


def test_decode_close() -> None:
    assert decode_close(b"") == (CloseCode.NO_STATUS_RCVD, "")
    assert decode_close(b"\x03\xe8") == (1000, "")
    assert decode_close(b"\x0f\xa0" + "héllo".encode()) == (4000, "héllo")


def test_decode_close_one_byte() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_close(b"\x03")
    assert info.value.code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_decode_close_invalid_code(code: int) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_close(code.to_bytes(2, "big"))
    assert info.value.code == CloseCode.PROTOCOL_ERROR


def test_decode_close_invalid_reason() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_close(b"\x03\xe8\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80")
    assert info.value.code == CloseCode.INVALID_DATA


@given(
    code=st.integers(1000, 4999).filter(is_valid_close_code),
    reason=st.text(max_size=40),
)
def test_close_round_trip(code: int, reason: str) -> None:
    assert decode_close(encode_close(code, reason)) == (code, reason)
