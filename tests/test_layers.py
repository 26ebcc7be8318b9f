"""The protocol cores stay sans-I/O: nothing in them imports asyncio, sockets or selectors."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import asgisock

FORBIDDEN = {"asyncio", "socket", "selectors", "uvloop", "threading"}
PACKAGE = Path(asgisock.__file__).parent
CORES = sorted([*(PACKAGE / "http11").glob("*.py"), *(PACKAGE / "ws").glob("*.py")])


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module.split(".")[0])
    return modules


def test_the_cores_were_found() -> None:
    assert len(CORES) >= 8


@pytest.mark.parametrize("path", CORES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_no_io_imports(path: Path) -> None:
    assert not imported_modules(path) & FORBIDDEN
