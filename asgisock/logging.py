"""The ``asgisock.error`` and ``asgisock.access`` loggers, and the access line format."""

from __future__ import annotations

import asyncio
import json
import logging
import logging.config
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

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


DEFAULT_FORMAT: Final = "%(levelprefix)s %(message)s"


class LevelFormatter(logging.Formatter):
    """``INFO:     message`` with the level coloured when writing to a terminal."""

    def __init__(self, fmt: str = DEFAULT_FORMAT, *, use_colours: bool | None = None) -> None:
        super().__init__(fmt)
        self.use_colours = sys.stderr.isatty() if use_colours is None else use_colours

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.__dict__["levelprefix"] = self.level_prefix(record.levelno, record.levelname)
        return super().formatMessage(record)

    def level_prefix(self, level: int, name: str) -> str:
        prefix = f"{name}:".ljust(9)
        if self.use_colours:
            prefix = f"{_LEVEL_COLOURS.get(level, '')}{prefix}\x1b[0m"
        return prefix


class DefaultHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler the server installs when no ``--log-config`` is given.

    Access lines bypass the logging machinery while this handler, with its own formatter, is
    all that listens to ``asgisock.access`` (see :class:`AccessLog`); then they reach the stream
    as the handler would have written them, several per write.
    """

    def __init__(self, *, use_colours: bool | None = None) -> None:
        super().__init__(sys.stderr)
        self.default_formatter = LevelFormatter(use_colours=use_colours)
        self.setFormatter(self.default_formatter)

    def write_lines(self, lines: list[str]) -> None:
        """Access lines at INFO, as :meth:`emit` would write each, in one write."""
        formatter = self.default_formatter
        start = formatter.level_prefix(logging.INFO, "INFO") + " "
        text = start + ("\n" + start).join(lines) + self.terminator
        self.acquire()
        try:
            self.stream.write(text)
            self.flush()
        except (OSError, ValueError):  # the stream is closed or broken: as logging, do not fail the server
            pass
        finally:
            self.release()


def configure_logging(log_level: str, log_config: str | os.PathLike[str] | None, access_log: bool, *,
                      use_colours: bool | None = None) -> None:
    """Set up both loggers; a ``log_config`` file replaces the defaults entirely.

    The level applies to the access logger too, as in uvicorn: its lines are at INFO, so that
    ``warning`` and above silence them. With a ``log_config`` the file's level for the access
    logger stands, unless the level given is higher. ``use_colours`` (None: when stderr is a
    terminal) is for the default handler only.
    """
    if log_config:
        _load_log_config(log_config)
    else:
        handler = DefaultHandler(use_colours=use_colours)
        for logger in (error_logger, access_logger):
            logger.handlers[:] = [handler]
            logger.propagate = False
    level = TRACE if log_level == "trace" else getattr(logging, log_level.upper())
    error_logger.setLevel(level)
    if not access_log:
        access_logger.handlers[:] = []
        access_logger.propagate = False
        access_logger.setLevel(logging.CRITICAL + 1)
    elif not log_config or level > access_logger.getEffectiveLevel():
        access_logger.setLevel(level)


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


Atom = Callable[[Mapping[str, Any], int, Iterable[tuple[bytes, bytes]], int, float], str]
"""An access log atom from the scope, status, response headers, body bytes and duration (s)."""


def _client(scope: Mapping[str, Any]) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


def _target(scope: Mapping[str, Any]) -> str:
    path: str = scope["raw_path"].decode("latin-1")
    query: bytes = scope["query_string"]
    return f"{path}?{query.decode('latin-1')}" if query else path


def _header(headers: Iterable[tuple[bytes, bytes]], name: str) -> str:
    wanted = name.encode("latin-1")
    for key, value in headers:
        if key.lower() == wanted:
            return value.decode("latin-1")
    return "-"


ATOMS: Final[Mapping[str, Atom]] = {
    "h": lambda scope, status, headers, size, duration: _client(scope),
    "l": lambda scope, status, headers, size, duration: "-",
    "u": lambda scope, status, headers, size, duration: "-",
    "t": lambda scope, status, headers, size, duration: time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
    "r": lambda scope, status, headers, size, duration: (
        f"{scope.get('method', 'GET')} {_target(scope)} HTTP/{scope['http_version']}"),
    "m": lambda scope, status, headers, size, duration: scope.get("method", "GET"),
    "U": lambda scope, status, headers, size, duration: scope["path"],
    "q": lambda scope, status, headers, size, duration: scope["query_string"].decode("latin-1"),
    "H": lambda scope, status, headers, size, duration: f"HTTP/{scope['http_version']}",
    "s": lambda scope, status, headers, size, duration: str(status),
    "B": lambda scope, status, headers, size, duration: str(size),
    "b": lambda scope, status, headers, size, duration: str(size) if size else "-",
    "f": lambda scope, status, headers, size, duration: _header(scope["headers"], "referer"),
    "a": lambda scope, status, headers, size, duration: _header(scope["headers"], "user-agent"),
    "T": lambda scope, status, headers, size, duration: str(int(duration)),
    "D": lambda scope, status, headers, size, duration: str(int(duration * 1_000_000)),
    "L": lambda scope, status, headers, size, duration: f"{duration:.6f}",
    "M": lambda scope, status, headers, size, duration: str(int(duration * 1000)),
    "p": lambda scope, status, headers, size, duration: f"<{os.getpid()}>",
}
"""Gunicorn's access log atoms: ``%(h)s`` remote address, ``%(r)s`` request line, ``%(m)s``
method, ``%(U)s`` path, ``%(q)s`` query, ``%(H)s`` protocol, ``%(s)s`` status, ``%(B)s``/``%(b)s``
body bytes, ``%(f)s`` referer, ``%(a)s`` user agent, ``%(t)s`` time, ``%(T)s``/``%(D)s``/``%(L)s``/
``%(M)s`` duration in s/µs/decimal s/ms, ``%(p)s`` pid; and ``%({name}i)s``/``%({name}o)s``/
``%({name}e)s`` request headers, response headers and environment variables."""


def atom(key: str) -> Atom:
    """The function computing one atom; ``-`` for an unknown one."""
    if key.startswith("{") and len(key) > 3:
        name, kind = key[1:-2].lower(), key[-1]
        if kind == "i":
            return lambda scope, status, headers, size, duration: _header(scope["headers"], name)
        if kind == "o":
            return lambda scope, status, headers, size, duration: _header(headers, name)
        if kind == "e":
            return lambda scope, status, headers, size, duration: os.environ.get(name.upper(), "-")
    return ATOMS.get(key, _unknown)


def _unknown(scope: Mapping[str, Any], status: int, headers: Iterable[tuple[bytes, bytes]], size: int,
             duration: float) -> str:
    return "-"


class AccessAtoms(dict[str, str]):
    """The atoms as a mapping for ``format % atoms``, each computed on first use: how a format
    with other conversions than ``%(name)s`` (``%(s)d``, widths) is rendered."""

    def __init__(self, scope: Mapping[str, Any], status: int, response_headers: Iterable[tuple[bytes, bytes]],
                 body_bytes: int, duration: float) -> None:
        super().__init__()
        self.inputs: tuple[Mapping[str, Any], int, Iterable[tuple[bytes, bytes]], int, float] = (
            scope, status, response_headers, body_bytes, duration)

    def __missing__(self, key: str) -> str:
        value = self[key] = atom(key)(*self.inputs)
        return value


_PIECE: Final = re.compile(r"%%|%\((?P<key>[^)]*)\)s")
_OTHER_CONVERSION: Final = re.compile(r"%(?!%|\([^)]*\)s)")


_INLINE: Final = {
    "h": '(f"{_c[0]}:{_c[1]}" if (_c := scope.get("client")) else "-")',
    "r": ('f"{scope.get(\'method\', \'GET\')} {scope[\'raw_path\'].decode(\'latin-1\')}'
          '{\'?\' + _q.decode(\'latin-1\') if (_q := scope[\'query_string\']) else \'\'}'
          ' HTTP/{scope[\'http_version\']}"'),
    "m": 'scope.get("method", "GET")',
    "U": 'scope["path"]',
    "H": '"HTTP/" + scope["http_version"]',
    "s": "str(status)",
    "B": "str(size)",
    "b": '(str(size) if size else "-")',
    "l": '"-"',
    "u": '"-"',
}
"""The commonest atoms as expressions, written into the compiled format rather than called:
each is the same as its function in :data:`ATOMS`."""


JSON_FORMAT: Final = "json"
"""``--access-log-format json``: one JSON object per line, for pipelines that parse logs."""
_json_string: Final[Callable[[str], str]] = json.encoder.encode_basestring_ascii
"""The C encoder ``json.dumps`` uses for one string: quotes, escapes, non-ASCII as ``\\u``."""


class _Clock:
    """ISO 8601 UTC timestamps with milliseconds, each made once: the responses of one
    millisecond share it, and the seconds are formatted once a second."""

    millisecond = -1
    second = -1
    prefix = ""
    text = ""

    @classmethod
    def now(cls) -> str:
        millisecond = int(time.time() * 1000)
        if millisecond != cls.millisecond:
            cls.millisecond = millisecond
            second, fraction = divmod(millisecond, 1000)
            if second != cls.second:
                cls.second = second
                cls.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            cls.text = f"{cls.prefix}.{fraction:03d}Z"
        return cls.text


_JSON_STRINGS: dict[Any, str] = {}
"""Encoded values met over and over (paths, clients, user agents), bounded as the scope's paths are."""
_MAX_JSON_STRINGS: Final = 4096


def _json_value(value: str) -> str:
    encoded = _JSON_STRINGS.get(value)
    if encoded is None:
        encoded = _json_string(value)
        if len(value) <= 256 and len(_JSON_STRINGS) < _MAX_JSON_STRINGS:
            _JSON_STRINGS[value] = encoded
    return encoded


def json_line(scope: Mapping[str, Any], status: int, headers: Iterable[tuple[bytes, bytes]], size: int,
              duration: float) -> str:
    """The JSON access line: time, client, method, path, query, status, bytes, duration (s),
    user agent and the ``X-Request-ID`` when the request has one (else null)."""
    agent = request_id = "null"
    for name, value in scope["headers"]:
        if name == b"user-agent":
            agent = _JSON_STRINGS.get(value) or _json_bytes(value)
        elif name == b"x-request-id":
            request_id = _json_string(value.decode("latin-1"))
    client = scope.get("client")
    query = scope["query_string"]
    return (
        f'{{"time":"{_Clock.now()}","client":{_JSON_STRINGS.get(client) or _json_client(client)},'
        f'"method":{_JSON_STRINGS.get(scope.get("method", "GET")) or _json_value(scope.get("method", "GET"))},'
        f'"path":{_JSON_STRINGS.get(scope["path"]) or _json_value(scope["path"])},'
        f'"query":{_json_string(query.decode("latin-1")) if query else _EMPTY},"status":{status},"bytes":{size},'
        f'"duration":{duration:.6f},"user_agent":{agent},"request_id":{request_id}}}'
    )


_EMPTY: Final = '""'


def _json_bytes(value: bytes) -> str:
    encoded = _json_string(value.decode("latin-1"))
    if len(value) <= 256 and len(_JSON_STRINGS) < _MAX_JSON_STRINGS:
        _JSON_STRINGS[value] = encoded
    return encoded


def _json_client(client: tuple[str, int] | None) -> str:
    if not client:
        return "null"
    encoded = _json_string(f"{client[0]}:{client[1]}")
    if len(_JSON_STRINGS) < _MAX_JSON_STRINGS:
        _JSON_STRINGS[client] = encoded
    return encoded


class AccessFormat:
    """An access log format, compiled once into one function of the atoms it uses.

    ``%(name)s`` atoms and ``%%`` are compiled; a format with any other conversion (``%(s)d``,
    a width) is rendered by ``%`` formatting over :class:`AccessAtoms` instead.
    """

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.parts: list[str | Atom] | None = None
        """Literal strings and atoms in order; None when only ``%`` formatting can render it."""
        self._render: Atom = self._percent
        if fmt == JSON_FORMAT:
            self._render = json_line
            return
        if _OTHER_CONVERSION.search(fmt.replace("%%", "")) is not None:
            return
        parts: list[str | Atom] = []
        expressions: list[str] = []
        names: dict[str, Any] = {}
        position = 0
        for match in [*_PIECE.finditer(fmt), None]:
            end = len(fmt) if match is None else match.start()
            literal = fmt[position:end] + ("%" if match is not None and match["key"] is None else "")
            if literal:
                parts.append(literal)
                expressions.append(repr(literal))
            if match is None:
                break
            key = match["key"]
            if key is not None:
                parts.append(atom(key))
                if key in _INLINE:
                    expressions.append(_INLINE[key])
                else:
                    names[f"_atom{len(names)}"] = atom(key)
                    expressions.append(f"_atom{len(names) - 1}(scope, status, headers, size, duration)")
            position = match.end()
        self.parts = parts
        body = " + ".join(expressions) or "''"
        source = f"def render(scope, status, headers, size, duration):\n    return {body}\n"
        # Nothing of the format is executed: the source holds fixed expressions, names, and the
        # literal text as repr() strings.
        exec(compile(source, f"<access log format {fmt!r}>", "exec"), names)
        self._render = names["render"]

    def render(self, scope: Mapping[str, Any], status: int, headers: Iterable[tuple[bytes, bytes]], size: int,
               duration: float) -> str:
        return self._render(scope, status, headers, size, duration)

    def _percent(self, scope: Mapping[str, Any], status: int, headers: Iterable[tuple[bytes, bytes]], size: int,
                 duration: float) -> str:
        try:
            return self.fmt % AccessAtoms(scope, status, headers, size, duration)
        except (KeyError, ValueError, TypeError) as exc:
            return f"invalid access log format {self.fmt!r}: {exc}"


class AccessLog:
    """Writes one access line per response on the ``asgisock.access`` logger.

    While the server's own :class:`DefaultHandler` is all that listens to the logger, lines go
    to its stream directly, gathered and written once per event loop iteration: no log record
    per request, and one write for all the responses of an iteration. Whenever anything else
    listens (``--log-config``, a handler or filter added by the app, ``propagate``), every line
    is a record through ``logging`` as usual. A line is written at the latest one loop iteration
    after its response completed. The server makes none when, as it starts, the logger's level
    is above INFO (see :func:`access_log_enabled`), so that a quiet access log costs nothing per request.
    """

    def __init__(self, fmt: str, loop: asyncio.AbstractEventLoop) -> None:
        self.format = AccessFormat(fmt)
        self.loop = loop
        self.pending: list[str] = []

    def log(self, scope: Mapping[str, Any], status: int, headers: Iterable[tuple[bytes, bytes]], size: int,
            duration: float) -> None:
        logger = access_logger
        if not logger.isEnabledFor(logging.INFO):
            return
        line = self.format.render(scope, status, headers, size, duration)
        if _direct_handler() is None:
            if self.pending:
                self.flush()  # lines gathered before the configuration changed go first
            logger.info(line)
            return
        pending = self.pending
        if not pending:
            self.loop.call_soon(self.flush)
        pending.append(line)

    def flush(self) -> None:
        lines, self.pending = self.pending, []
        if not lines:
            return
        handler = _direct_handler()
        if handler is not None:
            handler.write_lines(lines)
        else:  # the configuration changed since these were gathered
            for line in lines:
                access_logger.info(line)


def access_log_enabled() -> bool:
    """Whether access lines would be logged now (``--log-level warning`` turns them off)."""
    return access_logger.isEnabledFor(logging.INFO)


def _direct_handler() -> DefaultHandler | None:
    """The default handler, when it alone would see access records and format them its way."""
    logger = access_logger
    handlers = logger.handlers
    if len(handlers) != 1 or logger.propagate or logger.filters:
        return None
    handler = handlers[0]
    if (handler.__class__ is not DefaultHandler or handler.filters or handler.level > logging.INFO
            or handler.formatter is not handler.default_formatter):
        return None
    return handler
