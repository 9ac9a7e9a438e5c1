import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from centralino_proto.testing import ServiceHarness, service_under_test
from centralino_rating.config import Settings
from centralino_rating.main import create_app

# The tests share steps from rating_helpers.py (pytest runs with --import-mode=importlib).
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
async def harness() -> AsyncIterator[ServiceHarness]:
    """The rating app on a fresh database and a private exchange."""
    async with service_under_test(create_app, Settings, db_name="test_rating") as h:
        yield h


@pytest.fixture
async def short_calls() -> AsyncIterator[ServiceHarness]:
    """The rating app with 10-minute authorizations (so a small balance serves several calls)."""
    async with service_under_test(
        create_app, Settings, db_name="test_rating_short", max_call_seconds=600
    ) as h:
        yield h
