"""Tests of the access line: its atoms, its compiled format, how it reaches the handlers."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgisock.logging import (
    ATOMS,
    AccessAtoms,
    AccessFormat,
    AccessLog,
    DefaultHandler,
    LevelFormatter,
    access_log_enabled,
    access_logger,
    configure_logging,
    error_logger,
)

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


@pytest.mark.parametrize("fmt", ["%(h)d", "%(s)", "%"])
def test_an_invalid_format_gives_a_line_that_says_so(fmt: str) -> None:
    assert AccessFormat(fmt).render(SCOPE, 200, [], 0, 0.0).startswith("invalid access log format")


pieces = st.one_of(
    st.sampled_from([f"%({key})s" for key in [*ATOMS, "{user-agent}i", "{content-type}o", "{x}i", "nope"]]),
    st.sampled_from(["%%", "%(s)5s", "%(B)-4s", " - ", '"', "[", "]"]),
    st.text(st.characters(exclude_characters="%"), max_size=5),
)


scopes = st.fixed_dictionaries({
    "client": st.sampled_from([None, ("10.0.0.1", 5000), ("::1", 0)]),
    "query_string": st.sampled_from([b"", b"x=1&y=%20"]),
    "raw_path": st.sampled_from([b"/", b"/a%20b", "/\xe9".encode("latin-1")]),
    "http_version": st.sampled_from(["1.0", "1.1"]),
}).map(lambda changes: SCOPE | changes)


@given(st.lists(pieces, max_size=12).map("".join), scopes, st.sampled_from([0, 7]))
def test_the_compiled_format_renders_as_percent_formatting_does(fmt: str, scope: dict[str, Any], size: int) -> None:
    headers = [(b"content-type", b"text/plain")]
    expected = fmt % AccessAtoms(scope, 201, headers, size, 0.25)
    if "%(t)s" in fmt:  # the clock may tick between the two
        return
    assert AccessFormat(fmt).render(scope, 201, headers, size, 0.25) == expected


def test_a_scope_without_a_method_is_logged_as_get() -> None:
    scope = {k: v for k, v in SCOPE.items() if k != "method"}
    assert AccessFormat("%(m)s %(r)s").render(scope, 101, [], 0, 0.0) == "GET GET /a%20b?x=1 HTTP/1.1"


def test_common_formats_compile() -> None:
    for fmt in ['%(h)s - "%(r)s" %(s)s', '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"', "100%% %(s)s"]:
        assert AccessFormat(fmt).parts is not None


# -- how lines reach the handlers -------------------------------------------------------------


@pytest.fixture
def default_logging() -> Iterator[io.StringIO]:
    """The server's default logging, writing to a string."""
    saved = [(logger, logger.handlers[:], logger.level, logger.propagate) for logger in (access_logger, error_logger)]
    configure_logging("info", None, True)
    handler = access_logger.handlers[0]
    assert isinstance(handler, DefaultHandler)
    stream = io.StringIO()
    handler.setStream(stream)
    yield stream
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def only_the_default_handler() -> None:
    """Leave the access logger with the server's handler alone, as a user's process has it.

    pytest 9.1 and later attach their capture handlers to every logger that does not propagate
    when each test phase starts, after the fixtures ran; those are listeners like any other, so
    the tests that measure the default handler by itself take them off first.
    """
    access_logger.handlers[:] = [h for h in access_logger.handlers if isinstance(h, DefaultHandler)]


def log_in_loop(count: int, *, between: Any = None) -> list[str]:
    """Log ``count`` lines within one loop iteration; what was written, per iteration after."""
    only_the_default_handler()
    seen: list[str] = []

    async def main() -> None:
        stream = access_logger.handlers[0].stream  # type: ignore[attr-defined]
        log = AccessLog("%(m)s %(U)s %(s)s", asyncio.get_running_loop())
        for index in range(count):
            log.log(SCOPE | {"path": f"/{index}"}, 200, [], 0, 0.0)
            if between is not None:
                between(index)
        seen.append(stream.getvalue())
        await asyncio.sleep(0)
        seen.append(stream.getvalue())
        await asyncio.sleep(0)
        seen.append(stream.getvalue())

    asyncio.run(main())
    return seen


def test_default_handler_gets_lines_in_one_write_per_iteration(default_logging: io.StringIO) -> None:
    during, after, later = log_in_loop(3)
    assert during == ""  # gathered, not yet written
    handler = access_logger.handlers[0]
    assert isinstance(handler, DefaultHandler)
    expected = "".join(
        handler.format(logging.LogRecord("asgisock.access", logging.INFO, __file__, 1, f"POST /{i} 200", None, None))
        + "\n" for i in range(3))
    assert after == later == expected  # exactly what emit() would have written, line by line


def test_another_handler_gets_every_record(default_logging: io.StringIO) -> None:
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    collect = Collect()

    def add_halfway(index: int) -> None:
        if index == 1:
            access_logger.addHandler(collect)

    try:
        log_in_loop(4, between=add_halfway)
    finally:
        access_logger.removeHandler(collect)
    # the first line was gathered before the handler came: it is flushed through logging too
    assert records == ["POST /0 200", "POST /1 200", "POST /2 200", "POST /3 200"]
    assert default_logging.getvalue().count("POST /") == 4


@pytest.mark.parametrize("change", ["filter", "propagate", "formatter", "level"])
def test_any_other_listener_turns_records_back_on(default_logging: io.StringIO, change: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    handler = access_logger.handlers[0]
    seen: list[logging.LogRecord] = []
    if change == "filter":
        def keep(record: logging.LogRecord) -> bool:
            seen.append(record)
            return True

        access_logger.addFilter(keep)
    elif change == "propagate":
        access_logger.propagate = True
    elif change == "formatter":
        handler.setFormatter(logging.Formatter("custom %(message)s"))
    else:
        handler.setLevel(logging.WARNING)
    try:
        with caplog.at_level(logging.INFO):
            log_in_loop(2)
    finally:
        access_logger.filters.clear()
        access_logger.propagate = False
    if change == "filter":
        assert [r.getMessage() for r in seen] == ["POST /0 200", "POST /1 200"]
    elif change == "propagate":
        assert [r.getMessage() for r in caplog.records if r.name == "asgisock.access"] == ["POST /0 200", "POST /1 200"]
    elif change == "formatter":
        assert default_logging.getvalue() == "custom POST /0 200\ncustom POST /1 200\n"
    else:
        assert default_logging.getvalue() == ""


def test_disabled_logger_writes_nothing(default_logging: io.StringIO) -> None:
    access_logger.setLevel(logging.WARNING)
    log_in_loop(2)
    assert default_logging.getvalue() == ""


@pytest.mark.parametrize("colours", [False, True])
def test_level_prefix(colours: bool) -> None:
    record = logging.LogRecord("asgisock.error", logging.WARNING, __file__, 1, "hello", None, None)
    line = LevelFormatter(use_colours=colours).format(record)
    assert line.endswith(" hello")
    assert ("\x1b[33m" in line) is colours
    assert "WARNING:" in line


# -- the JSON line -------------------------------------------------------------------------------

json_scopes = st.fixed_dictionaries({
    "client": st.one_of(st.none(), st.tuples(st.sampled_from(["10.0.0.1", "::1"]), st.integers(0, 65535))),
    "method": st.sampled_from(["GET", "POST", "PURGE"]),
    "path": st.text(max_size=30),
    "query_string": st.binary(max_size=20),
    "headers": st.lists(st.tuples(st.sampled_from([b"user-agent", b"x-request-id", b"host", b"accept"]),
                                  st.binary(max_size=20)), max_size=5),
}).map(lambda changes: SCOPE | changes)


@given(json_scopes, st.integers(100, 599), st.integers(0, 2**40), st.floats(0, 1e4))
def test_the_json_line_is_json_with_every_field(scope: dict[str, Any], status: int, size: int,
                                                duration: float) -> None:
    line = AccessFormat("json").render(scope, status, [], size, duration)
    assert "\n" not in line
    entry = json.loads(line)
    headers = dict(scope["headers"])  # the last of each name, as the line takes it
    client = scope["client"]
    assert entry == {
        "time": entry["time"],
        "client": f"{client[0]}:{client[1]}" if client else None,
        "method": scope["method"], "path": scope["path"], "query": scope["query_string"].decode("latin-1"),
        "status": status, "bytes": size, "duration": pytest.approx(duration, abs=1e-6),
        "user_agent": headers[b"user-agent"].decode("latin-1") if b"user-agent" in headers else None,
        "request_id": headers[b"x-request-id"].decode("latin-1") if b"x-request-id" in headers else None,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
# -- the level of the access lines, and colours ------------------------------------------------


@pytest.fixture
def saved_loggers() -> Iterator[None]:
    """Put both loggers back as they were after a test that configures them."""
    saved = [(logger, logger.handlers[:], logger.level, logger.propagate) for logger in (access_logger, error_logger)]
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.mark.usefixtures("saved_loggers")
@pytest.mark.parametrize(("level", "lines"), [("critical", False), ("error", False), ("warning", False),
                                              ("info", True), ("debug", True), ("trace", True)])
def test_the_log_level_applies_to_the_access_lines(level: str, lines: bool) -> None:
    """As in uvicorn: the access lines are at INFO, so that --log-level warning silences them."""
    configure_logging(level, None, True)
    assert access_log_enabled() is lines
    assert access_logger.level == error_logger.level


@pytest.mark.usefixtures("saved_loggers")
@pytest.mark.parametrize(("file_level", "level", "lines"), [
    ("INFO", "info", True), ("INFO", "debug", True), ("INFO", "warning", False),
    ("WARNING", "info", False), ("WARNING", "debug", False),  # the file's choice stands below it
])
def test_with_a_log_config_the_level_only_raises_the_access_level(tmp_path: Path, file_level: str, level: str,
                                                                  lines: bool) -> None:
    config = tmp_path / "logging.json"
    config.write_text(json.dumps({"version": 1, "disable_existing_loggers": False,
                                  "loggers": {"asgisock.access": {"level": file_level}}}))
    configure_logging(level, config, True)
    assert access_log_enabled() is lines


@pytest.mark.usefixtures("saved_loggers")
@pytest.mark.parametrize("colours", [None, False, True])
def test_use_colours_reaches_the_default_handler(colours: bool | None) -> None:
    configure_logging("info", None, True, use_colours=colours)
    handler = access_logger.handlers[0]
    assert isinstance(handler, DefaultHandler)
    expected = sys.stderr.isatty() if colours is None else colours
    assert handler.default_formatter.use_colours is expected
    stream = io.StringIO()
    handler.setStream(stream)
    handler.write_lines(["GET / 200"])
    assert stream.getvalue() == ("\x1b[32mINFO:    \x1b[0m GET / 200\n" if expected else "INFO:     GET / 200\n")
