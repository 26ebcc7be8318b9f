"""Tests of WebSocket payload masking, for both the C and the Python implementation."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgisock import ws
from asgisock.extensions import extensions_disabled
from asgisock.ws import mask
from asgisock.ws.connection import BytesMessage, WebSocketConnection
from asgisock.ws.mask import MASK_IMPLEMENTATION, apply_mask, apply_mask_python

MaskFunction = Callable[[bytes | bytearray | memoryview, bytes], bytes]


def reference_mask(data: bytes, key: bytes) -> bytes:
    """RFC 6455 §5.3: octet i of the output is octet i of the input XOR key[i % 4]."""
    return bytes(byte ^ key[i % 4] for i, byte in enumerate(data))


def implementations() -> list[MaskFunction]:
    found: list[MaskFunction] = [apply_mask_python]
    try:
        from asgisock.ws._speedups import apply_mask as apply_mask_c
    except ImportError:
        return found
    found.append(apply_mask_c)
    return found


IMPLEMENTATIONS = pytest.mark.parametrize(
    "impl", implementations(), ids=lambda impl: impl.__module__
)

# Sizes around both the 8-byte stride of the C loop and the Python size switch.
SIZES = [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 125, 126, 639, 640, 641, 4099, 65536]


@IMPLEMENTATIONS
@pytest.mark.parametrize("size", SIZES)
def test_matches_reference(impl: MaskFunction, size: int) -> None:
    data = os.urandom(size)
    key = b"\x37\xfa\x21\x3d"
    assert impl(data, key) == reference_mask(data, key)


@IMPLEMENTATIONS
def test_rfc_example(impl: MaskFunction) -> None:
    # RFC 6455 §5.7: a masked "Hello" with key 37 fa 21 3d.
    assert impl(b"Hello", b"\x37\xfa\x21\x3d") == bytes.fromhex("7f9f4d5158")


@IMPLEMENTATIONS
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_accepts_buffers(impl: MaskFunction, kind: Callable[[bytes], object]) -> None:
    data = os.urandom(1000)
    key = os.urandom(4)
    buffer = kind(data)
    assert isinstance(buffer, bytes | bytearray | memoryview)
    result = impl(buffer, key)
    assert type(result) is bytes
    assert result == reference_mask(data, key)


@IMPLEMENTATIONS
def test_memoryview_slice(impl: MaskFunction) -> None:
    data = os.urandom(3000)
    key = os.urandom(4)
    assert impl(memoryview(data)[13:2013], key) == reference_mask(data[13:2013], key)


@IMPLEMENTATIONS
@pytest.mark.parametrize("key", [b"", b"abc", b"abcde"])
def test_rejects_bad_key(impl: MaskFunction, key: bytes) -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        impl(b"data", key)


@IMPLEMENTATIONS
@given(data=st.binary(max_size=2000), key=st.binary(min_size=4, max_size=4))
def test_involution(impl: MaskFunction, data: bytes, key: bytes) -> None:
    masked = impl(data, key)
    assert masked == reference_mask(data, key)
    assert impl(masked, key) == data


def test_python_methods_agree_around_switch() -> None:
    key = os.urandom(4)
    for size in range(mask._SMALL_PAYLOAD - 9, mask._SMALL_PAYLOAD + 9):
        data = os.urandom(size)
        assert mask._mask_small(data, key) == mask._mask_large(data, key)


def test_implementation_name() -> None:
    assert MASK_IMPLEMENTATION in ("c", "python")
    if MASK_IMPLEMENTATION == "python":
        assert apply_mask is apply_mask_python


def test_env_var_forces_python() -> None:
    code = "from asgisock.ws.mask import MASK_IMPLEMENTATION as m; print(m)"
    env = {**os.environ, "ASGISOCK_NO_EXTENSIONS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "python"


def test_the_environment_chooses_the_implementation() -> None:
    """What ``.ci/run`` relies on: under ASGISOCK_NO_EXTENSIONS=1 the fallback is in use."""
    if extensions_disabled(os.environ):
        expected = "python"
    else:
        expected = "python" if mask.apply_mask_c is None else "c"
    assert MASK_IMPLEMENTATION == mask.MASK_IMPLEMENTATION == ws.MASK_IMPLEMENTATION == expected
    assert mask.apply_mask is ws.apply_mask is (apply_mask_python if expected == "python" else mask.apply_mask_c)


@pytest.mark.parametrize(("value", "disabled"), [(None, False), ("", False), ("0", False), ("1", True),
                                                 ("yes", True)])
def test_which_values_disable_the_extensions(value: str | None, disabled: bool) -> None:
    assert extensions_disabled({} if value is None else {"ASGISOCK_NO_EXTENSIONS": value}) is disabled


@pytest.fixture
def restore_selection() -> Iterator[None]:
    before = mask.MASK_IMPLEMENTATION
    yield
    mask.select(before)


@pytest.mark.usefixtures("restore_selection")
def test_select_the_fallback() -> None:
    assert mask.select("python") == "python"
    assert mask.apply_mask is ws.apply_mask is apply_mask_python
    assert ws.MASK_IMPLEMENTATION == "python"


@pytest.mark.usefixtures("restore_selection")
def test_select_c() -> None:
    if mask.apply_mask_c is None:
        with pytest.raises(ImportError):
            mask.select("c")
    else:
        assert mask.select("c") == "c"
        assert mask.apply_mask is mask.apply_mask_c


def test_the_codec_unmasks_with_the_selected_implementation(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def counting(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
        calls.append(len(data))
        return apply_mask_python(data, key)

    monkeypatch.setattr(mask, "apply_mask", counting)
    key = b"abcd"
    conn = WebSocketConnection()
    conn.receive_data(bytes((0x82, 0x80 | 5)) + key + apply_mask_python(b"hello", key))
    assert calls == [5]
    assert conn.events_received() == [BytesMessage(b"hello")]
