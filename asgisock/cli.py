"""The ``asgisock`` command, generated from the settings in :mod:`asgisock.config`."""

from __future__ import annotations

import json
import platform
import sys
from typing import Any

import click
from click.core import ParameterSource

from asgisock import __version__
from asgisock.config import SETTINGS
from asgisock.configfile import find_config, load_config
from asgisock.exceptions import ConfigError

_CONFIG_FILE = "asgisock.config_file"
"""Where ``ctx.meta`` keeps the name of the settings file that was read."""


def version_text() -> str:
    import httptools

    parts = [f"httptools {httptools.__version__}"]
    try:
        import uvloop
    except ImportError:
        parts.append("no uvloop")
    else:
        parts.append(f"uvloop {getattr(uvloop, '__version__', '?')}")
    from asgisock.ws.mask import MASK_IMPLEMENTATION

    parts.append(f"WebSocket masking: {MASK_IMPLEMENTATION}")
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"asgisock {__version__} with {python} on {platform.system()}; {', '.join(parts)}"


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version_text())
        ctx.exit()


def _read_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--config``, else ``./pyproject.toml``: the file's settings become the defaults, below
    the command line and the environment."""
    found = find_config(value)
    if found is not None:
        where, table = found
        ctx.default_map = load_config(ctx, where, table)
        ctx.meta[_CONFIG_FILE] = where
    return value


def _serve(app: str, print_config: bool, **settings: Any) -> None:
    from asgisock.server import run

    for item in SETTINGS.values():
        if item.kind == "list":
            settings[item.name] = list(settings[item.name])  # click gives a tuple
    if print_config:
        click.echo(effective_settings(click.get_current_context(), app, settings))
        return
    run(app, **settings)  # every setting is given, so run() has no environment left to read


def effective_settings(ctx: click.Context, app: str, settings: dict[str, Any]) -> str:
    """Each setting's value, as TOML, with where it came from."""
    lines = []
    for name, value in [("app", app), *((item.name, settings[item.name]) for item in SETTINGS.values())]:
        source = ctx.get_parameter_source(name)
        if source is ParameterSource.COMMANDLINE:
            origin = "command line"
        elif source is ParameterSource.ENVIRONMENT:
            origin = "environment " + (SETTINGS[name].env_var if name in SETTINGS else "ASGISOCK_APP")
        elif source is ParameterSource.DEFAULT_MAP:
            origin = ctx.meta.get(_CONFIG_FILE, "file")
        else:
            origin = "default"
        text = f"{name} = {_toml(value)}" if value is not None else f"# {name} is not set"
        lines.append(f"{text:<48} # {origin}")
    return "\n".join(lines)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def build_command() -> click.Command:
    params: list[click.Parameter] = [
        click.Argument(["app"], envvar="ASGISOCK_APP"),
        click.Option(["--config"], metavar="FILE", is_eager=True, expose_value=False, callback=_read_config,
                     help="Read settings from this TOML file (default: the [tool.asgisock] table of "
                          "./pyproject.toml); the command line and the environment win over it."),
        click.Option(["--print-config"], is_flag=True,
                     help="Print the effective settings, and where each came from, and exit."),
    ]
    params.extend(item.option() for item in SETTINGS.values())
    params.append(click.Option(["--version"], is_flag=True, expose_value=False, is_eager=True,
                               callback=_print_version, help="Show the version and exit."))
    return click.Command(
        "asgisock",
        params=params,
        callback=_serve,
        help="Serve the ASGI application APP, given as 'module:attribute' (e.g. main:app).\n\n"
             "Every option can also be set with an environment variable ASGISOCK_<OPTION>, "
             "e.g. ASGISOCK_PORT=9000 or ASGISOCK_ACCESS_LOG=false.",
        context_settings={"max_content_width": 100},
    )


command = build_command()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``asgisock`` script; errors are one line, never a traceback."""
    try:
        command.main(args=argv, prog_name="asgisock", standalone_mode=False)
    except click.ClickException as exc:
        click.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.exit(1)
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
