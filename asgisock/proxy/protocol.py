"""The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy's specification defines it.

A TCP load balancer that cannot add HTTP headers (HAProxy in TCP mode, AWS NLB) sends one
header before the connection's first byte, naming the client's and its own address. The
parser takes the bytes read, returns the header once it is whole, and keeps what follows it
(the first HTTP request) as ``leftover``. A connection that does not start with a valid
header is an error: it must be closed, since its bytes cannot be trusted as HTTP either.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

__all__ = ["ProxyHeader", "ProxyProtocolError", "ProxyProtocolParser"]

V1_PREFIX: Final = b"PROXY "
V1_MAX: Final = 107
"""The longest version 1 line, CRLF included ("PROXY TCP6" and two full IPv6 addresses)."""
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER: Final = 16
"""The signature, the version and command byte, the family byte and the 2-byte length."""
V2_MAX_LENGTH: Final = 2048
"""Addresses and TLVs together; real headers carry well under 600 bytes."""

_V1: Final = re.compile(
    rb"PROXY (?:UNKNOWN[^\r\n]*|(?P<family>TCP4|TCP6) (?P<src>[0-9A-Fa-f.:]+) (?P<dst>[0-9A-Fa-f.:]+)"
    rb" (?P<sport>\d{1,5}) (?P<dport>\d{1,5}))\r\n"
)
_V2_FAMILIES: Final = {0x11: (4, 12), 0x12: (4, 12), 0x21: (16, 36), 0x22: (16, 36)}
"""TCP or UDP over IPv4 or IPv6: address size, and the size of the address block."""


class ProxyProtocolError(ValueError):
    """The connection did not start with a valid PROXY protocol header."""


@dataclass(frozen=True)
class ProxyHeader:
    """The addresses the proxy reported; ``None`` for ``UNKNOWN`` or ``LOCAL`` (a health check
    of the proxy's own, or a family without addresses): the socket's own addresses then stand."""

    client: tuple[str, int] | None
    server: tuple[str, int] | None


class ProxyProtocolParser:
    """Feed it the connection's first bytes until :meth:`receive_data` returns the header."""

    def __init__(self) -> None:
        self._buffer = b""
        self.leftover = b""
        """The bytes after the header: the start of the connection's real traffic."""

    def receive_data(self, data: bytes) -> ProxyHeader | None:
        """The header once it is complete, ``None`` while more bytes are needed; raises
        :class:`ProxyProtocolError` as soon as the bytes cannot start a valid header."""
        buffer = self._buffer = self._buffer + data
        if buffer[:12] == V2_SIGNATURE[: len(buffer)] and len(buffer) < 12:
            return None
        if buffer.startswith(V2_SIGNATURE):
            return self._v2(buffer)
        if buffer[:6] == V1_PREFIX[: len(buffer)] and len(buffer) < 6:
            return None
        if buffer.startswith(V1_PREFIX):
            return self._v1(buffer)
        raise ProxyProtocolError("no PROXY protocol header")

    def _v1(self, buffer: bytes) -> ProxyHeader | None:
        end = buffer.find(b"\r\n", 0, V1_MAX)
        if end < 0:
            if len(buffer) >= V1_MAX or b"\n" in buffer:
                raise ProxyProtocolError("PROXY v1 line too long or not ended by CRLF")
            return None
        match = _V1.fullmatch(buffer, 0, end + 2)
        if match is None:
            raise ProxyProtocolError("malformed PROXY v1 line")
        self.leftover = buffer[end + 2 :]
        if match["family"] is None:
            return ProxyHeader(None, None)
        version = 4 if match["family"] == b"TCP4" else 6
        return ProxyHeader(_address(match["src"], match["sport"], version),
                           _address(match["dst"], match["dport"], version))

    def _v2(self, buffer: bytes) -> ProxyHeader | None:
        if len(buffer) < V2_HEADER:
            return None
        version_command, family = buffer[12], buffer[13]
        length = int.from_bytes(buffer[14:16], "big")
        if version_command >> 4 != 2 or version_command & 0x0F > 1:
            raise ProxyProtocolError("unsupported PROXY v2 version or command")
        if length > V2_MAX_LENGTH:
            raise ProxyProtocolError("PROXY v2 header too long")
        if len(buffer) < V2_HEADER + length:
            return None
        block = buffer[V2_HEADER : V2_HEADER + length]
        self.leftover = buffer[V2_HEADER + length :]
        if version_command & 0x0F == 0 or family not in _V2_FAMILIES:
            return ProxyHeader(None, None)  # LOCAL, or UNSPEC / UNIX: keep the socket's addresses
        size, needed = _V2_FAMILIES[family]
        if length < needed:
            raise ProxyProtocolError("PROXY v2 address block too short")
        source = ipaddress.ip_address(block[:size])
        destination = ipaddress.ip_address(block[size : 2 * size])
        ports = block[2 * size : needed]
        return ProxyHeader((str(source), int.from_bytes(ports[:2], "big")),
                           (str(destination), int.from_bytes(ports[2:], "big")))


def _address(host: bytes, port: bytes, version: int) -> tuple[str, int]:
    try:
        address = ipaddress.ip_address(host.decode("ascii"))
    except ValueError:
        raise ProxyProtocolError(f"invalid address {host!r} in a PROXY v1 line") from None
    number = int(port)
    if address.version != version or number > 65535 or (len(port) > 1 and port[:1] == b"0"):
        raise ProxyProtocolError("address or port does not match the PROXY v1 family")
    return str(address), number
