"""The header fields of a response head: the C encoding against the pure-Python one, and each
against RFC 9110's rules for names and values."""

from __future__ import annotations

import os
import sys
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgisock.exceptions import InvalidResponse
from asgisock.extensions import extensions_disabled
from asgisock.http11 import writer
from asgisock.http11.writer import (
    DefaultHeaders,
    EncodedFields,
    FieldsEncoder,
    encode_fields_c,
    encode_fields_python,
)

IMPLEMENTATIONS = [pytest.param(encode_fields_python, id="python"),
                   pytest.param(encode_fields_c, id="c", marks=pytest.mark.skipif(
                       encode_fields_c is None, reason="asgisock.http11._fields is not built"))]
SPECIAL = DefaultHeaders(server=True, clock=None, extra=[(b"x-served-by", b"one")]).special


def outcome(encode: FieldsEncoder, headers: Any) -> EncodedFields | str:
    """What the response writer makes of ``headers``: the encoded fields, or a refusal (it turns
    TypeError and ValueError into InvalidResponse, as for headers that are not pairs)."""
    try:
        return encode(headers, SPECIAL)
    except (InvalidResponse, TypeError, ValueError):
        return "refused"


NAMES = st.one_of(
    st.sampled_from([b"content-type", b"Content-Type", b"content-length", b"CONTENT-LENGTH", b"connection",
                     b"Connection", b"transfer-encoding", b"Transfer-Encoding", b"server", b"Server",
                     b"x-served-by", b"set-cookie", b"x-a!#$%&'*+-.^_`|~9"]),
    st.binary(max_size=12),
    st.sampled_from(["content-type", b"", b"bad name", b"b\xe9", 7, None, [b"x"]]),
)
VALUES = st.one_of(
    st.sampled_from([b"text/plain", b"13", b"0", b"007", b"", b"+1", b"1_0", b" 1", b"1 ", b"-1", b"1.0",
                     "13", b"close", b"Close", b" keep-alive , CLOSE ", b"\x0bclose\x0c", b"closed",
                     b"upgrade,close", b",", b"chunked", b"9" * 30, b"a\r\nb", b"a\nb", b"a\x00b",
                     b"\xff\x80 obs-text", None, 13]),
    st.binary(max_size=40),
    st.binary(min_size=600, max_size=2000),  # past the C encoding's first buffer
)
ITEMS = st.one_of(
    st.tuples(NAMES, VALUES),
    st.tuples(NAMES, VALUES).map(list),
    st.sampled_from([b"ab", 1, (b"a",), (b"a", b"b", b"c"), [], "xy", None]),
)


@pytest.mark.skipif(encode_fields_c is None, reason="asgisock.http11._fields is not built")
@given(st.lists(ITEMS, max_size=12), st.sampled_from([list, tuple, iter]))
def test_the_c_encoding_gives_what_the_python_one_gives(items: list[Any], container: Any) -> None:
    """Any headers an app could send, well formed or not, as a list, a tuple or an iterator:
    the same fields, Content-Length, close and defaults seen, or both refuse them."""
    assert encode_fields_c is not None
    assert outcome(encode_fields_c, container(items)) == outcome(encode_fields_python, container(items))


WHITESPACE = st.text(" \t\x0b\x0c", max_size=2).map(str.encode)
MEMBERS = st.lists(st.tuples(WHITESPACE, st.sampled_from([b"close", b"CLOSE", b"cLoSe", b"keep-alive", b"closed",
                                                         b"", b"clos", b"upgrade"]), WHITESPACE), max_size=4)


@pytest.mark.parametrize("encode", IMPLEMENTATIONS)
@given(MEMBERS)
def test_close_is_found_in_any_connection_value_that_lists_it(encode: FieldsEncoder,
                                                               members: list[tuple[bytes, bytes, bytes]]) -> None:
    """RFC 9110 §7.6.1: a comma-separated list of options, in any case, with whitespace around
    each; the server closes after the response when one of them is ``close``."""
    value = b",".join(before + member + after for before, member, after in members)
    listed = any(member.lower() == b"close" for _, member, _ in members)
    assert encode([(b"Connection", value)], SPECIAL) == (b"", None, listed, None)


@pytest.mark.parametrize("encode", IMPLEMENTATIONS)
def test_fields_are_encoded_in_the_apps_order_and_case(encode: FieldsEncoder) -> None:
    headers = [(b"Content-Type", b"text/plain"), (b"content-length", b"13"), (b"X-Id", b"")]
    assert encode(headers, SPECIAL) == (b"Content-Type: text/plain\r\ncontent-length: 13\r\nX-Id: \r\n", 13,
                                        False, None)


@pytest.mark.parametrize("encode", IMPLEMENTATIONS)
def test_framing_and_connection_fields_are_the_servers(encode: FieldsEncoder) -> None:
    headers = [(b"Transfer-Encoding", b"chunked"), (b"Connection", b"upgrade, Close"), (b"a", b"b")]
    assert encode(headers, SPECIAL) == (b"a: b\r\n", None, True, None)
    assert encode([(b"connection", b"keep-alive"), (b"connection", b"closed")], SPECIAL) == (b"", None, False, None)


@pytest.mark.parametrize("encode", IMPLEMENTATIONS)
def test_default_fields_the_app_sets_are_reported_lower_case(encode: FieldsEncoder) -> None:
    assert encode([(b"Server", b"mine"), (b"X-Served-By", b"two")], SPECIAL) == (
        b"Server: mine\r\nX-Served-By: two\r\n", None, False, {b"server", b"x-served-by"})


@pytest.mark.parametrize("encode", IMPLEMENTATIONS)
@pytest.mark.parametrize("value", [b"", b"+1", b"1_0", b" 1", b"-1", b"0x1", b"\xd9\xa1", b"9" * 5000])
def test_a_content_length_that_is_not_digits_is_refused(encode: FieldsEncoder, value: bytes) -> None:
    with pytest.raises((InvalidResponse, ValueError)):
        encode([(b"content-length", value)], SPECIAL)


@pytest.mark.parametrize("encode", IMPLEMENTATIONS)
def test_a_second_content_length_is_refused(encode: FieldsEncoder) -> None:
    with pytest.raises(InvalidResponse, match="content-length"):
        encode([(b"content-length", b"1"), (b"Content-Length", b"1")], SPECIAL)
    assert encode([(b"content-length", b"0" * 30 + b"12")], SPECIAL)[1] == 12


@pytest.mark.parametrize("encode", IMPLEMENTATIONS)
@pytest.mark.parametrize(("name", "value"), [(b"bad name", b"x"), (b"", b"x"), (b"a:b", b"x"), ("a", b"x"),
                                             (b"a", b"x\r\nInjected: 1"), (b"a", b"x\n"), (b"a", b"\x00"),
                                             (b"a", "x")])
def test_a_bad_name_or_value_is_refused(encode: FieldsEncoder, name: Any, value: Any) -> None:
    with pytest.raises(InvalidResponse):
        encode([(name, value)], SPECIAL)


@pytest.mark.parametrize("encode", IMPLEMENTATIONS)
@pytest.mark.parametrize("headers", [[b"ab"], [1], [(b"a",)], [(b"a", b"b", b"c")], 5, None])
def test_headers_that_are_not_pairs_raise_what_unpacking_raises(encode: FieldsEncoder, headers: Any) -> None:
    with pytest.raises((TypeError, ValueError, InvalidResponse)):
        encode(headers, SPECIAL)


@pytest.mark.skipif(encode_fields_c is None, reason="asgisock.http11._fields is not built")
def test_the_c_encoding_holds_no_references_and_no_memory() -> None:
    """Every path, taken many times: the objects passed in keep their reference counts, and
    memory comes back (a reference kept on any path would keep each call's new objects)."""
    assert encode_fields_c is not None
    name, value = b"X-Upper-Case", b"v" * 700
    paths: list[Any] = [
        [(name, value), (b"content-length", b"12"), (b"server", b"s")],
        [(name, value), (b"content-length", b"1"), (b"content-length", b"1")],
        [(name, value), (b"content-length", b"x")],
        [(name, value), (b"bad name", value)],
        [(name, value), (name, b"\r")],
        [(name, value), [name, value], (name,)],
        [(name, value), b"ab"],
    ]
    before = sys.getrefcount(name), sys.getrefcount(value)
    tracemalloc.start()
    try:
        for round_ in range(2):
            if round_ == 1:
                start = tracemalloc.get_traced_memory()[0]
            for _ in range(3000):
                for headers in paths:
                    outcome(encode_fields_c, headers)
                    outcome(encode_fields_c, iter(headers))
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert (sys.getrefcount(name), sys.getrefcount(value)) == before
    assert grown < 64 * 1024, grown


def test_heads_are_encoded_with_the_selected_implementation() -> None:
    """What ``.ci/run`` relies on: under ASGISOCK_NO_EXTENSIONS=1 the fallback encodes."""
    expected = "python" if extensions_disabled(os.environ) or encode_fields_c is None else "c"
    assert expected == writer.FIELDS_IMPLEMENTATION
    assert writer.encode_fields is (encode_fields_python if expected == "python" else encode_fields_c)


@pytest.fixture
def restore_selection() -> Iterator[None]:
    before = writer.FIELDS_IMPLEMENTATION
    yield
    writer.select(before)


@pytest.mark.usefixtures("restore_selection")
def test_either_implementation_can_be_selected() -> None:
    assert writer.select("python") == "python" and writer.encode_fields is encode_fields_python
    if encode_fields_c is None:
        with pytest.raises(ImportError):
            writer.select("c")
    else:
        assert writer.select("c") == "c" and writer.encode_fields is encode_fields_c
