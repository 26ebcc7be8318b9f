"""Masking and unmasking of WebSocket payloads (RFC 6455 §5.3).

Every frame a client sends is masked with a 4-byte key, so the server XORs
every byte it receives. This is the one per-byte operation of the protocol,
hence a C implementation (``asgisock.ws._speedups``) with a pure-Python
fallback for interpreters or machines where the extension is not built.

Setting the environment variable ``ASGISOCK_NO_EXTENSIONS=1`` before import
forces the fallback, which lets the test suite and benchmarks compare both.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["MASK_IMPLEMENTATION", "apply_mask"]

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


def _load() -> tuple[Callable[[Buffer, bytes], bytes], str]:
    if os.environ.get("ASGISOCK_NO_EXTENSIONS", "") not in ("", "0"):
        return apply_mask_python, "python"
    try:
        from asgisock.ws._speedups import apply_mask as apply_mask_c
    except ImportError:
        return apply_mask_python, "python"
    return apply_mask_c, "c"


# apply_mask(data, key) -> bytes: XOR ``data`` with the 4-byte ``key`` repeated;
# masking and unmasking are the same operation (RFC 6455 §5.3).
apply_mask, MASK_IMPLEMENTATION = _load()
