"""Tests of the field syntax helpers (RFC 9110 §5)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgisock.http11.headers import (
    FORBIDDEN_VALUE_RE,
    HOST_RE,
    TOKEN_RE,
    has_token,
    list_members,
    parse_digits,
)


@given(st.integers(0, 10**30))
def test_parse_digits_reads_what_str_writes(number: int) -> None:
    assert parse_digits(str(number).encode()) == number


@pytest.mark.parametrize("value", [b"", b"+1", b"-1", b"1_0", b" 1", b"1 ", b"0x10", b"1.0", "\u0661".encode()])
def test_parse_digits_refuses_what_int_would_take(value: bytes) -> None:
    assert parse_digits(value) is None


@pytest.mark.parametrize(("value", "token", "found"), [
    (b"close", b"close", True),
    (b"Keep-Alive, Close", b"close", True),
    (b"keep-alive ,  upgrade", b"upgrade", True),
    (b"closed", b"close", False),
    (b"", b"close", False),
])
def test_has_token(value: bytes, token: bytes, found: bool) -> None:
    assert has_token(value, token) is found


def test_list_members_drops_empty_elements() -> None:
    """RFC 9110 §5.6.1: "a recipient MUST parse and ignore a reasonable number of empty list elements"."""
    assert list_members(b", gzip,,\tChunked , ") == [b"gzip", b"chunked"]


@given(st.binary(max_size=20))
def test_token_is_tchar_only(value: bytes) -> None:
    tchar = set(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
    assert (TOKEN_RE.fullmatch(value) is not None) == (bool(value) and set(value) <= tchar)


@given(st.binary(max_size=20))
def test_forbidden_value_bytes(value: bytes) -> None:
    assert (FORBIDDEN_VALUE_RE.search(value) is not None) == any(b in value for b in b"\0\r\n")


@pytest.mark.parametrize(("host", "valid"), [
    (b"example.com", True), (b"example.com:8080", True), (b"", True), (b"[::1]:80", True),
    (b"127.0.0.1", True), (b"%41b", True), (b"a b", False), (b"[::1", False), (b"a/b", False),
    (b"user@host", False),
])
def test_host_syntax(host: bytes, valid: bool) -> None:
    assert (HOST_RE.fullmatch(host) is not None) is valid
