"""Tests of turning "module:attribute" into the app."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asgisock.exceptions import AppImportError
from asgisock.importer import import_from_string, is_asgi3, load_app


@pytest.fixture
def package(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "imp_app.py").write_text(
        "class Holder:\n    class Inner:\n        pass\n"
        "async def app(scope, receive, send):\n    pass\n"
        "def factory():\n    return app\n"
        "not_callable = 3\n"
    )
    (tmp_path / "imp_broken.py").write_text("import imp_dependency_that_is_missing\n")
    yield tmp_path
    for name in ("imp_app", "imp_broken"):
        sys.modules.pop(name, None)
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


@pytest.mark.parametrize("text", ["imp_app", ":app", "imp_app:", ""])
def test_import_string_needs_module_and_attribute(text: str) -> None:
    with pytest.raises(AppImportError, match="format"):
        import_from_string(text)


def test_dotted_attributes(package: Path) -> None:
    app = load_app("imp_app:Holder.Inner", factory=False, app_dir=package)
    assert app.__name__ == "Inner"


def test_missing_module_and_attribute_are_one_line_errors(package: Path) -> None:
    with pytest.raises(AppImportError, match='Could not import module "imp_nowhere"'):
        load_app("imp_nowhere:app", factory=False, app_dir=package)
    with pytest.raises(AppImportError, match='Attribute "nope" not found'):
        load_app("imp_app:nope", factory=False, app_dir=package)


def test_a_missing_dependency_of_the_app_keeps_its_traceback(package: Path) -> None:
    with pytest.raises(ModuleNotFoundError, match="imp_dependency_that_is_missing"):
        load_app("imp_broken:app", factory=False, app_dir=package)


def test_factory_is_called(package: Path) -> None:
    assert load_app("imp_app:factory", factory=True, app_dir=package).__name__ == "app"


@pytest.mark.parametrize(("target", "factory", "message"), [
    ("imp_app:not_callable", False, "must be callable"),
    ("imp_app:not_callable", True, "factory is not callable"),
])
def test_not_callable(package: Path, target: str, factory: bool, message: str) -> None:
    with pytest.raises(AppImportError, match=message):
        load_app(target, factory=factory, app_dir=package)


async def _asgi3(scope: Any, receive: Any, send: Any) -> None: ...


def _asgi2(scope: Any) -> Any:
    return _asgi3


class _Asgi3Instance:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...


class _Asgi2Class:
    def __init__(self, scope: Any) -> None: ...


@pytest.mark.parametrize(("app", "asgi3"), [
    (_asgi3, True), (_Asgi3Instance(), True), (_Asgi3Instance().__call__, True),
    (_asgi2, False), (_Asgi2Class, False),
])
def test_is_asgi3(app: Any, asgi3: bool) -> None:
    assert is_asgi3(app) is asgi3
