"""The ``asgisock`` command, generated from the settings in :mod:`asgisock.config`."""

from __future__ import annotations

import dataclasses
import platform
import sys
from typing import Any

import click

from asgisock import __version__
from asgisock.config import Setting, default_of, env_var, settings_fields
from asgisock.exceptions import ConfigError

_TYPES: dict[str, Any] = {
    "str": click.STRING,
    "int": click.INT,
    "float": click.FLOAT,
    "path": click.STRING,
    "file": click.STRING,
    "list": click.STRING,
}


class _LineList(click.ParamType):  # type: ignore[type-arg]
    """A repeatable option whose environment variable holds one value per line."""

    name = "text"
    envvar_list_splitter = "\n"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return value


_LINES = _LineList()


def _option(field: dataclasses.Field[Any]) -> click.Option:
    info: Setting = field.metadata["setting"]
    default = default_of(field)
    flag = info.flag(field.name)
    common: dict[str, Any] = {"help": info.help, "envvar": env_var(field.name), "show_default": True}
    if info.kind == "bool":
        return click.Option([f"{flag}/--no-{flag[2:]}", field.name], default=default, **common)
    if info.kind == "choice":
        return click.Option([flag, field.name], type=click.Choice(info.choices), default=default, **common)
    if info.kind == "list":
        return click.Option([flag, field.name], type=_LINES, multiple=True, metavar=info.metavar, **common)
    return click.Option([flag, field.name], type=_TYPES[info.kind], default=default,
                        metavar=info.metavar, **common)


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


def _serve(app: str, **settings: Any) -> None:
    from asgisock.server import run

    settings["headers"] = list(settings["headers"])
    run(app, **settings)


def build_command() -> click.Command:
    params: list[click.Parameter] = [click.Argument(["app"], envvar="ASGISOCK_APP")]
    params.extend(_option(field) for field in settings_fields())
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
