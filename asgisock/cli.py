"""The ``asgisock`` command, generated from the settings in :mod:`asgisock.config`."""

from __future__ import annotations

import copy
import json
import os
import platform
import sys
from collections.abc import Iterator
from typing import Any, Final

import click
from click.core import ParameterSource

from asgisock import __version__
from asgisock.config import COMPATIBILITY, SETTINGS, Config
from asgisock.configfile import find_config, load_config
from asgisock.exceptions import ConfigError

_CONFIG_FILE = "asgisock.config_file"
"""Where ``ctx.meta`` keeps the name of the settings file that was read."""
APP_ENV_VARS: Final = ("ASGISOCK_APP", "UVICORN_APP")


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
        Config(app, **settings)  # what the server would refuse is an error here too
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
            names = SETTINGS[name].env_vars if name in SETTINGS else APP_ENV_VARS
            origin = "environment " + next(var for var in names if os.environ.get(var))
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


_BOOL_WORDS: Final = {"1": True, "true": True, "t": True, "yes": True, "y": True, "on": True,
                      "0": False, "false": False, "f": False, "no": False, "n": False, "off": False}
"""What click's BOOL type reads as true and false (any case), and so what uvicorn's
``--ws-per-message-deflate false`` may say."""


class SettingsCommand(click.Command):
    """The command, with two things click does not do by itself: an on/off option also takes a
    value, as uvicorn's ``--ws-per-message-deflate`` does (``--x false``, ``--x=no``, besides
    ``--x`` and ``--no-x``); and the help lists the options in the settings' groups."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, list(self._with_bool_values(args)))

    def _with_bool_values(self, args: list[str]) -> Iterator[str]:
        """``args`` with each ``--x VALUE`` and ``--x=VALUE`` of an on/off option as ``--x`` or ``--no-x``."""
        flags = {option.opts[0]: option for option in self._options() if option.is_bool_flag}
        valued = {name for option in self._options() if not option.is_flag for name in option.opts}
        rest = iter(args)
        for arg in rest:
            name, equals, value = arg.partition("=")
            if arg == "--":
                yield arg
                yield from rest
                return
            if equals and name in flags:
                yield _flag_for(flags[name], value)
            elif arg in flags:
                following = next(rest, None)
                if following is not None and following.lower() in _BOOL_WORDS:
                    yield _flag_for(flags[arg], following)
                else:
                    yield arg
                    if following is not None:
                        yield following  # not a value: another option, or APP
            else:
                yield arg
                if arg in valued:
                    following = next(rest, None)
                    if following is not None:
                        yield following  # the option's value, whatever it looks like

    def _options(self) -> list[click.Option]:
        return [param for param in self.params if isinstance(param, click.Option)]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The general options, then each group of settings, uvicorn's compatibility last."""
        sections: dict[str, list[tuple[str, str]]] = {"Options": []}
        aliases: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            item = SETTINGS.get(param.name or "")
            if item is not None and item.aliases:
                aliases += [(f"{alias} {param.make_metavar(ctx)}", f"uvicorn's name for {item.flag}.")
                            for alias in item.aliases]
                param = copy.copy(param)
                param.opts = [item.flag]
            record = param.get_help_record(ctx)
            if record is not None:
                sections.setdefault(item.declared.group if item else "Options", []).append(record)
        sections[COMPATIBILITY] = sections.pop(COMPATIBILITY, []) + aliases
        for title, records in sections.items():
            with formatter.section(title):
                formatter.write_dl(records)


def _flag_for(option: click.Option, value: str) -> str:
    if value.lower() not in _BOOL_WORDS:
        raise click.BadParameter(f"{value!r} is not true or false", param_hint=f"'{option.opts[0]}'")
    return option.opts[0] if _BOOL_WORDS[value.lower()] else option.secondary_opts[0]


def build_command() -> click.Command:
    params: list[click.Parameter] = [
        click.Argument(["app"], envvar=list(APP_ENV_VARS)),
        click.Option(["--config"], metavar="FILE", is_eager=True, expose_value=False, callback=_read_config,
                     help="Read settings from this TOML file (default: the [tool.asgisock] table of "
                          "./pyproject.toml); the command line and the environment win over it."),
        click.Option(["--print-config"], is_flag=True,
                     help="Print the effective settings, and where each came from, and exit."),
    ]
    params.extend(item.option() for item in SETTINGS.values())
    params.append(click.Option(["--version"], is_flag=True, expose_value=False, is_eager=True,
                               callback=_print_version, help="Show the version and exit."))
    return SettingsCommand(
        "asgisock",
        params=params,
        callback=_serve,
        help="Serve the ASGI application APP, given as 'module:attribute' (e.g. main:app).\n\n"
             "Every option can also be set with an environment variable ASGISOCK_<OPTION>, "
             "e.g. ASGISOCK_PORT=9000 or ASGISOCK_ACCESS_LOG=false; uvicorn's UVICORN_* variables "
             "are read after them. An on/off option also takes a value: --ws-per-message-deflate "
             "false is --no-ws-per-message-deflate.",
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
