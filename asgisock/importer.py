"""Turn ``"module:attribute"`` into the ASGI app object."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

from asgisock.exceptions import AppImportError


def import_from_string(import_str: str) -> Any:
    """Import ``module.sub:attr.subattr``; raise :class:`AppImportError` with a one-line reason."""
    module_str, sep, attrs_str = import_str.partition(":")
    if not sep or not module_str or not attrs_str:
        raise AppImportError(f'Import string "{import_str}" must be in format "<module>:<attribute>".')
    try:
        module = importlib.import_module(module_str)
    except ModuleNotFoundError as exc:
        if exc.name != module_str and not module_str.startswith(f"{exc.name}."):
            raise  # a module that the app imports is missing: the traceback helps
        raise AppImportError(f'Could not import module "{module_str}".') from None
    instance: Any = module
    for attr in attrs_str.split("."):
        try:
            instance = getattr(instance, attr)
        except AttributeError:
            raise AppImportError(f'Attribute "{attrs_str}" not found in module "{module_str}".') from None
    return instance


def import_from_path(import_str: str, app_dir: str | os.PathLike[str]) -> Any:
    """:func:`import_from_string`, with ``app_dir`` first on ``sys.path`` (``--app-dir``)."""
    directory = os.path.abspath(os.fspath(app_dir))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    return import_from_string(import_str)


def load_app(app: Any, *, factory: bool, app_dir: str | os.PathLike[str]) -> Any:
    """Resolve the ``app`` setting into a callable, calling it first when it is a factory."""
    if isinstance(app, str):
        app = import_from_path(app, app_dir)
    if factory:
        if not callable(app):
            raise AppImportError("The app factory is not callable.")
        app = app()
    if not callable(app):
        raise AppImportError(f"The app must be callable, got {type(app).__name__}.")
    return app


def is_asgi3(app: Any) -> bool:
    """ASGI 2 apps take only ``scope`` and return a callable; ASGI 3 apps are coroutine functions."""
    if inspect.isclass(app):
        return False
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else getattr(app, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(app)
