"""Tests of one incoming WebSocket message: UTF-8 fail-fast, the size limit, inflation."""

from __future__ import annotations

import itertools
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgisock.ws.deflate import PerMessageDeflate
from asgisock.ws.frames import CloseCode, ProtocolError
from asgisock.ws.message import IncomingMessage, InflateError


def fed(message: IncomingMessage, pieces: list[bytes]) -> str | bytes:
    for piece in pieces:
        message.feed(piece)
    return message.finish()


def code_of(message: IncomingMessage, pieces: list[bytes]) -> int:
    with pytest.raises(ProtocolError) as info:
        fed(message, pieces)
    return info.value.code


@given(st.text(), st.lists(st.integers(0, 400), max_size=6))
def test_text_in_any_pieces(text: str, cuts: list[int]) -> None:
    data = text.encode()
    points = sorted({0, *(c for c in cuts if c <= len(data)), len(data)})
    pieces = [data[a:b] for a, b in itertools.pairwise(points)]
    assert fed(IncomingMessage(True, None, None), pieces) == text


def test_binary_joined_once() -> None:
    assert fed(IncomingMessage(False, None, None), [b"ab", b"", b"cd"]) == b"abcd"


def test_invalid_utf8_fails_on_the_piece_that_has_it() -> None:
    message = IncomingMessage(True, None, None)
    message.feed(b"ok ")
    with pytest.raises(ProtocolError) as info:
        message.feed(b"\xff")
    assert info.value.code == CloseCode.INVALID_DATA


def test_surrogate_prefix_fails_before_its_third_byte() -> None:
    """RFC 3629 §4: ED A0..BF can never start a valid sequence."""
    message = IncomingMessage(True, None, None)
    with pytest.raises(ProtocolError):
        message.feed(b"\xed\xa0")


def test_truncated_utf8_fails_at_the_end() -> None:
    message = IncomingMessage(True, None, None)
    message.feed("é".encode()[:1])
    with pytest.raises(ProtocolError) as info:
        message.finish()
    assert info.value.code == CloseCode.INVALID_DATA


def test_size_limit_counts_every_piece() -> None:
    assert fed(IncomingMessage(False, 4, None), [b"ab", b"cd"]) == b"abcd"
    assert code_of(IncomingMessage(False, 4, None), [b"ab", b"cde"]) == CloseCode.MESSAGE_TOO_BIG


def test_frame_length_refused_before_its_payload() -> None:
    message = IncomingMessage(False, 10, None)
    message.feed(b"x" * 6)
    message.check_frame_length(4)
    with pytest.raises(ProtocolError):
        message.check_frame_length(5)


def test_frame_length_says_nothing_when_compressed() -> None:
    IncomingMessage(False, 10, PerMessageDeflate()).check_frame_length(10**9)


def test_invalid_utf8_within_the_limit_wins_over_the_limit() -> None:
    assert code_of(IncomingMessage(True, 3, None), [b"a\xffbcd"]) == CloseCode.INVALID_DATA


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def test_inflated_text() -> None:
    text = "κόσμε " * 100
    assert fed(IncomingMessage(True, None, PerMessageDeflate()), [deflated(text.encode())]) == text


def test_inflation_stops_at_the_limit() -> None:
    """A bomb never inflates past one byte over max_size."""
    assert code_of(IncomingMessage(False, 1000, PerMessageDeflate()), [deflated(b"\0" * 10**7)]) == (
        CloseCode.MESSAGE_TOO_BIG)


def test_damaged_data_is_1002_after_what_came_before_it() -> None:
    good = deflated(b"fine text " * 10)
    assert code_of(IncomingMessage(False, None, PerMessageDeflate()), [good + b"\xff" * 8]) == (
        CloseCode.PROTOCOL_ERROR)
    bad_text = deflated(b"\xff" * 20) + b"\xff" * 5
    assert code_of(IncomingMessage(True, None, PerMessageDeflate()), [bad_text]) == CloseCode.INVALID_DATA


def test_inflate_error_is_a_protocol_error() -> None:
    error = InflateError(b"before")
    assert isinstance(error, ProtocolError)
    assert (error.code, error.inflated) == (CloseCode.PROTOCOL_ERROR, b"before")
