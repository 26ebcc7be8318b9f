"""Build the optional C speedups of asgisock.

Everything about the package lives in pyproject.toml; this file only adds the
C extensions: ``asgisock.ws._speedups`` (WebSocket masking),
``asgisock.http11._head`` (the encoding of each response head) and
``asgisock._metrics`` (the per-request counting of ``--metrics-port``). All are
optional and have pure-Python fallbacks, so a machine without a C compiler still
installs asgisock, just with slower masking of large messages, dearer response
heads and dearer metrics.
"""

from __future__ import annotations

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError, ExecError, LinkError, PlatformError

BUILD_ERRORS = (CCompilerError, CompileError, ExecError, LinkError, PlatformError, OSError)


def warn(exc: BaseException) -> None:
    print(
        f"WARNING: a C extension of asgisock could not be built ({exc}); "
        "asgisock falls back to its pure-Python code for it.",
        file=sys.stderr,
    )


class OptionalBuildExt(build_ext):
    """build_ext that turns a failed compilation into a warning."""

    def run(self) -> None:
        try:
            super().run()
        except BUILD_ERRORS as exc:
            warn(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except BUILD_ERRORS as exc:
            warn(exc)


setup(
    ext_modules=[
        Extension(
            "asgisock.ws._speedups",
            sources=["asgisock/ws/_speedups.c"],
            optional=True,
        ),
        Extension(
            "asgisock.http11._head",
            sources=["asgisock/http11/_head.c"],
            optional=True,
        ),
        Extension(
            "asgisock._metrics",
            sources=["asgisock/_metrics.c"],
            optional=True,
        ),
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
