"""``--config FILE``, or the ``[tool.asgisock]`` table of ``./pyproject.toml``: settings from TOML.

The file's values take the place of the defaults, so the command line and the ``ASGISOCK_*``
variables still win over them (CLI > environment > file > defaults). Every key is checked
before the server starts: an unknown key, or a value the setting does not take, is an error
that names the file, the key and what is allowed.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from typing import Any, Final

import click

from asgisock.config import SETTINGS, Setting
from asgisock.exceptions import ConfigError

__all__ = ["PYPROJECT", "find_config", "load_config"]

PYPROJECT: Final = "pyproject.toml"
APP_KEY: Final = "app"
_TOML_TYPES: Final[dict[str, type | tuple[type, ...]]] = {
    "bool": bool, "int": int, "float": (int, float), "list": list,
    "str": str, "choice": str, "path": str, "file": str,
}
"""What each kind of setting takes from TOML, which has types of its own (a port is ``8000``)."""
_BY_FLAG: Final = {item.flag[2:].replace("-", "_"): item for item in SETTINGS.values()}
"""Settings by option name as well (``header`` for ``headers``)."""


def find_config(path: str | None) -> tuple[str, Mapping[str, Any]] | None:
    """The file to read and its settings table: ``path`` whole, or else the ``tool.asgisock``
    table of ``./pyproject.toml`` when there is one."""
    if path is not None:
        return path, _read(path)
    if not os.path.isfile(PYPROJECT):
        return None
    table = _read(PYPROJECT).get("tool", {}).get("asgisock")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{PYPROJECT} [tool.asgisock]", "must be a table of settings")
    return f"{PYPROJECT} [tool.asgisock]", table


def load_config(ctx: click.Context, where: str, table: Mapping[str, Any]) -> dict[str, Any]:
    """The table's settings by field name, each parsed and checked as its option would be."""
    values: dict[str, Any] = {}
    for key, raw in table.items():
        name = key.replace("-", "_")
        if name == APP_KEY:
            if not isinstance(raw, str):
                raise ConfigError(f"{where}: {key}", f"expected 'module:attribute', got {raw!r}")
            values[name] = raw
            continue
        item = SETTINGS.get(name) or _BY_FLAG.get(name)
        if item is None:
            raise ConfigError(f"{where}: {key}", _unknown(key))
        values[item.name] = _value(ctx, item, where, key, raw)
    return values


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, f"is not valid TOML: {exc}") from None


def _value(ctx: click.Context, item: Setting, where: str, key: str, raw: Any) -> Any:
    if item.kind == "list":
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(entry, str) for entry in raw):
            raise ConfigError(f"{where}: {key}", "expected a string or a list of strings")
    elif not isinstance(raw, _TOML_TYPES[item.kind]) or (isinstance(raw, bool) and item.kind != "bool"):
        raise ConfigError(f"{where}: {key}", f"expected {_expected(item)}, got {raw!r}")
    option = item.option()
    try:
        value = option.type_cast_value(ctx, raw)
    except click.BadParameter as exc:
        message = exc.message.rstrip(".")
        if not item.choices:  # click's message for a choice lists them already
            message += f"; expected {_expected(item)}"
        raise ConfigError(f"{where}: {key}", message) from None
    if item.kind == "list":
        value = list(value)
    try:
        item.check(value)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {key}", exc.reason) from None
    return value


def _expected(item: Setting) -> str:
    if item.choices:
        return "one of " + ", ".join(repr(choice) for choice in item.choices)
    if item.octal:
        return "an octal mode such as 0o660"
    described = {"bool": "true or false", "int": "an integer", "float": "a number", "list": "a list of strings"}
    text = described.get(item.kind, "a string")
    if item.minimum is not None and item.maximum is not None:
        return f"{text} from {item.minimum:g} to {item.maximum:g}"
    if item.minimum is not None:
        return f"{text} of at least {item.minimum:g}"
    return text


def _unknown(key: str) -> str:
    names = [APP_KEY, *SETTINGS]
    close = difflib.get_close_matches(key.replace("-", "_"), names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown setting{hint}; the settings are: {', '.join(names)}"
