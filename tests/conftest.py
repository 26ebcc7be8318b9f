from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest) -> str:
    """Every transport test runs on both event loops."""
    name: str = request.param
    return name
