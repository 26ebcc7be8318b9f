from __future__ import annotations

import os

import pytest
from hypothesis import settings

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
