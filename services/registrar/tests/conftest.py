from collections.abc import AsyncIterator

import pytest
from centralino_proto.testing import ServiceHarness, service_under_test
from centralino_registrar.config import Settings
from centralino_registrar.main import create_app


@pytest.fixture
async def harness() -> AsyncIterator[ServiceHarness]:
    """The registrar app on a fresh database and a private exchange."""
    async with service_under_test(create_app, Settings, db_name="test_registrar") as h:
        yield h
