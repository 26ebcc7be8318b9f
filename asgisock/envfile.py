"""``--env-file``: ``KEY=VALUE`` lines into ``os.environ`` before the app is imported."""

from __future__ import annotations

import os
import re
from typing import Final

from asgisock.exceptions import ConfigError

_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""POSIX environment variable names: letters, digits and underscores, not starting with a digit."""


def parse_env_file(text: str) -> dict[str, str]:
    """The subset of the dotenv format that is unambiguous: comments, ``export``, quotes."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _NAME.fullmatch(key):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def load_env_file(path: str) -> None:
    """Set variables not already in the environment (the real environment wins)."""
    try:
        with open(path, encoding="utf-8") as file:
            values = parse_env_file(file.read())
    except OSError as exc:
        raise ConfigError("--env-file", f"cannot read {path}: {exc.strerror}") from None
    for key, value in values.items():
        os.environ.setdefault(key, value)
