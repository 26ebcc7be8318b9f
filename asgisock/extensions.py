"""Whether the compiled extensions run, decided once when ``asgisock`` is imported.

``ASGISOCK_NO_EXTENSIONS=1`` (any value but empty or ``0``) makes the WebSocket codec use its
pure-Python masking instead of ``asgisock.ws._speedups``, the response writer its pure-Python
head encoding instead of ``asgisock.http11._head``, and ``--metrics-port`` its pure-Python
counting instead of ``asgisock._metrics``, so tests and benchmarks can run both.
The variable is read here rather than in ``asgisock.ws``, which stays free of the
environment (a sans-I/O core takes its choices from its caller); the package's ``__init__``
imports this module first, so the choice is made before any code can unmask a frame.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final, Literal

from asgisock import metrics
from asgisock.http11 import writer
from asgisock.implementations import Implementation
from asgisock.ws import mask

__all__ = ["ENV_VAR", "extensions_disabled", "select_from_environment"]

ENV_VAR: Final = "ASGISOCK_NO_EXTENSIONS"


def extensions_disabled(environ: Mapping[str, str]) -> bool:
    """True if ``environ`` asks for the pure-Python fallbacks."""
    return environ.get(ENV_VAR, "") not in ("", "0")


def select_from_environment(environ: Mapping[str, str] = os.environ) -> Implementation:
    """Pick the masking, head encoding and counting implementations ``environ`` asks for;
    return the masking's name."""
    choice: Literal["python", "auto"] = "python" if extensions_disabled(environ) else "auto"
    metrics.select(choice)
    writer.select(choice)
    return mask.select(choice)


select_from_environment()
