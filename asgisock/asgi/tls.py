"""The ASGI ``tls`` extension (asgiref ``specs/tls.rst``, version 0.2) from what a handshake left.

Given the certificates as DER and the negotiated version and cipher suite, build the
``scope["extensions"]["tls"]`` value. The client certificate's subject is read from the
certificate itself, so that ``client_cert_name`` is the exact RFC 4514 string (each value in
the string type the certificate gives it) rather than a rebuilt approximation.
"""

from __future__ import annotations

import base64
import textwrap
from typing import Any, Final

__all__ = ["TLS_VERSIONS", "der_to_pem", "subject_name", "tls_extension"]

TLS_VERSIONS: Final = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
"""``SSLObject.version()`` names as the 16-bit protocol versions of the TLS record layer."""

_SHORT_NAMES: Final = {
    # RFC 4514 §3: the attribute types that are written by name; every other one by its OID.
    "2.5.4.3": "CN", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU",
    "2.5.4.6": "C", "2.5.4.9": "STREET", "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
_STRING_TYPES: Final = {
    0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1A: "ascii",
    0x1E: "utf-16-be", 0x1C: "utf-32-be",
}
"""UTF8String, PrintableString, IA5String, TeletexString (read as Latin-1, as OpenSSL shows
it), VisibleString, BMPString, UniversalString."""
_SEQUENCE: Final = 0x30
_SET: Final = 0x31
_OID: Final = 0x06
_VERSION_TAG: Final = 0xA0


class DERError(ValueError):
    """The bytes are not the DER certificate they were said to be."""


def tls_extension(*, server_cert: str | None, client_chain: list[bytes] | None, version: str | None,
                  cipher_suite: int | None) -> dict[str, Any]:
    """The extension's value. ``client_chain`` is the client's certificates as DER, its own
    first; ``[]`` when it sent none, ``None`` when they cannot be known."""
    chain = None if client_chain is None else [der_to_pem(der) for der in client_chain]
    name = None
    if client_chain:
        try:
            name = subject_name(client_chain[0])
        except DERError:
            name = None
    return {
        "server_cert": server_cert,
        "client_cert_chain": chain,
        "client_cert_name": name,
        # The handshake fails when a client certificate does not verify (in the optional mode
        # too), so a connection the app sees never has an error to report.
        "client_cert_error": None,
        "tls_version": TLS_VERSIONS.get(version or ""),
        "cipher_suite": cipher_suite,
    }


def der_to_pem(der: bytes) -> str:
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode("ascii"), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def subject_name(der: bytes) -> str:
    """The certificate's subject as an RFC 4514 string: the last RDN first."""
    tag, certificate, end = _first(der)
    if tag != _SEQUENCE or end != len(der):
        raise DERError("not a certificate")
    tag, tbs, _ = _first(certificate)
    if tag != _SEQUENCE:
        raise DERError("no TBSCertificate")
    fields = _items(tbs)
    if fields and fields[0][0] == _VERSION_TAG:
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject
    if len(fields) < 5 or fields[4][0] != _SEQUENCE:
        raise DERError("no subject in the certificate")
    rdns = []
    for tag, rdn in _items(fields[4][1]):
        if tag != _SET:
            raise DERError("an RDN is not a SET")
        rdns.append("+".join(_attribute(value) for _, value in _items(rdn)))
    return ",".join(reversed(rdns))


def _attribute(der: bytes) -> str:
    items = _items(der)
    if len(items) != 2 or items[0][0] != _OID:
        raise DERError("an attribute is not an OID and a value")
    oid = _oid(items[0][1])
    tag, value = items[1]
    name = _SHORT_NAMES.get(oid)
    encoding = _STRING_TYPES.get(tag)
    if name is None or encoding is None:
        # §2.4: an attribute written by OID has its BER encoding as a hex string.
        return f"{oid}=#{_encode(tag, value).hex()}"
    try:
        text = value.decode(encoding)
    except UnicodeDecodeError:
        return f"{oid}=#{_encode(tag, value).hex()}"
    return f"{name}={_escape(text)}"


def _escape(value: str) -> str:
    """RFC 4514 §2.4: the special characters escaped with a backslash, NUL as ``\\00``."""
    out = []
    for index, char in enumerate(value):
        if char in '"+,;<>\\' or (char == "#" and index == 0) or (char == " " and index in (0, len(value) - 1)):
            out.append("\\" + char)
        elif char == "\0":
            out.append("\\00")
        else:
            out.append(char)
    return "".join(out)


def _oid(body: bytes) -> str:
    if not body:
        raise DERError("an empty OID")
    arcs: list[int] = []
    value = 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(arc) for arc in head + arcs[1:])


def _encode(tag: int, value: bytes) -> bytes:
    size = len(value)
    if size < 0x80:
        return bytes([tag, size]) + value
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + value


def _first(der: bytes) -> tuple[int, bytes, int]:
    """The first TLV of ``der``: its tag, its value and where it ends."""
    if len(der) < 2:
        raise DERError("truncated")
    tag, size = der[0], der[1]
    start = 2
    if size & 0x80:
        count = size & 0x7F
        if count == 0 or count > 4 or len(der) < 2 + count:
            raise DERError("bad length")
        size = int.from_bytes(der[2 : 2 + count], "big")
        start += count
    end = start + size
    if end > len(der):
        raise DERError("truncated")
    return tag, der[start:end], end


def _items(der: bytes) -> list[tuple[int, bytes]]:
    items = []
    while der:
        tag, value, end = _first(der)
        items.append((tag, value))
        der = der[end:]
    return items
