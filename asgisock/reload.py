"""``--reload``: watch the source files and tell the supervisor when they change.

The watching is done by watchfiles (the ``reload`` extra: the Rust notify crate, inotify on
Linux, no polling) in a thread of the supervisor's; the supervisor restarts the workers, so
that a change is served by fresh processes with the new code, and an error in it leaves the
supervisor waiting for the next change.
"""

from __future__ import annotations

import fnmatch
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from asgisock.config import Config
from asgisock.exceptions import ConfigError
from asgisock.logging import error_logger

DEFAULT_INCLUDES = ("*.py",)
DEFAULT_EXCLUDES = (".*", "*.py[cod]", "*.sw?", "*~", "__pycache__")
"""Hidden files and directories (``.git``, ``.venv``), compiled Python, editors' swap and backup
files, bytecode caches."""


class ChangeFilter:
    """Which changed paths count: one matching an include glob by its name (or its path
    relative to the watched directory), with no part of that relative path matching an
    exclude glob. A glob given to one list takes a default of the other away (``--reload-
    exclude '*.py'`` stops watching Python files)."""

    def __init__(self, directories: Sequence[Path], includes: Sequence[str], excludes: Sequence[str]) -> None:
        self.directories = [directory.resolve() for directory in directories]
        self.includes = [glob for glob in (*DEFAULT_INCLUDES, *includes) if glob not in excludes]
        self.excludes = [glob for glob in (*DEFAULT_EXCLUDES, *excludes) if glob not in includes]

    def __call__(self, change: Any, path: str) -> bool:
        return self.matches(Path(path))

    def matches(self, path: Path) -> bool:
        relative = self._relative(path)
        if any(fnmatch.fnmatch(part, glob) for part in relative.parts for glob in self.excludes):
            return False
        return any(fnmatch.fnmatch(path.name, glob) or fnmatch.fnmatch(str(relative), glob)
                   for glob in self.includes)

    def _relative(self, path: Path) -> Path:
        for directory in self.directories:
            if path.is_relative_to(directory):
                return path.relative_to(directory)
        return Path(path.name)


class Watcher:
    """A thread that calls ``changed(paths)`` for each batch of changes that count.

    ``--reload-delay`` is how long a batch stays open after its last change, so that an editor
    saving several files, or a ``git checkout``, restarts the server once.
    """

    def __init__(self, config: Config, changed: Callable[[list[str]], None]) -> None:
        try:
            import watchfiles
        except ImportError:
            raise ConfigError("--reload", "needs watchfiles: pip install 'asgisock[reload]'") from None
        self._watch = watchfiles.watch
        self.directories = [Path(directory) for directory in config.reload_dirs] or [Path.cwd()]
        for directory in self.directories:
            if not directory.is_dir():
                raise ConfigError("--reload-dir", f"{os.fspath(directory)!r} is not a directory")
        self.filter = ChangeFilter(self.directories, config.reload_includes, config.reload_excludes)
        self.delay_ms = max(1, int(config.reload_delay * 1000))
        self.changed = changed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="asgisock-reload", daemon=True)

    def start(self) -> None:
        error_logger.info("Watching %s for changes to %s", ", ".join(map(os.fspath, self.directories)),
                          ", ".join(self.filter.includes))
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def _run(self) -> None:
        for changes in self._watch(*self.directories, watch_filter=self.filter, step=self.delay_ms,
                                   debounce=max(1600, self.delay_ms), stop_event=self._stop,
                                   rust_timeout=500, yield_on_timeout=True, raise_interrupt=False):
            if changes:
                self.changed(sorted({path for _, path in changes}))
