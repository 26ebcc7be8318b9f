"""The permessage-deflate extension (RFC 7692), server side.

Negotiation picks the first offer in the client's ``Sec-WebSocket-Extensions``
that the server can honour exactly; an offer it cannot (unknown, duplicate or
malformed parameters) is skipped, never an error, as RFC 7692 §5 lets a
server decline any offer.

Memory. A zlib compressor with a 15-bit window and the default memLevel takes
about 256 KiB and a decompressor about 40 KiB, which would dominate the cost
of an idle connection. So both are created lazily, on the first message that
needs them, and dropped as soon as they are no longer needed: after each
message in a direction with "no context takeover", and all of them when the
connection closes (``close()``).

Bounded inflation. A few kilobytes of deflate can inflate to gigabytes.
``decompress`` never produces more than ``max_length`` bytes, so the
connection's ``max_size`` is enforced while inflating, before the bytes exist.

Damaged input. zlib raises for a call's whole input and keeps nothing of what
it inflated before the damage, which may hold an earlier problem (invalid
UTF-8, the size limit crossed); the close code would then depend on how the
input was split into reads. So the inflater keeps a way back to its state
before each call: a fresh decompressor, or a copy taken as the message began,
and the message's input since. Only a failing call uses it (``_salvage``),
to inflate that input again up to the damage. With the client's context kept
that is one ``decompressobj.copy()`` per message (about 0.5 µs: the copy of
a 32 KiB window); nothing of it outlives the message, so an idle connection
holds no more than before.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from asgisock.ws.handshake import ExtensionOffer
from asgisock.ws.message import InflateError

__all__ = [
    "MAX_WINDOW_BITS",
    "MIN_OFFER_WINDOW_BITS",
    "MIN_WINDOW_BITS",
    "DeflateSettings",
    "PerMessageDeflate",
    "negotiate",
]

EXTENSION_NAME = "permessage-deflate"

# §7.2.1: a message ends with the 4 bytes of an empty stored block, which the
# sender removes and the receiver appends back before inflating the tail.
_EMPTY_BLOCK = b"\x00\x00\xff\xff"

MIN_OFFER_WINDOW_BITS = 8
"""§7.1.2.1: a peer's window bits "MUST be an integer in the range 8 to 15"."""
MAX_WINDOW_BITS = 15
"""The largest LZ77 window deflate has (32 KiB), in offers and for the server's own window."""
MIN_WINDOW_BITS = 9
"""The smallest window the server compresses with: zlib (>= 1.2.9) refuses 8 for raw deflate."""

# Input kept for re-inflating before a new copy of the inflater replaces it: one copy per
# 64 KiB of a long message is noise next to inflating those 64 KiB.
_REPLAY_LIMIT = 64 * 1024

# Re-inflating a failed call goes this many bytes at a time until the damage, then byte by byte.
_SALVAGE_STEP = 1024


@dataclass(frozen=True)
class DeflateSettings:
    """The server's policy for permessage-deflate."""

    enabled: bool = True
    server_max_window_bits: int = MAX_WINDOW_BITS
    """Largest LZ77 window (2**bits bytes) the server compresses with; smaller saves memory."""
    server_no_context_takeover: bool = False
    """Compress each message on its own: worse ratio, no compressor kept between messages."""
    compress_threshold: int = 0
    """Messages shorter than this many bytes are sent uncompressed."""

    def __post_init__(self) -> None:
        if not MIN_WINDOW_BITS <= self.server_max_window_bits <= MAX_WINDOW_BITS:
            raise ValueError(
                f"server_max_window_bits must be between {MIN_WINDOW_BITS} and {MAX_WINDOW_BITS}"
            )
        if self.compress_threshold < 0:
            raise ValueError("compress_threshold must not be negative")


class PerMessageDeflate:
    """Compression state of one connection after negotiation (RFC 7692 §7).

    ``server_no_context_takeover``: we reset our compressor after each message
    (§7.1.1.1). ``client_no_context_takeover``: the client resets its
    compressor after each message, so we can drop our decompressor too
    (§7.1.1.2). Incoming messages are always inflated with a 15-bit window,
    which reads streams made with any smaller one.
    """

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int = MAX_WINDOW_BITS,
        compress_threshold: int = 0,
    ) -> None:
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = max(server_max_window_bits, MIN_WINDOW_BITS)
        self.compress_threshold = compress_threshold
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None
        # The way back for _salvage: the decompressor as it was before the input in ``_replay``
        # (a copy, or None for a fresh one); both are dropped at the end of each message.
        self._checkpoint: zlib._Decompress | None = None
        self._replay: list[bytes] = []
        self._replay_size = 0

    def should_compress(self, size: int) -> bool:
        return size >= self.compress_threshold

    def compress(self, data: bytes) -> bytes:
        """Compress a whole message into the payload of one RSV1 frame (§7.2.1)."""
        if self._compressor is None:
            bits = self.server_max_window_bits
            # zlib's deflate state takes 2**(bits+2) + 2**(memLevel+9) bytes: scale memLevel with
            # the window (15 -> 8, zlib's default; 12 -> 5, 44 KiB a connection with inflate).
            self._compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -bits, max(1, min(8, bits - 7))
            )
        compressed = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        if self.server_no_context_takeover:
            self._compressor = None
        # §7.2.1: "Remove 4 octets (that are 0x00 0x00 0xff 0xff) from the tail end."
        return compressed[:-4] if compressed.endswith(_EMPTY_BLOCK) else compressed

    def decompress(self, data: bytes, max_length: int) -> bytes:
        """Inflate part of a message; at most ``max_length`` bytes come out (0: no limit).

        Damaged data raises ``InflateError`` with the bytes inflated before the damage.
        """
        inflater = self._decompressor
        if inflater is None:
            # A message's first piece, and a fresh decompressor: its own checkpoint (None).
            inflater = self._decompressor = zlib.decompressobj(-MAX_WINDOW_BITS)
        elif not self._replay or self._replay_size > _REPLAY_LIMIT:
            # The first piece with the context kept, or a long message's next stretch.
            self._checkpoint = inflater.copy()
            self._replay.clear()
            self._replay_size = 0
        try:
            inflated = inflater.decompress(data, max_length)
        except zlib.error:
            raise InflateError(self._salvage(data, max_length)) from None
        self._replay.append(data)
        self._replay_size += len(data)
        return inflated

    def end_message(self, max_length: int) -> bytes:
        """Inflate the end of a message: §7.2.2 "Append 4 octets of 0x00 0x00 0xff 0xff"."""
        tail = self.decompress(_EMPTY_BLOCK, max_length)
        self._forget_replay()
        if self.client_no_context_takeover:
            self._decompressor = None
        return tail

    def _forget_replay(self) -> None:
        """Drop the way back between messages: an idle connection keeps no copy."""
        self._checkpoint = None
        self._replay.clear()
        self._replay_size = 0

    def _salvage(self, failed: bytes, max_length: int) -> bytes:
        """What ``failed`` inflates to before the damage, at most ``max_length`` bytes.

        The decompressor is rebuilt as it was before that input, from the checkpoint and
        the input fed since (calls that succeeded, each below its limit, so all of their
        input was consumed). The result does not depend on how the input was split into
        calls: bytes decoded from the byte where zlib finds the damage count as after it.
        """
        inflater = zlib.decompressobj(-MAX_WINDOW_BITS) if self._checkpoint is None else self._checkpoint.copy()
        for piece in self._replay:
            inflater.decompress(piece)
        return _inflate_until_damage(inflater, failed, max_length)

    def close(self) -> None:
        """Release both zlib contexts; a later message would start fresh ones."""
        self._compressor = None
        self._decompressor = None
        self._forget_replay()


def _inflate_until_damage(inflater: zlib._Decompress, data: bytes, max_length: int) -> bytes:
    """Inflate ``data`` up to the byte where zlib reports damage, or ``max_length`` bytes.

    A step that fails is taken again from a copy made before it, a byte at a time, since a
    failing call returns nothing; the byte that fails contributes nothing either.
    """
    pieces: list[bytes] = []
    size = pos = 0
    step = _SALVAGE_STEP
    while pos < len(data) and not (max_length and size >= max_length):
        before = inflater.copy() if step > 1 else inflater
        try:
            piece = inflater.decompress(data[pos : pos + step], max_length and max_length - size)
        except zlib.error:
            if step == 1:
                break
            inflater, step = before, 1
            continue
        pieces.append(piece)
        size += len(piece)
        pos += step
    return b"".join(pieces)


@dataclass(frozen=True)
class _Offer:
    """What a well-formed permessage-deflate offer asks of the server (RFC 7692 §7.1)."""

    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int | None


def _window_bits(value: str | None) -> int | None:
    """An offer's window bits, written as decimal digits without leading zeros (§7.1.2.1)."""
    if value is None or not (value.isascii() and value.isdigit()) or value.startswith("0"):
        return None
    bits = int(value)
    return bits if MIN_OFFER_WINDOW_BITS <= bits <= MAX_WINDOW_BITS else None


def _valid_param(name: str, value: str | None) -> bool:
    if name in ("server_no_context_takeover", "client_no_context_takeover"):
        return value is None
    if name == "server_max_window_bits":
        return _window_bits(value) is not None
    if name == "client_max_window_bits":
        # Bare, it only says the client could honour a limit; we set none, as we
        # inflate with the largest window anyway.
        return value is None or _window_bits(value) is not None
    return False


def _parse_offer(params: tuple[tuple[str, str | None], ...]) -> _Offer | None:
    """Read an offer's parameters; None if any is unknown, repeated or malformed.

    §7.1: "A server MUST decline an extension negotiation offer for this
    extension if ... The negotiation offer contains an extension parameter not
    defined for use in an offer. The negotiation offer has an extension
    parameter with an invalid value. The negotiation offer has multiple
    extension parameters with the same name."
    """
    values = dict(params)
    if len(values) != len(params):
        return None
    if not all(_valid_param(name, value) for name, value in params):
        return None
    return _Offer(
        server_no_context_takeover="server_no_context_takeover" in values,
        client_no_context_takeover="client_no_context_takeover" in values,
        server_max_window_bits=_window_bits(values.get("server_max_window_bits")),
    )


def _accept(offer: _Offer, settings: DeflateSettings) -> tuple[str, PerMessageDeflate]:
    """Build the response for an acceptable offer, honouring each of its parameters.

    ``server_max_window_bits`` is answered with the smaller of the offer and
    our setting; an offer of 8 is answered with 9, because zlib cannot
    compress raw deflate with a 256-byte window. That exceeds the offer
    (§7.1.2.1 asks for "the same or smaller"), but it is the only way to use
    compression with zlib-based clients, which have the same limitation and
    accept 9 (Autobahn TestSuite 13.3/13.5 expect this).
    """
    no_context = settings.server_no_context_takeover or offer.server_no_context_takeover
    bits = settings.server_max_window_bits
    if offer.server_max_window_bits is not None:
        bits = min(bits, offer.server_max_window_bits)
    bits = max(bits, MIN_WINDOW_BITS)
    params = [EXTENSION_NAME]
    if no_context:
        # §7.1.1.1: the server may add it even when the client did not ask.
        params.append("server_no_context_takeover")
    if offer.client_no_context_takeover:
        # Accepting it lets us drop the decompressor between messages.
        params.append("client_no_context_takeover")
    if offer.server_max_window_bits is not None:
        # §7.1.2.1: only answered when offered.
        params.append(f"server_max_window_bits={bits}")
    extension = PerMessageDeflate(
        server_no_context_takeover=no_context,
        client_no_context_takeover=offer.client_no_context_takeover,
        server_max_window_bits=bits,
        compress_threshold=settings.compress_threshold,
    )
    return "; ".join(params), extension


def negotiate(
    offers: list[ExtensionOffer], settings: DeflateSettings
) -> tuple[str, PerMessageDeflate] | None:
    """Accept the first permessage-deflate offer we can honour, in the client's order.

    Returns the ``Sec-WebSocket-Extensions`` response value and the
    connection's compression state, or None to use no compression.
    """
    if not settings.enabled:
        return None
    for offer in offers:
        if offer.name.lower() != EXTENSION_NAME:
            continue
        parsed = _parse_offer(offer.params)
        if parsed is not None:
            return _accept(parsed, settings)
    return None
