"""The choice between a compiled routine and its pure-Python twin, made the same way for each.

asgisock's C extensions are optional: each routine they hold has a pure-Python twin that
gives the same results, and ``asgisock.extensions`` picks one of the two for each, once, at
import. This module only decides; it imports nothing of asgisock's and does no I/O, so the
sans-I/O cores can use it.
"""

from __future__ import annotations

from typing import Literal, TypeVar

Implementation = Literal["c", "python"]
T = TypeVar("T")


def choose(wanted: Implementation | Literal["auto"], compiled: T | None, python: T,
           extension: str) -> tuple[T, Implementation]:
    """The implementation ``wanted`` names, and its name: "auto" is the compiled one if its
    ``extension`` is built (``compiled`` is not None), else the pure-Python one; "c" where it
    is not built raises ImportError."""
    if wanted == "python" or (wanted == "auto" and compiled is None):
        return python, "python"
    if compiled is None:
        raise ImportError(f"{extension} is not built")
    return compiled, "c"
