"""The request target split into the path and the query the app sees (RFC 9112 §3.2).

The parser splits the usual origin-form target ("/..." without a fragment) itself, as it
builds the :class:`~asgisock.http11.events.Request`; this handles the rest.
"""

from __future__ import annotations

import httptools


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """``raw_path`` and ``query_string`` of an origin-form or absolute-form target (RFC 9112 §3.2)."""
    if target[:1] != b"/" and target != b"*":
        parsed = httptools.parse_url(target)
        return parsed.path or b"/", parsed.query or b""
    if b"#" in target:  # never sent by a conforming client; dropped as a browser would
        target = target.partition(b"#")[0]
    path, _, query = target.partition(b"?")
    return path, query
