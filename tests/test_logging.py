"""Tests of the access line atoms and the level formatter."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest

from asgisock.logging import AccessAtoms, LevelFormatter, access_logger, log_access

SCOPE: dict[str, Any] = {
    "type": "http", "method": "POST", "path": "/a b", "raw_path": b"/a%20b", "query_string": b"x=1",
    "http_version": "1.1", "client": ("10.0.0.1", 5000),
    "headers": [(b"user-agent", b"curl/8"), (b"Referer", b"http://r/"), (b"x-request-id", b"abc")],
}


@pytest.mark.parametrize(("atom", "value"), [
    ("h", "10.0.0.1:5000"), ("r", "POST /a%20b?x=1 HTTP/1.1"), ("m", "POST"), ("U", "/a b"), ("q", "x=1"),
    ("H", "HTTP/1.1"), ("s", "201"), ("B", "0"), ("b", "-"), ("a", "curl/8"), ("f", "http://r/"),
    ("{x-request-id}i", "abc"), ("{content-type}o", "text/plain"), ("{missing}i", "-"),
    ("T", "1"), ("D", "1500000"), ("L", "1.500000"), ("M", "1500"), ("p", f"<{os.getpid()}>"),
    ("l", "-"), ("u", "-"), ("unknown", "-"),
])
def test_atoms(atom: str, value: str) -> None:
    atoms = AccessAtoms(SCOPE, 201, [(b"content-type", b"text/plain")], 0, 1.5)
    assert atoms[atom] == value


def test_atoms_are_computed_once() -> None:
    atoms = AccessAtoms(SCOPE, 200, [], 12, 0.0)
    assert "%(b)s %(b)s" % atoms == "12 12"  # noqa: UP031  (the access format is %-style)
    assert dict(atoms) == {"b": "12"}


def test_invalid_format_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=access_logger.name):
        log_access("%(h)d", SCOPE, 200, [], 0, 0.0)
    assert "invalid access log format" in caplog.text


@pytest.mark.parametrize("colours", [False, True])
def test_level_prefix(colours: bool) -> None:
    record = logging.LogRecord("asgisock.error", logging.WARNING, __file__, 1, "hello", None, None)
    line = LevelFormatter(use_colours=colours).format(record)
    assert line.endswith(" hello")
    assert ("\x1b[33m" in line) is colours
    assert "WARNING:" in line
