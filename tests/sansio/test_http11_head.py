"""Response heads: the C encoding against the pure-Python one, and each against RFC 9110's rules
for field names, values, framing and the connection option."""

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
    CHUNKED,
    CLOSE_DELIMITED,
    CONTENT_LENGTH,
    NO_BODY,
    DefaultHeaders,
    EncodedHead,
    HeadEncoder,
    encode_head_c,
    encode_head_python,
)

IMPLEMENTATIONS = [pytest.param(encode_head_python, id="python"),
                   pytest.param(encode_head_c, id="c", marks=pytest.mark.skipif(
                       encode_head_c is None, reason="asgisock.http11._head is not built"))]
NOW = 1_790_000_000.0
DEFAULTS = DefaultHeaders(server=True, clock=lambda: NOW, extra=[(b"x-served-by", b"one")])
ENDING = b"server: asgisock\r\nx-served-by: one\r\ndate: Mon, 21 Sep 2026 14:13:20 GMT\r\n"


def fields(encode: HeadEncoder, headers: Any, **options: Any) -> tuple[bytes, Any, int | None, bool]:
    """The head of a 200 to a keep-alive HTTP/1.1 GET whose 5-byte body was sent whole (or as
    ``options`` say), less its status line and default fields."""
    arguments = {"head_request": False, "http11": True, "keep_alive": True, "body_length": 5, **options}
    data, framing, content_length, keep_alive = encode(200, headers, DEFAULTS, *arguments.values())
    status_line = b"HTTP/1.1 200 OK\r\n" if arguments["http11"] else b"HTTP/1.0 200 OK\r\n"
    assert data.startswith(status_line)
    return data[len(status_line):].replace(ENDING, b""), framing, content_length, keep_alive


def outcome(encode: HeadEncoder, status: Any, headers: Any, defaults: DefaultHeaders, head_request: bool,
            http11: bool, keep_alive: bool, body_length: int | None) -> EncodedHead | str:
    """The encoded head, or InvalidResponse: the only exception either encoding may raise."""
    try:
        return encode(status, headers, defaults, head_request, http11, keep_alive, body_length)
    except InvalidResponse:
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
ITEMS: st.SearchStrategy[Any] = st.one_of(
    st.tuples(NAMES, VALUES),
    st.tuples(NAMES, VALUES).map(list),
    st.sampled_from([b"ab", 1, (b"a",), (b"a", b"b", b"c"), [], "xy", None]),
)


STATUSES = st.one_of(st.sampled_from([200, 204, 304, 100, 101, 103, 199, 404, 599, 99, 600, 0, -1, 2**70, True,
                                     200.0, "200", None]), st.integers(min_value=100, max_value=599))
DEFAULT_SETS = st.sampled_from([DEFAULTS, DefaultHeaders(server=False, clock=None),
                                DefaultHeaders(server=True, clock=None, extra=[(b"x-a", b"1"), (b"x-b", b"")])])


@pytest.mark.skipif(encode_head_c is None, reason="asgisock.http11._head is not built")
@given(STATUSES, st.lists(ITEMS, max_size=12), st.sampled_from([list, tuple, iter]), DEFAULT_SETS, st.booleans(),
       st.booleans(), st.booleans(), st.one_of(st.none(), st.integers(min_value=0, max_value=10**12)))
def test_the_c_encoding_gives_what_the_python_one_gives(status: Any, items: list[Any], container: Any,
                                                        defaults: DefaultHeaders, head_request: bool, http11: bool,
                                                        keep_alive: bool, body_length: int | None) -> None:
    """Any status and headers an app could send, well formed or not, as a list, a tuple or an
    iterator, to any request: the same head, framing, Content-Length and keep-alive, or both
    refuse them."""
    assert encode_head_c is not None
    options = (defaults, head_request, http11, keep_alive, body_length)
    assert outcome(encode_head_c, status, container(items), *options) == outcome(
        encode_head_python, status, container(items), *options)


WHITESPACE = st.text(" \t\x0b\x0c", max_size=2).map(str.encode)
MEMBERS = st.lists(st.tuples(WHITESPACE, st.sampled_from([b"close", b"CLOSE", b"cLoSe", b"keep-alive", b"closed",
                                                         b"", b"clos", b"upgrade"]), WHITESPACE), max_size=4)


@pytest.mark.parametrize("encode", IMPLEMENTATIONS)
@given(MEMBERS)
def test_close_is_found_in_any_connection_value_that_lists_it(encode: HeadEncoder,
                                                               members: list[tuple[bytes, bytes, bytes]]) -> None:
    """RFC 9110 §7.6.1: a comma-separated list of options, in any case, with whitespace around
    each; the server closes after the response when one of them is ``close``, and says so."""
    value = b",".join(before + member + after for before, member, after in members)
    listed = any(member.lower() == b"close" for _, member, _ in members)
    ending = b"connection: close\r\n\r\n" if listed else b"\r\n"
    assert fields(encode, [(b"Connection", value)]) == (b"content-length: 5\r\n" + ending, CONTENT_LENGTH, 5,
                                                        not listed)


@pytest.mark.parametrize("encode", IMPLEMENTATIONS)
def test_fields_are_encoded_in_the_apps_order_and_case(encode: HeadEncoder) -> None:
    headers = [(b"Content-Type", b"text/plain"), (b"content-length", b"5"), (b"X-Id", b"")]
    assert fields(encode, headers) == (b"Content-Type: text/plain\r\ncontent-length: 5\r\nX-Id: \r\n\r\n",
                                       CONTENT_LENGTH, 5, True)


@pytest.mark.parametrize("encode", IMPLEMENTATIONS)
def test_framing_and_connection_fields_are_the_servers(encode: HeadEncoder) -> None:
    headers = [(b"Transfer-Encoding", b"identity"), (b"Connection", b"keep-alive"), (b"a", b"b")]
    assert fields(encode, headers, body_length=None) == (b"a: b\r\ntransfer-encoding: chunked\r\n\r\n", CHUNKED,
                                                         None, True)
    assert fields(encode, headers, body_length=None, http11=False) == (
        b"a: b\r\nconnection: close\r\n\r\n", CLOSE_DELIMITED, None, False)
    assert fields(encode, headers, head_request=True) == (b"a: b\r\n\r\n", NO_BODY, None, True)
    # a close in any of several Connection fields holds
    assert fields(encode, [(b"connection", b"close"), (b"connection", b"keep-alive")])[3] is False


@pytest.mark.parametrize("encode", IMPLEMENTATIONS)
@pytest.mark.parametrize("status", [100, 101, 103, 199, 204, 304])
def test_a_status_without_content_gets_no_framing(encode: HeadEncoder, status: int) -> None:
    data, framing, content_length, _ = encode(status, [], DEFAULTS, False, True, True, 0)
    assert (b"content-length" not in data, b"transfer-encoding" not in data, framing, content_length) == (
        True, True, NO_BODY, None)


@pytest.mark.parametrize("encode", IMPLEMENTATIONS)
def test_default_fields_the_app_sets_are_its_own(encode: HeadEncoder) -> None:
    data, *_ = encode(200, [(b"Server", b"mine"), (b"X-Served-By", b"two")], DEFAULTS, False, False, True, 0)
    assert data == (b"HTTP/1.0 200 OK\r\nServer: mine\r\nX-Served-By: two\r\ncontent-length: 0\r\n"
                    b"date: Mon, 21 Sep 2026 14:13:20 GMT\r\nconnection: keep-alive\r\n\r\n")


@pytest.mark.parametrize("encode", IMPLEMENTATIONS)
@pytest.mark.parametrize("value", [b"", b"+1", b"1_0", b" 1", b"-1", b"0x1", b"\xd9\xa1", b"9" * 5000])
def test_a_content_length_that_is_not_digits_is_refused(encode: HeadEncoder, value: bytes) -> None:
    with pytest.raises(InvalidResponse):
        fields(encode, [(b"content-length", value)])


@pytest.mark.parametrize("encode", IMPLEMENTATIONS)
def test_a_second_content_length_is_refused(encode: HeadEncoder) -> None:
    with pytest.raises(InvalidResponse, match="content-length"):
        fields(encode, [(b"content-length", b"1"), (b"Content-Length", b"1")])
    assert fields(encode, [(b"content-length", b"0" * 30 + b"12")])[2] == 12


@pytest.mark.parametrize("encode", IMPLEMENTATIONS)
@pytest.mark.parametrize(("name", "value"), [(b"bad name", b"x"), (b"", b"x"), (b"a:b", b"x"), ("a", b"x"),
                                             (b"a", b"x\r\nInjected: 1"), (b"a", b"x\n"), (b"a", b"\x00"),
                                             (b"a", "x")])
def test_a_bad_name_or_value_is_refused(encode: HeadEncoder, name: Any, value: Any) -> None:
    with pytest.raises(InvalidResponse):
        fields(encode, [(name, value)])


@pytest.mark.parametrize("encode", IMPLEMENTATIONS)
@pytest.mark.parametrize("status", [99, 600, -1, 2**70, True, 200.0, "200", None])
def test_a_bad_status_is_refused(encode: HeadEncoder, status: Any) -> None:
    with pytest.raises(InvalidResponse, match="invalid status"):
        encode(status, [], DEFAULTS, False, True, True, 0)


@pytest.mark.parametrize("encode", IMPLEMENTATIONS)
@pytest.mark.parametrize("headers", [[b"ab"], [1], [(b"a",)], [(b"a", b"b", b"c")], 5, None])
def test_headers_that_are_not_pairs_are_refused(encode: HeadEncoder, headers: Any) -> None:
    with pytest.raises(InvalidResponse, match="invalid header"):
        fields(encode, headers)


@pytest.mark.skipif(encode_head_c is None, reason="asgisock.http11._head is not built")
def test_the_c_encoding_holds_no_references_and_no_memory() -> None:
    """Every path, taken many times: the objects passed in keep their reference counts, and
    memory comes back (a reference kept on any path would keep each call's new objects)."""
    assert encode_head_c is not None
    name, value = b"X-Upper-Case", b"v" * 700
    paths: list[Any] = [
        [(name, value), (b"content-length", b"12"), (b"server", b"s")],
        [(name, value), (b"Connection", b"close"), (b"transfer-encoding", b"chunked")],
        [(name, value), (b"content-length", b"1"), (b"content-length", b"1")],
        [(name, value), (b"content-length", b"x")],
        [(name, value), (b"bad name", value)],
        [(name, value), (name, b"\r")],
        [(name, value), [name, value], (name,)],
        [(name, value), b"ab"],
    ]
    before = sys.getrefcount(name), sys.getrefcount(value), sys.getrefcount(DEFAULTS)
    tracemalloc.start()
    try:
        for round_ in range(2):
            if round_ == 1:
                start = tracemalloc.get_traced_memory()[0]
            for _ in range(2000):
                for headers in paths:
                    for status, body_length in ((200, None), (200, 10), (304, None), (600, None)):
                        outcome(encode_head_c, status, headers, DEFAULTS, False, True, True, body_length)
                        outcome(encode_head_c, status, iter(headers), DEFAULTS, False, False, True, body_length)
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert (sys.getrefcount(name), sys.getrefcount(value), sys.getrefcount(DEFAULTS)) == before
    assert grown < 64 * 1024, grown


def test_heads_are_encoded_with_the_selected_implementation() -> None:
    """What ``.ci/run`` relies on: under ASGISOCK_NO_EXTENSIONS=1 the fallback encodes."""
    expected = "python" if extensions_disabled(os.environ) or encode_head_c is None else "c"
    assert expected == writer.HEAD_IMPLEMENTATION
    assert writer._encode_head is (encode_head_python if expected == "python" else encode_head_c)


@pytest.fixture
def restore_selection() -> Iterator[None]:
    before = writer.HEAD_IMPLEMENTATION
    yield
    writer.select(before)


@pytest.mark.usefixtures("restore_selection")
def test_either_implementation_can_be_selected() -> None:
    assert writer.select("python") == "python" and writer._encode_head is encode_head_python
    if encode_head_c is None:
        with pytest.raises(ImportError):
            writer.select("c")
    else:
        assert writer.select("c") == "c" and writer._encode_head is encode_head_c
