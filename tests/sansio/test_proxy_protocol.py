"""Tests of the PROXY protocol header parser (versions 1 and 2), bytes in, header out."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgisock.proxy.protocol import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    ProxyProtocolParser,
)

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def v2(command: int, family: int, block: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(block)) + block


def v2_inet(source: str, destination: str, sport: int, dport: int, tlvs: bytes = b"") -> bytes:
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    family = 0x11 if src.version == 4 else 0x21
    return v2(1, family, src.packed + dst.packed + struct.pack("!HH", sport, dport) + tlvs)


def parse(data: bytes, pieces: int = 1) -> tuple[ProxyHeader | None, bytes]:
    """Feed ``data`` in pieces as the transport does, until the header comes out; the bytes
    after it are the parser's leftover and the pieces not fed."""
    parser = ProxyProtocolParser()
    size = max(1, -(-len(data) // pieces))
    for start in range(0, len(data), size):
        header = parser.receive_data(data[start : start + size])
        if header is not None:
            return header, parser.leftover + data[start + size :]
    return None, b""


VALID = [
    (b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n",
     ProxyHeader(("203.0.113.7", 51234), ("10.0.0.1", 443))),
    (b"PROXY TCP6 2001:db8::1 2001:db8::2 4711 80\r\n",
     ProxyHeader(("2001:db8::1", 4711), ("2001:db8::2", 80))),
    (b"PROXY UNKNOWN\r\n", ProxyHeader(None, None)),
    (b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", ProxyHeader(None, None)),
    (v2_inet("203.0.113.7", "10.0.0.1", 51234, 443), ProxyHeader(("203.0.113.7", 51234), ("10.0.0.1", 443))),
    (v2_inet("2001:db8::1", "2001:db8::2", 4711, 80), ProxyHeader(("2001:db8::1", 4711), ("2001:db8::2", 80))),
    (v2_inet("203.0.113.7", "10.0.0.1", 1, 2, tlvs=b"\x04\x00\x03abc"), ProxyHeader(("203.0.113.7", 1), ("10.0.0.1", 2))),
    (v2(0, 0x00, b""), ProxyHeader(None, None)),  # LOCAL: the proxy's own health check
    (v2(1, 0x31, b"\0" * 216), ProxyHeader(None, None)),  # UNIX addresses: keep the socket's
]


@pytest.mark.parametrize(("data", "expected"), VALID)
@pytest.mark.parametrize("pieces", [1, 3, 1000])
def test_valid_headers_in_any_pieces(data: bytes, expected: ProxyHeader, pieces: int) -> None:
    assert parse(data + REQUEST, pieces) == (expected, REQUEST)


@pytest.mark.parametrize(("data", "expected"), VALID)
def test_what_follows_the_header_is_kept(data: bytes, expected: ProxyHeader) -> None:
    parser = ProxyProtocolParser()
    assert parser.receive_data(data + REQUEST) == expected
    assert parser.leftover == REQUEST


@pytest.mark.parametrize("data", [
    REQUEST,  # no header at all
    b"PROXY TCP4 203.0.113.7 10.0.0.1 51234\r\n",  # a port missing
    b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",  # family and address disagree
    b"PROXY TCP4 203.0.113.7 10.0.0.1 65536 443\r\n",
    b"PROXY TCP4 203.0.113.7 10.0.0.1 0443 443\r\n",  # no leading zeros
    b"PROXY TCP4 203.0.113.007 10.0.0.1 1 2\r\n",
    b"PROXY TCP4  203.0.113.7 10.0.0.1 1 2\r\n",
    b"PROXY TCP4 203.0.113.7 10.0.0.1 1 2\n",  # LF alone
    b"PROXY UDP4 203.0.113.7 10.0.0.1 1 2\r\n",
    b"PROXY " + b"x" * 200,  # never ends within 107 bytes
    b"proxy TCP4 203.0.113.7 10.0.0.1 1 2\r\n",
    V2_SIGNATURE + b"\x11\x11\x00\x0c" + b"\0" * 12,  # version 1 in a v2 header
    V2_SIGNATURE + b"\x23\x11\x00\x0c" + b"\0" * 12,  # unknown command
    v2(1, 0x11, b"\0" * 8),  # address block too short for TCP4
    V2_SIGNATURE + b"\x21\x11\xff\xff",  # longer than any real header
])
def test_malformed_headers_are_refused(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError):  # an incomplete header would not raise
        parse(data)


def test_refused_as_soon_as_the_bytes_cannot_be_a_header() -> None:
    parser = ProxyProtocolParser()
    assert parser.receive_data(b"PRO") is None
    with pytest.raises(ProxyProtocolError):
        parser.receive_data(b"Z")


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    """Random bytes, or a valid header cut short or damaged at one byte, then anything."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=300))
    header = draw(st.sampled_from([data for data, _ in VALID]))
    where = draw(st.integers(0, len(header)))
    damage = draw(st.binary(max_size=2))
    return header[:where] + damage + header[where + len(damage) :] + draw(st.binary(max_size=40))


@given(streams(), st.integers(1, 50))
def test_any_bytes_give_a_header_an_error_or_a_wait_in_any_pieces(data: bytes, size: int) -> None:
    def outcome(chunk: int) -> object:
        parser = ProxyProtocolParser()
        try:
            for start in range(0, len(data), chunk):
                header = parser.receive_data(data[start : start + chunk])
                if header is not None:
                    return header, parser.leftover + data[start + chunk :]
        except ProxyProtocolError:
            return "error"
        return "waiting"

    assert outcome(size) == outcome(max(1, len(data)))


@given(st.ip_addresses(), st.ip_addresses(), st.integers(0, 65535), st.integers(0, 65535))
def test_v2_round_trip(source: ipaddress.IPv4Address | ipaddress.IPv6Address,
                       destination: ipaddress.IPv4Address | ipaddress.IPv6Address, sport: int, dport: int) -> None:
    if source.version != destination.version:
        return
    header, leftover = parse(v2_inet(str(source), str(destination), sport, dport) + REQUEST)
    assert header == ProxyHeader((str(source), sport), (str(destination), dport))
    assert leftover == REQUEST
