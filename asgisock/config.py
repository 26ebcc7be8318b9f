"""Every setting of the server, defined once.

Each field of :class:`Config` carries its type (the annotation), default and help text. The
click command (``cli.py``), the ``ASGISOCK_<NAME>`` environment variables, :func:`asgisock.run`
keywords and the settings table in the docs are all generated from these definitions, so a
setting cannot exist in one place and be missing from another.

``Config(...)`` never reads the environment: a program that builds one gets exactly the
settings it passes. The ``asgisock`` command and :func:`asgisock.run` do read it, through
:func:`environ_settings`, with the command line's own parser.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args, get_origin

import click

from asgisock.exceptions import ConfigError
from asgisock.http11.headers import FORBIDDEN_VALUE_RE, TOKEN_RE
from asgisock.kinds import KINDS, KindName
from asgisock.proxy.forwarded import TrustedProxies
from asgisock.types import ASGIApp
from asgisock.ws.deflate import MAX_WINDOW_BITS, MIN_WINDOW_BITS

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
DEFAULT_ACCESS_LOG_FORMAT = '%(h)s - "%(r)s" %(s)s'
ENV_PREFIX = "ASGISOCK_"
DEFAULT_FORWARDED_ALLOW_IPS = "127.0.0.1,::1"
UVICORN_PREFIX = "UVICORN_"
"""uvicorn's environment variables (click's ``auto_envvar_prefix``), read after asgisock's own."""
COMPATIBILITY = "uvicorn compatibility"
"""The help section of the options that exist only so that uvicorn's command lines work."""


@dataclass(frozen=True)
class Declaration:
    """What :func:`setting` records beside the default: all that the annotation cannot say."""

    help: str
    choices: tuple[str, ...] = ()
    """The values a ``str`` setting may take. Not a ``Literal`` annotation: that would make every
    typed program passing a plain ``str`` (``Config(app, loop=name)``) fail to type-check."""
    path: Literal["any", "file"] | None = None
    """A ``str`` that names a path (``"file"``: an existing file) rather than plain text; a list
    of paths."""
    flag_name: str | None = None
    """The option's name when it differs from the field's (``headers`` is ``--header``)."""
    minimum: float | None = None
    maximum: float | None = None
    metavar: str | None = None
    group: str = "Server"
    requires: str | None = None
    """Another setting this one means nothing without, when set to other than its default: the
    other must be set to other than its own default too."""
    parse: Callable[[Any], Any] | None = None
    """Checks the syntax of a value beyond its kind (raising ValueError), and parses it."""
    env_alias: str | None = None
    """One more environment variable, read when ``ASGISOCK_<NAME>`` and ``UVICORN_<NAME>`` are
    unset (``WEB_CONCURRENCY``: a name that uvicorn and others read, so that a deployment moves
    over unchanged)."""
    uvicorn: bool | str = False
    """uvicorn 0.54 has this setting: True under the same name, or uvicorn's name for it (its
    parameter's, ``h11_max_incomplete_event_size``), which then is a second option name. Either
    way ``UVICORN_<NAME>`` is read after ``ASGISOCK_<NAME>``, as uvicorn reads it."""
    octal: bool = False
    """An ``int`` written in octal on the command line and in the environment (a file mode)."""
    mapped: Mapping[Any, str] = field(default_factory=dict)
    """Values accepted so that uvicorn's command lines work, which asgisock serves another way:
    each with the line logged at start-up to say how."""
    refused: Mapping[Any, str] = field(default_factory=dict)
    """Values uvicorn takes that asgisock recognises and refuses, each with the reason."""


def setting(default: Any, help: str, **options: Any) -> Any:
    """Declare a :class:`Config` field together with its presentation."""
    info = Declaration(help, **options)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"setting": info})
    return field(default=default, metadata={"setting": info})


def _header_pair(header: str) -> tuple[bytes, bytes]:
    """``NAME:VALUE`` checked with the HTTP layer's own field syntax (RFC 9110 §5)."""
    name, sep, value = header.partition(":")
    try:
        name_bytes = name.strip().encode("latin-1")
        raw_value = value.encode("latin-1")
    except UnicodeEncodeError:
        name_bytes = raw_value = b"\0"
    if not sep or not TOKEN_RE.fullmatch(name_bytes) or FORBIDDEN_VALUE_RE.search(raw_value):
        raise ValueError(f"{header!r} is not NAME:VALUE")
    return name_bytes.lower(), value.strip().encode("latin-1")


def _header_pairs(headers: list[str]) -> list[tuple[bytes, bytes]]:
    return [_header_pair(header) for header in headers]


def _trusted_proxies(spec: str | None) -> TrustedProxies:
    return TrustedProxies(DEFAULT_FORWARDED_ALLOW_IPS if spec is None else spec)


LOOPS: Final = ("auto", "asyncio", "uvloop", "zuvloop", "none")
_IMPORT_STRING: Final = re.compile(r"[\w.]+:[\w.]+")


def _loop_name(name: str) -> str:
    """One of :data:`LOOPS`, or ``module:attribute`` naming a loop factory (as uvicorn takes it)."""
    if name not in LOOPS and not _IMPORT_STRING.fullmatch(name):
        raise ValueError(f"{name!r} is not one of {', '.join(LOOPS)}, nor a MODULE:ATTRIBUTE loop factory")
    return name


SSL_PROTOCOLS: Final = {2: "PROTOCOL_TLS", 3: "PROTOCOL_TLSv1", 4: "PROTOCOL_TLSv1_1", 5: "PROTOCOL_TLSv1_2",
                        16: "PROTOCOL_TLS_CLIENT", 17: "PROTOCOL_TLS_SERVER"}
"""The values of Python's ``ssl.PROTOCOL_*`` constants, which ``--ssl-version`` takes as uvicorn does."""


def _ssl_protocol(number: int) -> int:
    if number not in SSL_PROTOCOLS:
        raise ValueError(f"{number} is not an ssl.PROTOCOL_* number; use 17 (PROTOCOL_TLS_SERVER), "
                         "2 (PROTOCOL_TLS) or 5 (PROTOCOL_TLSv1_2)")
    return number


_OLD_TLS: Final = "TLS 1.0 and 1.1 are deprecated (RFC 8996): asgisock serves TLS 1.2 and 1.3 only"


@dataclass
class Config:
    """The server's settings; ``Config(app, port=9000)`` mirrors ``asgisock app --port 9000``."""

    app: ASGIApp | str
    # -- where to listen
    host: str = setting("127.0.0.1", "Bind the socket to this host.", uvicorn=True, group="Socket")
    port: int = setting(8000, "Bind the socket to this port (0: any free port).",
                        minimum=0, maximum=65535, uvicorn=True, group="Socket")
    uds: str | None = setting(None, "Bind to this UNIX domain socket instead of TCP.",
                              path="any", uvicorn=True, group="Socket")
    uds_perms: int = setting(0o666, "Mode of the --uds socket file, in octal: 666 (the default) lets "
                             "everyone connect, 660 only its owner and group.", minimum=0, maximum=0o777,
                             octal=True, requires="uds", group="Socket")
    fd: int | None = setting(None, "Serve on an already-bound socket with this file descriptor.",
                             minimum=0, uvicorn=True, group="Socket")
    backlog: int = setting(2048, "Maximum number of connections waiting to be accepted.",
                           minimum=1, uvicorn=True, group="Socket")
    # -- the application
    app_dir: str = setting(".", "Look for the app in this directory (added to sys.path).",
                           path="any", uvicorn=True, group="Application")
    factory: bool = setting(False, "Treat APP as a factory: call it with no arguments to get the app.",
                            uvicorn=True, group="Application")
    interface: str = setting(
        "auto", "How to call the app: 'asgi3' as app(scope, receive, send), 'asgi2' as app(scope)(receive, "
        "send); 'auto' takes a class, or a callable that is not a coroutine function, for ASGI 2.",
        choices=("auto", "asgi3", "asgi2"), metavar="[auto|asgi3|asgi2]", uvicorn=True, group="Application",
        refused={"wsgi": "asgisock serves ASGI apps only; wrap a WSGI app in an ASGI adapter "
                         "(a2wsgi's WSGIMiddleware)"})
    env_file: str | None = setting(None, "Load environment variables from this .env file.",
                                   path="file", uvicorn=True, group="Application")
    lifespan: str = setting("auto", "Run the ASGI lifespan protocol: 'auto' runs it unless the app "
                            "rejects it.", choices=("auto", "on", "off"), uvicorn=True, group="Application")
    root_path: str = setting("", "The ASGI root_path: the prefix under which the app is mounted.",
                             uvicorn=True, group="Application")
    reset_contextvars: bool = setting(
        False, "Run each request and WebSocket in a fresh, empty contextvars.Context rather than in a copy "
        "of the server's, which holds what was set when the app was imported.", uvicorn=True,
        group="Application")
    # -- event loop and protocols
    loop: str = setting("auto", "Event loop: 'auto' is uvloop when installed, else asyncio; 'none' is what "
                        "asyncio's event loop policy makes; or MODULE:ATTRIBUTE, a function that returns "
                        "a new loop.", metavar="[auto|asyncio|uvloop|zuvloop|none|MODULE:ATTR]",
                        parse=_loop_name, uvicorn=True)
    ws: str = setting("auto", "WebSocket support: 'none' serves upgrade requests as plain HTTP; uvicorn's "
                      "'websockets', 'websockets-sansio' and 'wsproto' mean 'auto'.",
                      choices=("auto", "none", "websockets", "websockets-sansio", "wsproto"), uvicorn=True,
                      mapped=dict.fromkeys(("websockets", "websockets-sansio", "wsproto"),
                                           "asgisock serves WebSockets with its own implementation, "
                                           "as with --ws auto"))
    http: str = setting("auto", "HTTP/1.1 implementation: asgisock's own, on httptools (llhttp), whichever "
                        "is named.", choices=("auto", "httptools", "h11"), metavar="[auto|httptools|h11]",
                        uvicorn=True, group=COMPATIBILITY,
                        mapped={"h11": "asgisock parses HTTP/1.1 with httptools (llhttp), as with --http auto"},
                        refused={"zttp": "HTTP/2 is not supported yet; asgisock serves HTTP/1.1"})
    http2: bool = setting(False, "HTTP/2, which is not supported yet: --http2 stops with an error.",
                          uvicorn=True, group=COMPATIBILITY,
                          refused={True: "HTTP/2 is not supported yet; asgisock serves HTTP/1.1"})
    # -- limits and timeouts
    timeout_keep_alive: float = setting(5.0, "Close idle keep-alive connections after this many seconds.",
                                        minimum=0, uvicorn=True, group="Limits")
    min_request_body_rate: float = setting(
        1024.0, "Slowest average rate, in bytes per second, at which a request body may arrive once "
        "--timeout-keep-alive seconds have passed; slower ones get 408 (0: no minimum).",
        minimum=0, group="Limits")
    timeout_graceful_shutdown: float = setting(
        25.0, "On shutdown, wait at most this many seconds for in-flight requests and open "
        "WebSockets, then cut what is left (25: within Kubernetes' default 30 s grace period).",
        minimum=0, uvicorn=True, group="Limits")
    limit_concurrency: int | None = setting(
        None, "Answer 503 once this many connections and tasks are in flight.", minimum=1, uvicorn=True,
        group="Limits")
    max_header_size: int = setting(65536, "Largest request head (request line and headers) in bytes; "
                                   "larger ones get 431.", minimum=1024, group="Limits",
                                   uvicorn="h11_max_incomplete_event_size")
    # -- processes
    workers: int | None = setting(
        None, "Run this many worker processes under a supervisor that binds once, replaces a worker "
        "that dies and restarts them one at a time on SIGHUP (default: one process without a "
        "supervisor, or $WEB_CONCURRENCY).", minimum=1, env_alias="WEB_CONCURRENCY", uvicorn=True,
        group="Processes")
    timeout_worker_healthcheck: float = setting(
        5.0, "Replace a serving worker whose event loop has not answered the supervisor's heartbeat "
        "for this many seconds (a worker still starting up is never killed for being slow).",
        minimum=0.1, requires="workers", uvicorn=True, group="Processes")
    limit_max_requests: int | None = setting(
        None, "Replace a worker, without a gap, after about this many requests.",
        minimum=1, requires="workers", uvicorn=True, group="Processes")
    limit_max_requests_jitter: int = setting(
        0, "Add a random 0 to this many requests to --limit-max-requests for each worker, so that the "
        "workers are not all replaced at once.", minimum=0, requires="limit_max_requests", uvicorn=True,
        group="Processes")
    limit_max_rss: int | None = setting(
        None, "Replace a worker, without a gap, once its resident memory is over this many MiB.",
        minimum=1, requires="workers", group="Processes")
    reuse_port: bool = setting(
        False, "Give each worker its own SO_REUSEPORT listening socket, so that the kernel spreads new "
        "connections evenly over the workers (TCP only).", requires="workers", group="Processes")
    # -- reload
    reload: bool = setting(
        False, "Restart the workers when a source file changes (with the 'reload' extra: "
        "pip install 'asgisock[reload]'); combines with --workers.", uvicorn=True, group="Reload")
    reload_dirs: list[str] = setting(
        [], "Watch this directory for changes (repeatable; default: the current directory).",
        flag_name="reload_dir", metavar="DIR", path="any", requires="reload", uvicorn=True, group="Reload")
    reload_includes: list[str] = setting(
        [], "Also restart on changes to files matching this glob (repeatable; '*.py' always, unless "
        "given to --reload-exclude).", flag_name="reload_include", metavar="GLOB", requires="reload",
        uvicorn=True, group="Reload")
    reload_excludes: list[str] = setting(
        [], "Ignore changes to files matching this glob (repeatable; besides '.*', '*.py[cod]', "
        "'*.sw?', '*~' and '__pycache__').", flag_name="reload_exclude", metavar="GLOB", requires="reload",
        uvicorn=True, group="Reload")
    reload_delay: float = setting(
        0.25, "Seconds to wait after a change for more changes before restarting.",
        minimum=0, requires="reload", uvicorn=True, group="Reload")
    # -- WebSocket
    ws_max_size: int = setting(16 * 2**20, "Largest incoming WebSocket message in bytes (after "
                               "decompression); larger ones close the connection with 1009.",
                               minimum=1, uvicorn=True, group="WebSocket")
    ws_max_queue: int = setting(32, "Incoming WebSocket messages buffered while the app does not "
                                "receive(); then reading pauses.", minimum=1, uvicorn=True,
                                group="WebSocket")
    ws_ping_interval: float | None = setting(20.0, "Send a WebSocket ping this often, in seconds.",
                                             minimum=0.001, uvicorn=True, group="WebSocket")
    ws_ping_timeout: float | None = setting(20.0, "Drop the connection when a ping gets no pong "
                                            "within this many seconds.", minimum=0.001, uvicorn=True,
                                            group="WebSocket")
    ws_per_message_deflate: bool = setting(True, "Offer permessage-deflate compression (RFC 7692).",
                                           uvicorn=True, group="WebSocket")
    ws_deflate_window_bits: int = setting(
        12, f"The server's own LZ77 window ({MIN_WINDOW_BITS}-{MAX_WINDOW_BITS}) for permessage-deflate; "
        f"12 keeps a compressing connection near 44 KiB, {MAX_WINDOW_BITS} near 126 KiB.",
        minimum=MIN_WINDOW_BITS, maximum=MAX_WINDOW_BITS, group="WebSocket")
    ws_deflate_no_context_takeover: bool = setting(
        False, "Reset the server's compressor after every message (less memory, worse ratio).",
        group="WebSocket")
    ws_deflate_threshold: int = setting(0, "Send messages shorter than this many bytes uncompressed.",
                                        minimum=0, group="WebSocket")
    # -- TLS
    ssl_certfile: str | None = setting(None, "Serve HTTPS and WSS with this PEM certificate (chain) file; "
                                       "it is reloaded when it changes.", path="file", uvicorn=True,
                                       group="TLS")
    ssl_keyfile: str | None = setting(None, "The private key of --ssl-certfile (PEM), when not in the same "
                                      "file.", path="file", requires="ssl_certfile", uvicorn=True,
                                      group="TLS")
    ssl_keyfile_password: str | None = setting(None, "Password of the encrypted private key (in --ssl-keyfile, "
                                               "or in --ssl-certfile without it).", requires="ssl_certfile",
                                               uvicorn=True, group="TLS")
    ssl_version: int = setting(
        17, "A Python ssl.PROTOCOL_* number, as uvicorn takes it: 17 (TLS_SERVER), 2 (TLS) and 5 (TLSv1_2) "
        "all serve TLS 1.2 and 1.3; 3 and 4 (TLS 1.0, 1.1) are refused.", minimum=2, maximum=17,
        parse=_ssl_protocol, requires="ssl_certfile", uvicorn=True, group="TLS",
        mapped={5: "TLS 1.2 is the minimum, and TLS 1.3 is served too"},
        refused={3: _OLD_TLS, 4: _OLD_TLS, 16: "PROTOCOL_TLS_CLIENT is for clients; a server takes 17 "
                                                 "(PROTOCOL_TLS_SERVER)"})
    ssl_ca_certs: str | None = setting(None, "CA certificates (PEM) that client certificates must chain to.",
                                       path="file", requires="ssl_certfile", uvicorn=True, group="TLS")
    ssl_cert_reqs: int = setting(0, "Client certificates: 0 not asked for, 1 optional, 2 required "
                                 "(both verified against --ssl-ca-certs).", minimum=0, maximum=2, requires="ssl_ca_certs",
                                 uvicorn=True, group="TLS")
    ssl_ciphers: str | None = setting(None, "OpenSSL cipher list for TLS 1.2 (default: Python's secure "
                                      "defaults; TLS 1.3 suites are not affected).", requires="ssl_certfile",
                                      uvicorn=True, group="TLS")
    # -- behind a proxy
    proxy_headers: bool = setting(True, "Take the client's address and scheme from X-Forwarded-For, "
                                  "X-Forwarded-Proto, X-Forwarded-Port and RFC 7239 Forwarded, when the "
                                  "peer is in --forwarded-allow-ips.", uvicorn=True, group="Proxy")
    forwarded_allow_ips: str | None = setting(
        None, "Comma-separated IP addresses and networks of trusted proxies, '*' for all, 'unix:' for "
        f"UNIX-socket peers (default {DEFAULT_FORWARDED_ALLOW_IPS}, or $FORWARDED_ALLOW_IPS).",
        env_alias="FORWARDED_ALLOW_IPS", parse=_trusted_proxies, uvicorn=True, group="Proxy")
    forwarded_host: bool = setting(False, "Also take the Host the app sees from X-Forwarded-Host or "
                                   "Forwarded host= (trusted peers only).", group="Proxy")
    proxy_protocol: bool = setting(False, "Expect a PROXY protocol v1 or v2 header (HAProxy, AWS NLB) on "
                                   "every connection, from peers in --forwarded-allow-ips only; others "
                                   "are closed.", group="Proxy")
    # -- response headers
    server_header: bool = setting(True, "Add a 'Server: asgisock' header to responses.", uvicorn=True,
                                  group="Headers")
    date_header: bool = setting(True, "Add a 'Date' header to responses.", uvicorn=True, group="Headers")
    headers: list[str] = setting([], "Add a default response header (repeatable; in the environment "
                                 "variable, one header per line).",
                                 metavar="NAME:VALUE", flag_name="header", parse=_header_pairs, uvicorn=True,
                                 group="Headers")
    # -- logging
    log_level: str = setting("info", "Log level of the asgisock.error logger; 'warning' and above also "
                             "silence the access lines (logged at 'info').", choices=LOG_LEVELS, uvicorn=True,
                             group="Logging")
    log_config: str | None = setting(None, "Logging configuration file: .json, .yaml (with PyYAML) "
                                     "or .ini.", path="file", uvicorn=True, group="Logging")
    access_log: bool = setting(True, "Log one line per request on the asgisock.access logger.",
                               uvicorn=True, group="Logging")
    use_colors: bool | None = setting(None, "Colour the level names of the log lines (default: when "
                                      "stderr is a terminal; not with --log-config).", uvicorn=True,
                                      group="Logging")
    access_log_format: str = setting(DEFAULT_ACCESS_LOG_FORMAT, "Access log line, with gunicorn-style "
                                     "atoms such as %(h)s %(r)s %(s)s %(L)s; 'json' for one JSON object "
                                     "per request.", group="Logging")

    header_pairs: list[tuple[bytes, bytes]] = field(init=False, repr=False, default_factory=list)
    """``headers`` parsed into lower-cased name/value byte pairs."""
    trusted_proxies: TrustedProxies = field(init=False, repr=False)
    """``forwarded_allow_ips`` parsed."""

    def __post_init__(self) -> None:
        for item in SETTINGS.values():
            item.check(getattr(self, item.name))
        self.header_pairs = _header_pairs(self.headers)
        self.trusted_proxies = _trusted_proxies(self.forwarded_allow_ips)
        if self.fd is not None and self.uds:
            raise ConfigError("--fd", "cannot be combined with --uds")
        if self.reuse_port and (self.fd is not None or self.uds):
            raise ConfigError("--reuse-port", "needs a TCP --host and --port, not --fd or --uds")
        for item in SETTINGS.values():
            needed = item.declared.requires
            if (needed is not None and getattr(self, item.name) != item.default
                    and getattr(self, needed) == SETTINGS[needed].default):
                raise ConfigError(item.flag, f"needs {SETTINGS[needed].flag}")

    def compatibility_notes(self) -> list[str]:
        """A line for each value accepted for uvicorn's sake and served another way (``--ws wsproto``)."""
        return [note for item in SETTINGS.values() if (note := item.note(getattr(self, item.name)))]

    @property
    def bind_description(self) -> str:
        if self.uds:
            return f"unix:{self.uds}"
        if self.fd is not None:
            return f"fd://{self.fd}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.url_scheme}://{host}:{self.port}"

    @property
    def url_scheme(self) -> str:
        return "https" if self.ssl_certfile else "http"


@dataclass(frozen=True)
class Setting:
    """One setting as every surface presents it: its field, its declaration and its annotation."""

    name: str
    kind: KindName
    optional: bool
    """``None`` is an accepted value (``--fd``, ``--limit-concurrency`` ...): ``T | None``."""
    declared: Declaration
    source: dataclasses.Field[Any]

    @property
    def help(self) -> str:
        return self.declared.help

    @property
    def choices(self) -> tuple[str, ...]:
        return self.declared.choices

    @property
    def minimum(self) -> float | None:
        return self.declared.minimum

    @property
    def maximum(self) -> float | None:
        return self.declared.maximum

    @property
    def octal(self) -> bool:
        return self.declared.octal

    @property
    def flag(self) -> str:
        return "--" + (self.declared.flag_name or self.name).replace("_", "-")

    @property
    def env_var(self) -> str:
        """``ASGISOCK_<OPTION>``: the option's name (``--header`` is ``ASGISOCK_HEADER``)."""
        return ENV_PREFIX + self.flag[2:].replace("-", "_").upper()

    @property
    def uvicorn_name(self) -> str | None:
        """uvicorn's name for the setting (its ``run()`` keyword), when uvicorn has it."""
        named = self.declared.uvicorn
        return (self.name if named is True else named) or None

    @property
    def aliases(self) -> list[str]:
        """Other names of the option: uvicorn's, where it differs (``--h11-max-incomplete-event-size``)."""
        name = self.uvicorn_name
        return [] if name is None or name == self.name else ["--" + name.replace("_", "-")]

    @property
    def env_vars(self) -> list[str]:
        """The environment variables read, first set first: ``ASGISOCK_*``, uvicorn's, the alias."""
        names = [self.env_var]
        if self.uvicorn_name is not None:
            names.append(UVICORN_PREFIX + self.uvicorn_name.upper())
        if self.declared.env_alias:
            names.append(self.declared.env_alias)
        return names

    def environ(self) -> tuple[str, str] | None:
        """The first of :attr:`env_vars` set (an empty one counts as unset), and its value."""
        for name in self.env_vars:
            if value := os.environ.get(name):
                return name, value
        return None

    @property
    def default(self) -> Any:
        return default_of(self.source)

    @property
    def default_text(self) -> str:
        """The default as the help and the docs show it (a mode in octal)."""
        default = self.default
        return oct(default) if self.octal else repr(default)

    def check(self, value: Any) -> None:
        """Raise :class:`ConfigError`, naming the option, unless ``value`` is valid."""
        if value is None:
            if not self.optional:
                raise ConfigError(self.flag, "a value is required")
            return
        reason = _looked_up(self.declared.refused, value)
        if reason is not None:
            raise ConfigError(self.flag, f"{_shown(value)}: {reason}")
        KINDS[self.kind].check(self, value)
        if self.declared.parse is not None:
            try:
                self.declared.parse(value)
            except ValueError as exc:
                raise ConfigError(self.flag, str(exc)) from None

    @property
    def spellings(self) -> tuple[str, ...]:
        """What the command line takes for a choice: the choices, and the values it refuses (for
        the reason to be given rather than the list of choices)."""
        return self.choices + tuple(key for key in self.declared.refused if isinstance(key, str))

    def note(self, value: Any) -> str | None:
        """The start-up line for a value accepted for uvicorn's sake and served another way."""
        line = _looked_up(self.declared.mapped, value)
        return None if line is None else f"{self.flag} {_shown(value)}: {line}"

    def option(self) -> click.Option:
        """The command-line option, which also reads the environment variables."""
        # click would show a mode in decimal: its help says the default instead
        common: dict[str, Any] = {"help": self.help, "show_default": not self.octal, "setting": self}
        names = [self.flag, *self.aliases, self.name]
        if self.kind == "bool":
            names[0] = f"{self.flag}/--no-{self.flag[2:]}"
            return SettingOption(names, default=self.default, **common)
        param_type = KINDS[self.kind].param_type(self)
        if self.kind == "list":
            return SettingOption(names, type=param_type, multiple=True, metavar=self.declared.metavar, **common)
        return SettingOption(names, type=param_type, default=self.default, metavar=self.declared.metavar,
                             **common)

    def from_environ(self, ctx: click.Context) -> Any:
        """The value of the environment variable, parsed as the command line parses it; or None."""
        option = self.option()
        raw = option.value_from_envvar(ctx)
        if raw is None:
            return None
        try:
            value = option.type_cast_value(ctx, raw)
        except click.BadParameter as exc:
            raise ConfigError(self.env_var, exc.message) from None
        return list(value) if self.kind == "list" else value


class SettingOption(click.Option):
    """A setting's option: it reads :attr:`Setting.env_vars`, and splits a list from uvicorn's
    variable as uvicorn (click) does, paths on ``os.pathsep`` (``UVICORN_RELOAD_DIRS=src:lib``)
    and others on whitespace (``UVICORN_HEADERS="X-A:1 X-B:2"``); from asgisock's own by lines."""

    def __init__(self, names: list[str], *, setting: Setting, **attributes: Any) -> None:
        super().__init__(names, envvar=setting.env_vars, **attributes)
        self.setting = setting

    def value_from_envvar(self, ctx: click.Context) -> Any:
        found = self.setting.environ()
        if found is not None and self.setting.kind == "list" and found[0] != self.setting.env_var:
            separator = os.pathsep if self.setting.declared.path else None
            return tuple(item for item in found[1].split(separator) if item)
        return super().value_from_envvar(ctx)


def _looked_up(table: Mapping[Any, str], value: Any) -> str | None:
    """``table[value]`` for a key of the very type of ``value`` (``True`` is not ``1``), or None."""
    for key, text in table.items():
        if type(key) is type(value) and key == value:
            return text
    return None


def _shown(value: Any) -> str:
    """A value as the command line spells it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def default_of(item: dataclasses.Field[Any]) -> Any:
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return item.default


def env_var(name: str) -> str:
    """``ASGISOCK_<OPTION>`` for a setting, or for ``app``."""
    return SETTINGS[name].env_var if name in SETTINGS else ENV_PREFIX + name.upper()


def environ_settings(given: Collection[str] = ()) -> dict[str, Any]:
    """The settings set by ``ASGISOCK_*`` variables, leaving out those ``given`` explicitly.

    Each variable is parsed by the setting's own click option, so ``ASGISOCK_ACCESS_LOG=no``
    or one header per line means the same to :func:`asgisock.run` as to the command.
    """
    ctx = click.Context(click.Command("asgisock"))
    values = {}
    for item in SETTINGS.values():
        if item.name not in given and (value := item.from_environ(ctx)) is not None:
            values[item.name] = value
    return values


# -- kinds: derived from the annotation, each checked and parsed one way ----------------------


def _kind_of(hint: Any, declared: Declaration) -> KindName:
    """The kind an annotation means (``T | None`` unwrapped before), with the declaration's marks."""
    simple: dict[Any, KindName] = {bool: "bool", int: "int", float: "float"}
    if hint in simple:
        return simple[hint]
    if get_origin(hint) is list and get_args(hint) == (str,):
        return "list"
    if hint is str and declared.choices:
        return "choice"
    if hint is str:
        strings: dict[str | None, KindName] = {None: "str", "any": "path", "file": "file"}
        return strings[declared.path]
    raise TypeError(f"no kind of setting has the annotation {hint!r}")


def _without_none(hint: Any) -> tuple[Any, bool]:
    """``T | None`` as ``(T, True)``; any other annotation as ``(hint, False)``."""
    if get_origin(hint) not in (typing.Union, types.UnionType):
        return hint, False
    rest = tuple(arg for arg in get_args(hint) if arg is not type(None))
    if len(rest) != 1:
        raise TypeError(f"a setting has one type, or one type and None, not {hint!r}")
    return rest[0], len(rest) < len(get_args(hint))


def _settings() -> dict[str, Setting]:
    hints = typing.get_type_hints(Config)
    settings = {}
    for item in dataclasses.fields(Config):
        declared = item.metadata.get("setting")
        if isinstance(declared, Declaration):
            hint, optional = _without_none(hints[item.name])
            kind = _kind_of(hint, declared)
            settings[item.name] = Setting(item.name, kind, optional, declared, item)
    return settings


SETTINGS: Final[Mapping[str, Setting]] = _settings()
"""Every user setting (each field of :class:`Config` but ``app``), by field name, in order."""


def settings_table() -> str:
    """The Markdown table of every setting, as published in ``docs/reference/settings.md``."""
    rows = ["| Option | Environment variable | Default | Description |", "|---|---|---|---|"]
    for info in SETTINGS.values():
        flag = info.flag
        if info.kind == "bool":
            flag = f"{flag} / --no-{flag[2:]}"
        flag += "".join(f", {alias}" for alias in info.aliases)
        env = ", ".join(f"`{name}`" for name in info.env_vars)
        rows.append(f"| `{flag}` | {env} | `{info.default_text}` | {info.help} |")
    return "\n".join(rows) + "\n"
