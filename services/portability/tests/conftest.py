from collections.abc import AsyncIterator

import pytest
from centralino_portability.config import Settings
from centralino_portability.main import create_app
from centralino_proto.testing import ServiceHarness, service_under_test


@pytest.fixture
async def harness() -> AsyncIterator[ServiceHarness]:
    """The portability app on a fresh database and a private exchange."""
    async with service_under_test(create_app, Settings, db_name="test_portability") as h:
        yield h
