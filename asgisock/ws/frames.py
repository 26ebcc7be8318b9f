"""WebSocket frames: the wire format of RFC 6455 §5.2, server side.

Parsing reads one frame header at a time from a buffer and an offset, so a
caller can keep one receive buffer and walk through it without re-slicing.
Payloads are not touched here: the connection unmasks and consumes them as
they arrive, which lets it fail a bad message before the frame is complete.

Building produces unmasked frames only, because "a server MUST NOT mask any
frames that it sends to the client" (RFC 6455 §5.1).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "SHORT_BINARY_HEADERS",
    "SHORT_TEXT_HEADERS",
    "CloseCode",
    "FrameHeader",
    "Opcode",
    "ProtocolError",
    "build_frame",
    "decode_close",
    "encode_close",
    "frame_header",
    "is_valid_close_code",
    "parse_header",
]


class Opcode(IntEnum):
    """Frame opcodes (RFC 6455 §5.2); 3-7 and 11-15 are reserved."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

    @property
    def is_control(self) -> bool:
        """Control opcodes have the high bit of the nibble set (RFC 6455 §5.5)."""
        return self >= 0x8


class CloseCode(IntEnum):
    """Close status codes (RFC 6455 §7.4.1 and the IANA registry)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014


class ProtocolError(Exception):
    """The peer broke the protocol; the connection must be failed with ``code``.

    RFC 6455 §7.1.7 "Fail the WebSocket Connection": the code is sent in our
    close frame, so it is one of 1002 (protocol error), 1007 (invalid data)
    or 1009 (message too big).
    """

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(f"{code.value} {reason}")
        self.code = code
        self.reason = reason


@dataclass(slots=True)
class FrameHeader:
    """The fixed part of a frame, everything before the payload (RFC 6455 §5.2)."""

    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool
    opcode: Opcode
    length: int
    mask: bytes
    size: int
    """How many bytes the header itself takes: 6, 8 or 14 for a masked frame."""


# Opcode by the low nibble of the first byte; None for reserved values.
_OPCODES: tuple[Opcode | None, ...] = tuple(
    Opcode(value) if value in Opcode._value2member_map_ else None for value in range(16)
)

_UINT16 = struct.Struct("!H")
_UINT64 = struct.Struct("!Q")
_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


def _fail(reason: str) -> ProtocolError:
    return ProtocolError(CloseCode.PROTOCOL_ERROR, reason)


def _header_error(first: int, second: int) -> ProtocolError:
    """Explain what is wrong with the first two bytes of a frame (cold path)."""
    if _OPCODES[first & 0x0F] is None:
        # §5.2: "If an unknown opcode is received, the receiving endpoint MUST
        # _Fail the WebSocket Connection_."
        return _fail(f"reserved opcode {first & 0x0F}")
    if not second & 0x80:
        # §5.1: "The server MUST close the connection upon receiving a frame
        # that is not masked."
        return _fail("client frame is not masked")
    # §5.5: "All control frames MUST have a payload length of 125 bytes or less
    # and MUST NOT be fragmented."
    if not first & 0x80:
        return _fail("fragmented control frame")
    return _fail("control frame payload longer than 125 bytes")


def _extended_length(buf: bytes, pos: int, short: int) -> int:
    """Decode a 16- or 64-bit payload length, rejecting non-minimal encodings.

    §5.2: "the minimal number of bytes MUST be used to encode the length" and
    for the 64-bit form "the most significant bit MUST be 0".
    """
    if short == 126:
        length: int = _UINT16.unpack_from(buf, pos)[0]
        if length < 126:
            raise _fail("payload length not minimally encoded")
        return length
    length = _UINT64.unpack_from(buf, pos)[0]
    if length >> 63:
        raise _fail("payload length has its most significant bit set")
    if length < 65536:
        raise _fail("payload length not minimally encoded")
    return length


def parse_header(buf: bytes, pos: int = 0) -> FrameHeader | None:
    """Parse the header of a client frame starting at ``buf[pos]``.

    Returns None while the header is incomplete. Raises ProtocolError for
    what is wrong in any context (reserved opcode, unmasked frame, bad control
    frame, non-minimal length) as soon as the bytes that show it arrive; RSV
    bits and fragmentation order depend on the negotiated extensions and the
    message in progress, so the connection checks them.
    """
    available = len(buf) - pos
    if available < 2:
        return None
    first = buf[pos]
    second = buf[pos + 1]
    opcode = _OPCODES[first & 0x0F]
    short = second & 0x7F
    if opcode is None or second < 0x80 or (opcode >= 0x8 and (first < 0x80 or short > 125)):
        raise _header_error(first, second)
    if short < 126:
        size, length = 6, short
    else:
        size = 8 if short == 126 else 14
        if available < size:
            return None
        length = _extended_length(buf, pos + 2, short)
    if available < size:
        return None
    rsv = first & 0x70
    return FrameHeader(
        first >= 0x80,
        rsv >= 0x40,
        bool(rsv & 0x20),
        bool(rsv & 0x10),
        opcode,
        length,
        buf[pos + size - 4 : pos + size],
        size,
    )


# The two header bytes of a final, uncompressed text or binary frame by payload length, for
# every length of the 7-bit form: the commonest server frames cost one concatenation.
SHORT_TEXT_HEADERS: tuple[bytes, ...] = tuple(bytes((0x80 | Opcode.TEXT, n)) for n in range(126))
SHORT_BINARY_HEADERS: tuple[bytes, ...] = tuple(bytes((0x80 | Opcode.BINARY, n)) for n in range(126))


def frame_header(opcode: Opcode, length: int, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """The header of one unmasked server frame with a ``length``-byte payload (RFC 6455 §5.2)."""
    first = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0)
    if opcode >= 0x8 and (length > 125 or not fin):
        raise ValueError("control frames must be unfragmented with at most 125 bytes")
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return _HEADER_16.pack(first, 126, length)
    return _HEADER_64.pack(first, 127, length)


def build_frame(opcode: Opcode, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """Serialize one unmasked server frame (RFC 6455 §5.2)."""
    return frame_header(opcode, len(payload), fin=fin, rsv1=rsv1) + payload


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a close frame on the wire (RFC 6455 §7.4).

    1005, 1006 and 1015 are reserved for reporting and "MUST NOT be set as a
    status code in a Close control frame by an endpoint" (§7.4.1); 1004 is
    reserved; 1016-2999 are unassigned or reserved for future RFCs; 3000-4999
    belong to libraries and applications.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def encode_close(code: int, reason: str = "") -> bytes:
    """Close frame payload: a 2-byte code then a UTF-8 reason (RFC 6455 §5.5.1)."""
    return _UINT16.pack(code) + reason.encode("utf-8")


def decode_close(payload: bytes) -> tuple[int, str]:
    """Parse a peer's close payload into (code, reason).

    An empty payload means no status code: reported as 1005 (§7.1.5). A
    1-byte payload cannot hold a code, invalid codes are a protocol error, and
    a reason that is not UTF-8 is invalid data (§5.5.1: "the body MAY contain
    UTF-8-encoded data").
    """
    if not payload:
        return CloseCode.NO_STATUS_RCVD, ""
    if len(payload) == 1:
        raise _fail("close frame payload of 1 byte")
    code: int = _UINT16.unpack_from(payload)[0]
    if not is_valid_close_code(code):
        raise _fail(f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(CloseCode.INVALID_DATA, "close reason is not UTF-8") from None
    return code, reason
