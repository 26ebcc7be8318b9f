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
DEFAULT_FORWARDED_ALLOW_IPS = "127.0.0.1"


@dataclass(frozen=True)
class Declaration:
    """What :func:`setting` records beside the default: all that the annotation cannot say."""

    help: str
    choices: tuple[str, ...] = ()
    """The values a ``str`` setting may take. Not a ``Literal`` annotation: that would make every
    typed program passing a plain ``str`` (``Config(app, loop=name)``) fail to type-check."""
    path: Literal["any", "file"] | None = None
    """A ``str`` that names a path (``"file"``: an existing file) rather than plain text."""
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
    """A second environment variable read when ``ASGISOCK_<NAME>`` is unset (uvicorn's own name
    for it, so that a deployment moves over unchanged)."""


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


@dataclass
class Config:
    """The server's settings; ``Config(app, port=9000)`` mirrors ``asgisock app --port 9000``."""

    app: ASGIApp | str
    # -- where to listen
    host: str = setting("127.0.0.1", "Bind the socket to this host.", group="Socket")
    port: int = setting(8000, "Bind the socket to this port (0: any free port).",
                        minimum=0, maximum=65535, group="Socket")
    uds: str | None = setting(None, "Bind to this UNIX domain socket instead of TCP.",
                              path="any", group="Socket")
    fd: int | None = setting(None, "Serve on an already-bound socket with this file descriptor.",
                             minimum=0, group="Socket")
    backlog: int = setting(2048, "Maximum number of connections waiting to be accepted.",
                           minimum=1, group="Socket")
    # -- the application
    app_dir: str = setting(".", "Look for the app in this directory (added to sys.path).",
                           path="any", group="Application")
    factory: bool = setting(False, "Treat APP as a factory: call it with no arguments to get the app.",
                            group="Application")
    env_file: str | None = setting(None, "Load environment variables from this .env file.",
                                   path="file", group="Application")
    lifespan: str = setting("auto", "Run the ASGI lifespan protocol: 'auto' runs it unless the app "
                            "rejects it.", choices=("auto", "on", "off"), group="Application")
    root_path: str = setting("", "The ASGI root_path: the prefix under which the app is mounted.",
                             group="Application")
    # -- event loop and protocols
    loop: str = setting("auto", "Event loop: uvloop when installed ('auto'), or plain asyncio.",
                        choices=("auto", "asyncio", "uvloop"))
    ws: str = setting("auto", "WebSocket support: 'none' serves upgrade requests as plain HTTP.",
                      choices=("auto", "none"))
    # -- limits and timeouts
    timeout_keep_alive: float = setting(5.0, "Close idle keep-alive connections after this many seconds.",
                                        minimum=0, group="Limits")
    min_request_body_rate: float = setting(
        1024.0, "Slowest average rate, in bytes per second, at which a request body may arrive once "
        "--timeout-keep-alive seconds have passed; slower ones get 408 (0: no minimum).",
        minimum=0, group="Limits")
    timeout_graceful_shutdown: float = setting(
        25.0, "On shutdown, wait at most this many seconds for in-flight requests and open "
        "WebSockets, then cut what is left (25: within Kubernetes' default 30 s grace period).",
        minimum=0, group="Limits")
    limit_concurrency: int | None = setting(
        None, "Answer 503 once this many connections and tasks are in flight.", minimum=1, group="Limits")
    max_header_size: int = setting(65536, "Largest request head (request line and headers) in bytes; "
                                   "larger ones get 431.", minimum=1024, group="Limits")
    # -- processes
    workers: int | None = setting(
        None, "Run this many worker processes under a supervisor that binds once, replaces a worker "
        "that dies and restarts them one at a time on SIGHUP (default: one process without a "
        "supervisor, or $WEB_CONCURRENCY).", minimum=1, env_alias="WEB_CONCURRENCY", group="Processes")
    timeout_worker_healthcheck: float = setting(
        5.0, "Replace a serving worker whose event loop has not answered the supervisor's heartbeat "
        "for this many seconds (a worker still starting up is never killed for being slow).",
        minimum=0.1, requires="workers", group="Processes")
    limit_max_requests: int | None = setting(
        None, "Replace a worker, without a gap, after about this many requests.",
        minimum=1, requires="workers", group="Processes")
    limit_max_requests_jitter: int = setting(
        0, "Add a random 0 to this many requests to --limit-max-requests for each worker, so that the "
        "workers are not all replaced at once.", minimum=0, requires="limit_max_requests", group="Processes")
    limit_max_rss: int | None = setting(
        None, "Replace a worker, without a gap, once its resident memory is over this many MiB.",
        minimum=1, requires="workers", group="Processes")
    reuse_port: bool = setting(
        False, "Give each worker its own SO_REUSEPORT listening socket, so that the kernel spreads new "
        "connections evenly over the workers (TCP only).", requires="workers", group="Processes")
    # -- reload
    reload: bool = setting(
        False, "Restart the workers when a source file changes (with the 'reload' extra: "
        "pip install 'asgisock[reload]'); combines with --workers.", group="Reload")
    reload_dirs: list[str] = setting(
        [], "Watch this directory for changes (repeatable; default: the current directory).",
        flag_name="reload_dir", metavar="DIR", requires="reload", group="Reload")
    reload_includes: list[str] = setting(
        [], "Also restart on changes to files matching this glob (repeatable; '*.py' always, unless "
        "given to --reload-exclude).", flag_name="reload_include", metavar="GLOB", requires="reload",
        group="Reload")
    reload_excludes: list[str] = setting(
        [], "Ignore changes to files matching this glob (repeatable; besides '.*', '*.py[cod]', "
        "'*.sw?', '*~' and '__pycache__').", flag_name="reload_exclude", metavar="GLOB", requires="reload",
        group="Reload")
    reload_delay: float = setting(
        0.25, "Seconds to wait after a change for more changes before restarting.",
        minimum=0, requires="reload", group="Reload")
    # -- WebSocket
    ws_max_size: int = setting(16 * 2**20, "Largest incoming WebSocket message in bytes (after "
                               "decompression); larger ones close the connection with 1009.",
                               minimum=1, group="WebSocket")
    ws_max_queue: int = setting(32, "Incoming WebSocket messages buffered while the app does not "
                                "receive(); then reading pauses.", minimum=1, group="WebSocket")
    ws_ping_interval: float | None = setting(20.0, "Send a WebSocket ping this often, in seconds.",
                                             minimum=0.001, group="WebSocket")
    ws_ping_timeout: float | None = setting(20.0, "Drop the connection when a ping gets no pong "
                                            "within this many seconds.", minimum=0.001, group="WebSocket")
    ws_per_message_deflate: bool = setting(True, "Offer permessage-deflate compression (RFC 7692).",
                                           group="WebSocket")
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
                                       "it is reloaded when it changes.", path="file", group="TLS")
    ssl_keyfile: str | None = setting(None, "The private key of --ssl-certfile (PEM), when not in the same "
                                      "file.", path="file", requires="ssl_certfile", group="TLS")
    ssl_keyfile_password: str | None = setting(None, "Password of an encrypted --ssl-keyfile.", requires="ssl_keyfile", group="TLS")
    ssl_ca_certs: str | None = setting(None, "CA certificates (PEM) that client certificates must chain to.",
                                       path="file", requires="ssl_certfile", group="TLS")
    ssl_cert_reqs: int = setting(0, "Client certificates: 0 not asked for, 1 optional, 2 required "
                                 "(both verified against --ssl-ca-certs).", minimum=0, maximum=2, requires="ssl_ca_certs", group="TLS")
    ssl_ciphers: str | None = setting(None, "OpenSSL cipher list for TLS 1.2 (default: Python's secure "
                                      "defaults; TLS 1.3 suites are not affected).", requires="ssl_certfile", group="TLS")
    # -- behind a proxy
    proxy_headers: bool = setting(True, "Take the client's address and scheme from X-Forwarded-For, "
                                  "X-Forwarded-Proto, X-Forwarded-Port and RFC 7239 Forwarded, when the "
                                  "peer is in --forwarded-allow-ips.", group="Proxy")
    forwarded_allow_ips: str | None = setting(
        None, "Comma-separated IP addresses and networks of trusted proxies, '*' for all, 'unix:' for "
        "UNIX-socket peers (default 127.0.0.1, or $FORWARDED_ALLOW_IPS).",
        env_alias="FORWARDED_ALLOW_IPS", parse=_trusted_proxies, group="Proxy")
    forwarded_host: bool = setting(False, "Also take the Host the app sees from X-Forwarded-Host or "
                                   "Forwarded host= (trusted peers only).", group="Proxy")
    proxy_protocol: bool = setting(False, "Expect a PROXY protocol v1 or v2 header (HAProxy, AWS NLB) on "
                                   "every connection, from peers in --forwarded-allow-ips only; others "
                                   "are closed.", group="Proxy")
    # -- response headers
    server_header: bool = setting(True, "Add a 'Server: asgisock' header to responses.", group="Headers")
    date_header: bool = setting(True, "Add a 'Date' header to responses.", group="Headers")
    headers: list[str] = setting([], "Add a default response header (repeatable; in the environment "
                                 "variable, one header per line).",
                                 metavar="NAME:VALUE", flag_name="header", parse=_header_pairs, group="Headers")
    # -- logging
    log_level: str = setting("info", "Log level of the asgisock.error logger.", choices=LOG_LEVELS,
                             group="Logging")
    log_config: str | None = setting(None, "Logging configuration file: .json, .yaml (with PyYAML) "
                                     "or .ini.", path="file", group="Logging")
    access_log: bool = setting(True, "Log one line per request on the asgisock.access logger.",
                               group="Logging")
    access_log_format: str = setting(DEFAULT_ACCESS_LOG_FORMAT, "Access log line, with gunicorn-style "
                                     "atoms such as %(h)s %(r)s %(s)s %(L)s.", group="Logging")

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
    def flag(self) -> str:
        return "--" + (self.declared.flag_name or self.name).replace("_", "-")

    @property
    def env_var(self) -> str:
        """``ASGISOCK_<OPTION>``: the option's name (``--header`` is ``ASGISOCK_HEADER``)."""
        return ENV_PREFIX + self.flag[2:].replace("-", "_").upper()

    @property
    def default(self) -> Any:
        return default_of(self.source)

    def check(self, value: Any) -> None:
        """Raise :class:`ConfigError`, naming the option, unless ``value`` is valid."""
        if value is None:
            if not self.optional:
                raise ConfigError(self.flag, "a value is required")
            return
        KINDS[self.kind].check(self, value)
        if self.declared.parse is not None:
            try:
                self.declared.parse(value)
            except ValueError as exc:
                raise ConfigError(self.flag, str(exc)) from None

    def option(self) -> click.Option:
        """The command-line option, which also reads the environment variable."""
        envvar = [self.env_var, self.declared.env_alias] if self.declared.env_alias else self.env_var
        common: dict[str, Any] = {"help": self.help, "envvar": envvar, "show_default": True}
        names = [self.flag, self.name]
        if self.kind == "bool":
            names[0] = f"{self.flag}/--no-{self.flag[2:]}"
            return click.Option(names, default=self.default, **common)
        param_type = KINDS[self.kind].param_type(self)
        if self.kind == "list":
            return click.Option(names, type=param_type, multiple=True, metavar=self.declared.metavar, **common)
        return click.Option(names, type=param_type, default=self.default, metavar=self.declared.metavar,
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
        env = f"`{info.env_var}`" + (f", `{info.declared.env_alias}`" if info.declared.env_alias else "")
        rows.append(f"| `{flag}` | {env} | `{info.default!r}` | {info.help} |")
    return "\n".join(rows) + "\n"
