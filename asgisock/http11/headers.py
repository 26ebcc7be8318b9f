"""Field syntax helpers shared by the request and response sides (RFC 9110 §5)."""

from __future__ import annotations

import re
from typing import Final

TOKEN_RE: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""RFC 9110 §5.6.2: ``token = 1*tchar``."""

FORBIDDEN_VALUE_RE: Final = re.compile(rb"[\x00\r\n]")
"""RFC 9110 §5.5: "Field values containing CR, LF, or NUL characters are invalid and dangerous"."""

HOST_RE: Final = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]"  # IP-literal: IPv6address (RFC 3986 §3.2.2)
    rb"|\[v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+\]"  # IPvFuture
    rb"|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)"  # IPv4address or reg-name
    rb"(?::[0-9]*)?"  # port
)
"""RFC 9110 §7.2: ``Host = uri-host [ ":" port ]``; an empty value is allowed (RFC 9112 §3.2)."""

def has_token(value: bytes, token: bytes) -> bool:
    """Whether a comma-separated header value lists ``token`` (case-insensitive)."""
    value = value.lower()
    if value == token:
        return True
    return any(part.strip() == token for part in value.split(b","))


def list_members(value: bytes) -> list[bytes]:
    """The lower-cased members of a list-valued field (RFC 9110 §5.6.1), its lines joined by commas.

    Empty members are dropped: "a recipient MUST parse and ignore a reasonable number of empty
    list elements".
    """
    return [member for part in value.split(b",") if (member := part.strip(b" \t").lower())]


def parse_digits(value: bytes) -> int | None:
    """A non-negative decimal number made of ASCII digits only, else None.

    Python's ``int()`` also takes ``+1``, ``1_0`` and `` 1 ``: never give it wire bytes that were
    not checked first (RFC 9110 §8.6: ``Content-Length = 1*DIGIT``). ``bytes.isdigit()`` is true
    for ASCII digits only.
    """
    if not value.isdigit():
        return None
    return int(value)
