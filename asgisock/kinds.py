"""The kinds of setting: how a value of each is checked in Python and parsed from text.

A setting's kind follows from its annotation (``asgisock.config`` derives it); everything about
checking and parsing that kind lives here, once, for the command line, the environment, the
configuration file and ``Config(...)`` alike.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

import click

from asgisock.exceptions import ConfigError

KindName = Literal["str", "int", "float", "bool", "choice", "path", "file", "list"]
"""How a setting is checked and parsed; derived from its annotation by ``config._kind_of``."""


class Described(Protocol):
    """What checking and parsing need to know of a setting (``config.Setting`` is one)."""

    @property
    def kind(self) -> KindName: ...
    @property
    def flag(self) -> str: ...
    @property
    def choices(self) -> tuple[str, ...]: ...
    @property
    def minimum(self) -> float | None: ...
    @property
    def maximum(self) -> float | None: ...
    @property
    def octal(self) -> bool: ...
    @property
    def spellings(self) -> tuple[str, ...]: ...


def _check_str(info: Described, value: Any) -> None:
    if not isinstance(value, str):
        raise ConfigError(info.flag, f"expected a string, got {value!r}")


def _check_number(info: Described, value: Any) -> None:
    wanted = int if info.kind == "int" else (int, float)
    if isinstance(value, bool) or not isinstance(value, wanted) or not math.isfinite(value):
        raise ConfigError(info.flag, f"expected {'an integer' if info.kind == 'int' else 'a number'}, "
                                     f"got {value!r}")
    if info.minimum is not None and value < info.minimum:
        raise ConfigError(info.flag, f"{value!r} is smaller than {info.minimum:g}")
    if info.maximum is not None and value > info.maximum:
        raise ConfigError(info.flag, f"{value!r} is larger than {info.maximum:g}")


def _check_bool(info: Described, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(info.flag, f"expected True or False, got {value!r}")


def _check_choice(info: Described, value: Any) -> None:
    if value not in info.choices:
        raise ConfigError(info.flag, f"{value!r} is not one of {', '.join(info.choices)}")


def _check_path(info: Described, value: Any) -> None:
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(info.flag, f"expected a path, got {value!r}")


def _check_file(info: Described, value: Any) -> None:
    _check_path(info, value)
    if not os.path.isfile(value):
        raise ConfigError(info.flag, f"file {os.fspath(value)!r} does not exist")


def _check_list(info: Described, value: Any) -> None:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(info.flag, f"expected a list of strings, got {value!r}")


class _OctalMode(click.ParamType):  # type: ignore[type-arg]
    """A file mode in octal, as chmod takes it: ``660``, ``0660`` or ``0o660``."""

    name = "octal"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return value  # from TOML, which writes octal as 0o660
        try:
            return int(str(value), 8)
        except ValueError:
            self.fail(f"{value!r} is not an octal mode such as 660", param, ctx)


class _LineList(click.ParamType):  # type: ignore[type-arg]
    """A repeatable option whose environment variable holds one value per line."""

    name = "text"
    envvar_list_splitter = "\n"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return value


@dataclass(frozen=True)
class Kind:
    """How one kind of setting is checked as a Python value and parsed from text."""

    check: Callable[[Described, Any], None]
    param_type: Callable[[Described], click.ParamType[Any]]
    """The click type that parses the command line and the environment (not used for bool)."""


KINDS: Final[Mapping[KindName, Kind]] = {
    "str": Kind(_check_str, lambda info: click.STRING),
    "int": Kind(_check_number, lambda info: _OctalMode() if info.octal else click.INT),
    "float": Kind(_check_number, lambda info: click.FLOAT),
    "bool": Kind(_check_bool, lambda info: click.BOOL),
    "choice": Kind(_check_choice, lambda info: click.Choice(info.spellings)),
    "path": Kind(_check_path, lambda info: click.STRING),
    "file": Kind(_check_file, lambda info: click.STRING),
    "list": Kind(_check_list, lambda info: _LineList()),
}
