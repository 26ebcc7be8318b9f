from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.support import LogWatch

# No per-example deadline: a busy machine makes timing flaky, and speed is measured in bench/.
# In CI the examples are derived from the test, not random, so a run cannot turn red by chance;
# locally each run explores new ones.
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest) -> str:
    """Every transport test runs on both event loops."""
    name: str = request.param
    return name


@pytest.fixture
def server_log() -> Iterator[LogWatch]:
    """Every record of the asgisock.error logger, at every level, while the test runs."""
    watch = LogWatch()
    logger = logging.getLogger("asgisock.error")
    level = logger.level
    logger.addHandler(watch)
    logger.setLevel(logging.DEBUG)
    yield watch
    logger.removeHandler(watch)
    logger.setLevel(level)
