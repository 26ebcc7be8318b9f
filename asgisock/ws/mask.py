"""Masking and unmasking of WebSocket payloads (RFC 6455 §5.3).

Every frame a client sends is masked with a 4-byte key, so the server XORs
every byte it receives. This is the one per-byte operation of the protocol,
hence a C implementation (``asgisock.ws._speedups``) with a pure-Python
fallback for interpreters or machines where the extension is not built.

Which one runs is chosen outside this package, with :func:`select`: the
environment variable ``ASGISOCK_NO_EXTENSIONS=1`` is read by
``asgisock.extensions`` when ``asgisock`` is imported, so the codec itself
never looks at the environment. Until then the C one is used if it is built.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from asgisock.implementations import Implementation, choose

__all__ = ["MASK_IMPLEMENTATION", "apply_mask", "apply_mask_c", "apply_mask_python", "select"]

Buffer = bytes | bytearray | memoryview

# Below this size one big-integer XOR is cheapest; above it, translating the
# four byte lanes through precomputed tables wins by 2-4x (see bench/).
_SMALL_PAYLOAD = 640

# _XOR_TABLES[k] maps each byte b to b ^ k, for bytes.translate.
_XOR_TABLES = tuple(bytes(b ^ k for b in range(256)) for k in range(256))


def _check_key(key: bytes) -> None:
    if len(key) != 4:
        raise ValueError("mask key must be 4 bytes long")


def _mask_small(data: Buffer, key: bytes) -> bytes:
    """XOR as one big integer: few Python operations, cheap for short data."""
    size = len(data)
    if size == 0:
        return b""
    mask = (key * ((size + 3) // 4))[:size]
    xored = int.from_bytes(data, "little") ^ int.from_bytes(mask, "little")
    return xored.to_bytes(size, "little")


def _mask_large(data: Buffer, key: bytes) -> bytes:
    """XOR each of the four byte lanes ``data[i::4]`` with one table lookup pass."""
    buf = bytearray(data)
    for lane in range(4):
        buf[lane::4] = buf[lane::4].translate(_XOR_TABLES[key[lane]])
    return bytes(buf)


def apply_mask_python(data: Buffer, key: bytes) -> bytes:
    """Pure-Python ``apply_mask``, choosing the faster method for the size."""
    _check_key(key)
    if len(data) < _SMALL_PAYLOAD:
        return _mask_small(data, key)
    return _mask_large(data, key)


MaskFunction = Callable[[Buffer, bytes], bytes]

apply_mask_c: MaskFunction | None
try:
    from asgisock.ws._speedups import apply_mask as apply_mask_c
except ImportError:  # not built for this interpreter
    apply_mask_c = None


def select(implementation: Implementation | Literal["auto"]) -> Implementation:
    """Make ``implementation`` the one :data:`apply_mask` names, and return its name.

    "auto" is the C one if it is built, else the pure-Python one; asking for "c" where it is
    not built raises ImportError. The codec calls ``mask.apply_mask`` through this module, so
    the choice applies to every frame unmasked after it; servers make it once, at startup.
    """
    global apply_mask, MASK_IMPLEMENTATION
    apply_mask, MASK_IMPLEMENTATION = choose(implementation, apply_mask_c, apply_mask_python, "asgisock.ws._speedups")
    return MASK_IMPLEMENTATION


# apply_mask(data, key) -> bytes: XOR ``data`` with the 4-byte ``key`` repeated;
# masking and unmasking are the same operation (RFC 6455 §5.3).
apply_mask: MaskFunction
MASK_IMPLEMENTATION: Implementation
select("auto")
