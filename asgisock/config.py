"""Every setting of the server, defined once.

Each field of :class:`Config` carries its type, default and help text. The click command
(``cli.py``), the ``ASGISOCK_<NAME>`` environment variables, :func:`asgisock.run` keywords and
the settings table in the docs are all generated from these definitions, so a setting cannot
exist in one place and be missing from another.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from asgisock.exceptions import ConfigError
from asgisock.types import ASGIApp

Kind = Literal["str", "int", "float", "bool", "choice", "path", "file", "list"]
"""``path`` is any path; ``file`` must name an existing file."""

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
DEFAULT_ACCESS_LOG_FORMAT = '%(h)s - "%(r)s" %(s)s'
ENV_PREFIX = "ASGISOCK_"


@dataclass(frozen=True)
class Setting:
    """How one :class:`Config` field is presented and checked."""

    kind: Kind
    help: str
    choices: tuple[str, ...] = ()
    flag_name: str | None = None
    """The option's name when it differs from the field's (``headers`` is ``--header``)."""
    minimum: float | None = None
    maximum: float | None = None
    optional: bool = False
    """``None`` is an accepted value (``--fd``, ``--limit-concurrency`` ...)."""
    metavar: str | None = None
    group: str = "Server"

    def flag(self, name: str) -> str:
        return "--" + (self.flag_name or name).replace("_", "-")


def setting(default: Any, kind: Kind, help: str, **options: Any) -> Any:
    """Declare a :class:`Config` field together with its presentation."""
    info = Setting(kind, help, **options)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"setting": info})
    return field(default=default, metadata={"setting": info})


@dataclass
class Config:
    """The server's settings; ``Config(app, port=9000)`` mirrors ``asgisock app --port 9000``."""

    app: ASGIApp | str
    # -- where to listen
    host: str = setting("127.0.0.1", "str", "Bind the socket to this host.", group="Socket")
    port: int = setting(8000, "int", "Bind the socket to this port (0: any free port).",
                        minimum=0, maximum=65535, group="Socket")
    uds: str | None = setting(None, "path", "Bind to this UNIX domain socket instead of TCP.",
                              optional=True, group="Socket")
    fd: int | None = setting(None, "int", "Serve on an already-bound socket with this file descriptor.",
                             optional=True, minimum=0, group="Socket")
    backlog: int = setting(2048, "int", "Maximum number of connections waiting to be accepted.",
                           minimum=1, group="Socket")
    # -- the application
    app_dir: str = setting(".", "path", "Look for the app in this directory (added to sys.path).",
                           group="Application")
    factory: bool = setting(False, "bool", "Treat APP as a factory: call it with no arguments to get the app.",
                            group="Application")
    env_file: str | None = setting(None, "file", "Load environment variables from this .env file.",
                                   optional=True, group="Application")
    lifespan: str = setting("auto", "choice", "Run the ASGI lifespan protocol: 'auto' runs it unless the app "
                            "rejects it.", choices=("auto", "on", "off"), group="Application")
    root_path: str = setting("", "str", "The ASGI root_path: the prefix under which the app is mounted.",
                             group="Application")
    # -- event loop and protocols
    loop: str = setting("auto", "choice", "Event loop: uvloop when installed ('auto'), or plain asyncio.",
                        choices=("auto", "asyncio", "uvloop"))
    ws: str = setting("auto", "choice", "WebSocket support: 'none' serves upgrade requests as plain HTTP.",
                      choices=("auto", "none"))
    # -- limits and timeouts
    timeout_keep_alive: float = setting(5.0, "float", "Close idle keep-alive connections after this many seconds.",
                                        minimum=0, group="Limits")
    min_request_body_rate: float = setting(
        1024.0, "float", "Slowest average rate, in bytes per second, at which a request body may arrive once "
        "--timeout-keep-alive seconds have passed; slower ones get 408 (0: no minimum).",
        minimum=0, group="Limits")
    timeout_graceful_shutdown: float | None = setting(
        None, "float", "On shutdown, wait at most this many seconds for in-flight requests.",
        optional=True, minimum=0, group="Limits")
    limit_concurrency: int | None = setting(
        None, "int", "Answer 503 once this many connections and tasks are in flight.",
        optional=True, minimum=1, group="Limits")
    max_header_size: int = setting(65536, "int", "Largest request head (request line and headers) in bytes; "
                                   "larger ones get 431.", minimum=1024, group="Limits")
    # -- WebSocket
    ws_max_size: int = setting(16 * 2**20, "int", "Largest incoming WebSocket message in bytes (after "
                               "decompression); larger ones close the connection with 1009.",
                               minimum=1, group="WebSocket")
    ws_max_queue: int = setting(32, "int", "Incoming WebSocket messages buffered while the app does not "
                                "receive(); then reading pauses.", minimum=1, group="WebSocket")
    ws_ping_interval: float | None = setting(20.0, "float", "Send a WebSocket ping this often, in seconds.",
                                             optional=True, minimum=0.001, group="WebSocket")
    ws_ping_timeout: float | None = setting(20.0, "float", "Drop the connection when a ping gets no pong "
                                            "within this many seconds.", optional=True, minimum=0.001,
                                            group="WebSocket")
    ws_per_message_deflate: bool = setting(True, "bool", "Offer permessage-deflate compression (RFC 7692).",
                                           group="WebSocket")
    ws_deflate_window_bits: int = setting(12, "int", "The server's own LZ77 window (9-15) for "
                                          "permessage-deflate; 12 keeps a compressing connection near "
                                          "44 KiB, 15 near 126 KiB.", minimum=9, maximum=15, group="WebSocket")
    ws_deflate_no_context_takeover: bool = setting(
        False, "bool", "Reset the server's compressor after every message (less memory, worse ratio).",
        group="WebSocket")
    ws_deflate_threshold: int = setting(0, "int", "Send messages shorter than this many bytes uncompressed.",
                                        minimum=0, group="WebSocket")
    # -- response headers
    server_header: bool = setting(True, "bool", "Add a 'Server: asgisock' header to responses.", group="Headers")
    date_header: bool = setting(True, "bool", "Add a 'Date' header to responses.", group="Headers")
    headers: list[str] = setting([], "list", "Add a default response header (repeatable; in the "
                                 "environment variable, one header per line).",
                                 metavar="NAME:VALUE", flag_name="header", group="Headers")
    # -- logging
    log_level: str = setting("info", "choice", "Log level of the asgisock.error logger.", choices=LOG_LEVELS,
                             group="Logging")
    log_config: str | None = setting(None, "file", "Logging configuration file: .json, .yaml (with PyYAML) "
                                     "or .ini.", optional=True, group="Logging")
    access_log: bool = setting(True, "bool", "Log one line per request on the asgisock.access logger.",
                               group="Logging")
    access_log_format: str = setting(DEFAULT_ACCESS_LOG_FORMAT, "str", "Access log line, with gunicorn-style "
                                     "atoms such as %(h)s %(r)s %(s)s %(L)s.", group="Logging")

    header_pairs: list[tuple[bytes, bytes]] = field(init=False, repr=False, default_factory=list)
    """``headers`` parsed into lower-cased name/value byte pairs."""

    def __post_init__(self) -> None:
        for item in settings_fields():
            self._check(item.name, item.metadata["setting"], getattr(self, item.name))
        self.header_pairs = self._parse_headers()
        if self.fd is not None and self.uds:
            raise ConfigError("--fd", "cannot be combined with --uds")

    def _check(self, name: str, info: Setting, value: Any) -> None:
        flag = info.flag(name)
        if value is None:
            if not info.optional:
                raise ConfigError(flag, "a value is required")
            return
        check = _CHECKS[info.kind]
        check(flag, info, value)

    def _parse_headers(self) -> list[tuple[bytes, bytes]]:
        pairs = []
        for header in self.headers:
            name, sep, value = header.partition(":")
            name = name.strip()
            if not sep or not name or not _is_token(name) or any(c in value for c in "\r\n\0"):
                raise ConfigError("--header", f"{header!r} is not NAME:VALUE")
            pairs.append((name.lower().encode("latin-1"), value.strip().encode("latin-1")))
        return pairs

    @property
    def bind_description(self) -> str:
        if self.uds:
            return f"unix:{self.uds}"
        if self.fd is not None:
            return f"fd://{self.fd}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def settings_fields() -> Sequence[dataclasses.Field[Any]]:
    """The fields of :class:`Config` that are user settings (all but ``app``)."""
    return [f for f in dataclasses.fields(Config) if "setting" in f.metadata]


def default_of(item: dataclasses.Field[Any]) -> Any:
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return item.default


def env_var(name: str) -> str:
    """``ASGISOCK_<OPTION>``: the option's name (``--header`` is ``ASGISOCK_HEADER``)."""
    info = Config.__dataclass_fields__[name].metadata["setting"] if name in Config.__dataclass_fields__ else None
    flag = info.flag(name) if info is not None else "--" + name
    return ENV_PREFIX + flag[2:].replace("-", "_").upper()


def _is_token(text: str) -> bool:
    """RFC 9110 §5.6.2 token characters."""
    return all(c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in text)


def _check_str(flag: str, info: Setting, value: Any) -> None:
    if not isinstance(value, str):
        raise ConfigError(flag, f"expected a string, got {value!r}")


def _check_number(flag: str, info: Setting, value: Any) -> None:
    wanted = int if info.kind == "int" else (int, float)
    if isinstance(value, bool) or not isinstance(value, wanted) or not math.isfinite(value):
        raise ConfigError(flag, f"expected {'an integer' if info.kind == 'int' else 'a number'}, got {value!r}")
    if info.minimum is not None and value < info.minimum:
        raise ConfigError(flag, f"{value!r} is smaller than {info.minimum:g}")
    if info.maximum is not None and value > info.maximum:
        raise ConfigError(flag, f"{value!r} is larger than {info.maximum:g}")


def _check_bool(flag: str, info: Setting, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(flag, f"expected True or False, got {value!r}")


def _check_choice(flag: str, info: Setting, value: Any) -> None:
    if value not in info.choices:
        raise ConfigError(flag, f"{value!r} is not one of {', '.join(info.choices)}")


def _check_path(flag: str, info: Setting, value: Any) -> None:
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(flag, f"expected a path, got {value!r}")


def _check_file(flag: str, info: Setting, value: Any) -> None:
    _check_path(flag, info, value)
    if not os.path.isfile(value):
        raise ConfigError(flag, f"file {os.fspath(value)!r} does not exist")


def _check_list(flag: str, info: Setting, value: Any) -> None:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(flag, f"expected a list of strings, got {value!r}")


_CHECKS = {
    "str": _check_str,
    "int": _check_number,
    "float": _check_number,
    "bool": _check_bool,
    "choice": _check_choice,
    "path": _check_path,
    "file": _check_file,
    "list": _check_list,
}


def settings_table() -> str:
    """The Markdown table of every setting, as published in ``docs/reference/settings.md``."""
    rows = ["| Option | Environment variable | Default | Description |", "|---|---|---|---|"]
    for item in settings_fields():
        info: Setting = item.metadata["setting"]
        default = default_of(item)
        flag = info.flag(item.name)
        if info.kind == "bool":
            flag = f"{flag} / --no-{flag[2:]}"
        rows.append(f"| `{flag}` | `{env_var(item.name)}` | `{default!r}` | {info.help} |")
    return "\n".join(rows) + "\n"
