"""Field syntax helpers shared by the request and response sides (RFC 9110 §5)."""

from __future__ import annotations

import re
from typing import Final

TOKEN_RE: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""RFC 9110 §5.6.2: ``token = 1*tchar``."""

FORBIDDEN_VALUE_RE: Final = re.compile(rb"[\x00\r\n]")
"""RFC 9110 §5.5: "Field values containing CR, LF, or NUL characters are invalid and dangerous"."""


def has_token(value: bytes, token: bytes) -> bool:
    """Whether a comma-separated header value lists ``token`` (case-insensitive)."""
    value = value.lower()
    if value == token:
        return True
    return any(part.strip() == token for part in value.split(b","))
