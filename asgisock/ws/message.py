"""Reassembly of one incoming data message from payload pieces (RFC 6455 §5.4, §5.6).

A message arrives as one or more frames, and each frame's payload may arrive
over several reads. Every piece is checked as soon as it arrives, for two
reasons: a server must not buffer more than ``max_size`` bytes to discover a
message is too big, and text must fail fast on the first invalid UTF-8 byte
(Autobahn TestSuite 6.4.*) rather than when the message ends.
"""

from __future__ import annotations

import codecs
from typing import NoReturn, Protocol

from asgisock.ws.frames import CloseCode, ProtocolError

__all__ = ["IncomingMessage", "InflateError", "Inflater"]

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


class InflateError(ProtocolError):
    """Compressed data that does not inflate (1002), and what it inflated to before the damage.

    ``inflated`` (at most the ``max_length`` of the call) comes before the damage in the
    stream, so a problem found in it is the connection's first one. zlib keeps nothing of a
    call that fails, so without these bytes the close code would depend on how the input
    was split into calls: whole, 1002; in pieces, whatever the earlier pieces' output shows.
    """

    def __init__(self, inflated: bytes) -> None:
        super().__init__(CloseCode.PROTOCOL_ERROR, "invalid compressed data")
        self.inflated = inflated


class Inflater(Protocol):
    """The decompression half of a negotiated extension (permessage-deflate)."""

    def decompress(self, data: bytes, max_length: int) -> bytes:
        """Inflate ``data``; return at most ``max_length`` bytes (0: no limit).

        Output beyond ``max_length`` is never produced, which is what bounds
        the memory a compressed message can make the server allocate. Damaged
        input raises ``InflateError``.
        """

    def end_message(self, max_length: int) -> bytes:
        """Inflate whatever ends the message, then forget it if the context is not kept."""


def too_big(max_size: int) -> ProtocolError:
    return ProtocolError(CloseCode.MESSAGE_TOO_BIG, f"message larger than {max_size} bytes")


def _invalid_utf8() -> ProtocolError:
    return ProtocolError(CloseCode.INVALID_DATA, "invalid UTF-8 in text message")


class IncomingMessage:
    """A text or binary message in progress, fed unmasked payload pieces.

    For text the pieces are decoded as they come, so validation and decoding
    are a single pass; for binary they are kept as a list and joined once.
    ``size`` counts payload bytes after decompression, the unit of ``max_size``.
    """

    __slots__ = ("_decoder", "_inflater", "_max_size", "_parts", "_text", "is_text", "size")

    def __init__(self, is_text: bool, max_size: int | None, inflater: Inflater | None) -> None:
        self.is_text = is_text
        self.size = 0
        self._max_size = max_size
        self._inflater = inflater
        self._parts: list[bytes] = []
        self._text: list[str] = []
        self._decoder = _Utf8Decoder() if is_text else None

    def check_frame_length(self, length: int) -> None:
        """Fail before reading a frame whose payload alone crosses ``max_size``.

        Only possible without compression: a compressed frame's length says
        nothing about how big it inflates.
        """
        limit = self._max_size
        if self._inflater is None and limit is not None and self.size + length > limit:
            raise too_big(limit)

    def feed(self, data: bytes) -> None:
        """Add a piece of (possibly compressed) payload."""
        if self._inflater is not None:
            try:
                data = self._inflater.decompress(data, self._room())
            except InflateError as exc:
                self._fail_inflating(exc)
        self._add(data)

    def finish(self) -> str | bytes:
        """The whole message, once its final frame's payload has been fed."""
        if self._inflater is not None:
            try:
                self._add(self._inflater.end_message(self._room()))
            except InflateError as exc:
                self._fail_inflating(exc)
        if self._decoder is None:
            return b"".join(self._parts)
        try:
            self._text.append(self._decoder.decode(b"", final=True))
        except UnicodeDecodeError:
            # §8.1: a text message ending inside a UTF-8 sequence is invalid.
            raise _invalid_utf8() from None
        return "".join(self._text)

    def _fail_inflating(self, error: InflateError) -> NoReturn:
        """Raise the first problem in stream order: one in the bytes inflated before the
        damage (1007, 1009), else the damage (1002)."""
        self._add(error.inflated)
        raise error

    def _room(self) -> int:
        """The ``max_length`` to inflate with: one byte past the limit shows it was crossed."""
        if self._max_size is None:
            return 0
        return self._max_size - self.size + 1

    def _add(self, data: bytes) -> None:
        self.size += len(data)
        limit = self._max_size
        if limit is not None and self.size > limit:
            if self._decoder is not None:
                # The bytes within the limit come first in the stream: an invalid sequence
                # among them is the first problem (1007), however the input was split.
                self._decode(data[: len(data) - (self.size - limit)])
            raise too_big(limit)
        if self._decoder is None:
            self._parts.append(data)
            return
        self._decode(data)

    def _decode(self, data: bytes) -> None:
        assert self._decoder is not None
        try:
            self._text.append(self._decoder.decode(data))
        except UnicodeDecodeError:
            # §8.1: "When an endpoint is to interpret a byte stream as UTF-8 but
            # finds that the byte stream is not, in fact, a valid UTF-8 stream,
            # that endpoint MUST _Fail the WebSocket Connection_."
            raise _invalid_utf8() from None
        _check_pending_surrogate(self._decoder)


def _check_pending_surrogate(decoder: codecs.IncrementalDecoder) -> None:
    """Fail on ED A0..BF at once instead of one byte later.

    CPython's decoder rejects most impossible prefixes as soon as they appear
    (F4 90, E0 80, ...) but holds ED A0, the start of a UTF-16 surrogate, until
    its third byte arrives; no continuation can make it valid (RFC 3629 §4).
    """
    pending: bytes = decoder.getstate()[0]
    if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
        raise _invalid_utf8()
