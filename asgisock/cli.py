"""The ``asgisock`` command, generated from the settings in :mod:`asgisock.config`."""

from __future__ import annotations

import platform
import sys
from typing import Any

import click

from asgisock import __version__
from asgisock.config import SETTINGS
from asgisock.exceptions import ConfigError


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

    for item in SETTINGS.values():
        if item.kind == "list":
            settings[item.name] = list(settings[item.name])  # click gives a tuple
    run(app, **settings)  # every setting is given, so run() has no environment left to read


def build_command() -> click.Command:
    params: list[click.Parameter] = [click.Argument(["app"], envvar="ASGISOCK_APP")]
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
