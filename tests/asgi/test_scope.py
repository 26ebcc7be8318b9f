"""Scope building: paths as the app sees them, and the bounded cache of decoded paths."""

from __future__ import annotations

import pytest

from asgisock.asgi import scope as scope_module
from asgisock.asgi.scope import http_scope
from asgisock.http11.events import Request


def _scope(target: bytes, method: bytes = b"GET", root_path: str = "") -> dict[str, object]:
    request = Request(method, target, "1.1", [(b"host", b"example.com")], True, False, False)
    return http_scope(request, scheme="http", client=("127.0.0.1", 1), server=("127.0.0.1", 2),
                      root_path=root_path, state={})


@pytest.mark.parametrize(
    ("target", "path", "raw_path", "query"),
    [
        (b"/", "/", b"/", b""),
        (b"/a/b?x=1&y", "/a/b", b"/a/b", b"x=1&y"),
        (b"/caf%C3%A9", "/café", b"/caf%C3%A9", b""),
        (b"/%2F?%3F", "//", b"/%2F", b"%3F"),
        (b"/bad%FF", "/bad\ufffd", b"/bad%FF", b""),
        (b"/?", "/", b"/", b""),
        (b"http://example.com/p?q", "/p", b"/p", b"q"),
    ],
)
def test_path_and_query(target: bytes, path: str, raw_path: bytes, query: bytes) -> None:
    for _ in range(2):  # the second time from the cache of decoded paths
        scope = _scope(target)
        assert (scope["path"], scope["raw_path"], scope["query_string"]) == (path, raw_path, query)


def test_root_path_prefixes_the_path() -> None:
    scope = _scope(b"/items", root_path="/api")
    assert (scope["path"], scope["raw_path"], scope["root_path"]) == ("/api/items", b"/api/items", "/api")


@pytest.mark.parametrize(("method", "expected"), [(b"GET", "GET"), (b"PROPFIND", "PROPFIND")])
def test_method_is_a_string(method: bytes, expected: str) -> None:
    assert _scope(b"/", method=method)["method"] == expected


def test_decoded_path_cache_is_bounded() -> None:
    """Every request may carry a new path: the cache stops growing at its bound."""
    for index in range(scope_module._MAX_PATHS + 500):
        assert _scope(b"/n/%d" % index)["path"] == f"/n/{index}"
    assert len(scope_module._PATHS) <= scope_module._MAX_PATHS
    long_path = b"/" + b"x" * scope_module._MAX_CACHED_PATH
    assert _scope(long_path)["path"] == long_path.decode()
    assert long_path not in scope_module._PATHS
