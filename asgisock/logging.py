"""The ``asgisock.error`` and ``asgisock.access`` loggers, and the access line format."""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

error_logger = logging.getLogger("asgisock.error")
access_logger = logging.getLogger("asgisock.access")

_LEVEL_COLOURS = {
    TRACE: "\x1b[34m",
    logging.DEBUG: "\x1b[36m",
    logging.INFO: "\x1b[32m",
    logging.WARNING: "\x1b[33m",
    logging.ERROR: "\x1b[31m",
    logging.CRITICAL: "\x1b[1;31m",
}


class LevelFormatter(logging.Formatter):
    """``INFO:     message`` with the level coloured when writing to a terminal."""

    def __init__(self, fmt: str = "%(levelprefix)s %(message)s", *, use_colours: bool | None = None) -> None:
        super().__init__(fmt)
        self.use_colours = sys.stderr.isatty() if use_colours is None else use_colours

    def formatMessage(self, record: logging.LogRecord) -> str:
        prefix = f"{record.levelname}:".ljust(9)
        if self.use_colours:
            prefix = f"{_LEVEL_COLOURS.get(record.levelno, '')}{prefix}\x1b[0m"
        record.__dict__["levelprefix"] = prefix
        return super().formatMessage(record)


def configure_logging(log_level: str, log_config: str | os.PathLike[str] | None, access_log: bool) -> None:
    """Set up both loggers; a ``log_config`` file replaces the defaults entirely."""
    if log_config:
        _load_log_config(log_config)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(LevelFormatter())
        for logger in (error_logger, access_logger):
            logger.handlers[:] = [handler]
            logger.propagate = False
    level = TRACE if log_level == "trace" else getattr(logging, log_level.upper())
    error_logger.setLevel(level)
    if not access_log:
        access_logger.handlers[:] = []
        access_logger.propagate = False
        access_logger.setLevel(logging.CRITICAL + 1)
    elif not log_config:
        access_logger.setLevel(logging.INFO)


def _load_log_config(path: str | os.PathLike[str]) -> None:
    path = os.fspath(path)
    if path.endswith(".json"):
        with open(path) as file:
            logging.config.dictConfig(json.load(file))
    elif path.endswith((".yaml", ".yml")):
        import yaml  # type: ignore[import-untyped]  # optional: only for YAML log configs

        with open(path) as file:
            logging.config.dictConfig(yaml.safe_load(file))
    else:
        logging.config.fileConfig(path, disable_existing_loggers=False)


class AccessAtoms(dict[str, str]):
    """Gunicorn's access log atoms, computed only when the format asks for them.

    ``%(h)s`` remote address, ``%(r)s`` request line, ``%(m)s`` method, ``%(U)s`` path,
    ``%(q)s`` query, ``%(H)s`` protocol, ``%(s)s`` status, ``%(B)s``/``%(b)s`` body bytes,
    ``%(f)s`` referer, ``%(a)s`` user agent, ``%(t)s`` time, ``%(T)s``/``%(D)s``/``%(L)s``/``%(M)s``
    duration in s/µs/decimal s/ms, ``%(p)s`` pid, ``%({name}i)s``/``%({name}o)s`` request/response
    headers, ``%({name}e)s`` environment variables.
    """

    def __init__(
        self,
        scope: Mapping[str, Any],
        status: int,
        response_headers: list[tuple[bytes, bytes]],
        body_bytes: int,
        duration: float,
    ) -> None:
        super().__init__()
        self.scope = scope
        self.status = status
        self.response_headers = response_headers
        self.body_bytes = body_bytes
        self.duration = duration

    def __missing__(self, key: str) -> str:
        value = self._atom(key)
        self[key] = value
        return value

    def _atom(self, key: str) -> str:
        scope = self.scope
        if key.startswith("{") and len(key) > 3:
            name, kind = key[1:-2].lower(), key[-1]
            if kind == "i":
                return _header(scope["headers"], name)
            if kind == "o":
                return _header(self.response_headers, name)
            if kind == "e":
                return os.environ.get(name.upper(), "-")
            return "-"
        simple: dict[str, Callable[[], str]] = {
            "h": lambda: _client(scope),
            "l": lambda: "-",
            "u": lambda: "-",
            "t": lambda: time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
            "r": lambda: f"{scope.get('method', 'GET')} {_target(scope)} HTTP/{scope['http_version']}",
            "m": lambda: scope.get("method", "GET"),
            "U": lambda: scope["path"],
            "q": lambda: scope["query_string"].decode("latin-1"),
            "H": lambda: f"HTTP/{scope['http_version']}",
            "s": lambda: str(self.status),
            "B": lambda: str(self.body_bytes),
            "b": lambda: str(self.body_bytes) if self.body_bytes else "-",
            "f": lambda: _header(scope["headers"], "referer"),
            "a": lambda: _header(scope["headers"], "user-agent"),
            "T": lambda: str(int(self.duration)),
            "D": lambda: str(int(self.duration * 1_000_000)),
            "L": lambda: f"{self.duration:.6f}",
            "M": lambda: str(int(self.duration * 1000)),
            "p": lambda: f"<{os.getpid()}>",
        }
        compute = simple.get(key)
        return compute() if compute else "-"


def _client(scope: Mapping[str, Any]) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


def _target(scope: Mapping[str, Any]) -> str:
    path: str = scope["raw_path"].decode("latin-1")
    query: bytes = scope["query_string"]
    return f"{path}?{query.decode('latin-1')}" if query else path


def _header(headers: list[tuple[bytes, bytes]], name: str) -> str:
    wanted = name.encode("latin-1")
    for key, value in headers:
        if key.lower() == wanted:
            return value.decode("latin-1")
    return "-"


def log_access(
    fmt: str,
    scope: Mapping[str, Any],
    status: int,
    response_headers: list[tuple[bytes, bytes]],
    body_bytes: int,
    duration: float,
) -> None:
    """Write one access line; called only when the access logger is enabled."""
    atoms = AccessAtoms(scope, status, response_headers, body_bytes, duration)
    try:
        line = fmt % atoms
    except (KeyError, ValueError, TypeError) as exc:
        line = f"invalid access log format {fmt!r}: {exc}"
    access_logger.info(line)

