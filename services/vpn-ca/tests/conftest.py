from collections.abc import AsyncIterator

import pytest
from centralino_proto.testing import ServiceHarness, service_under_test
from centralino_vpn_ca.config import Settings
from centralino_vpn_ca.main import create_app


@pytest.fixture
async def harness() -> AsyncIterator[ServiceHarness]:
    """The vpn-ca app on a fresh database and a private exchange."""
    async with service_under_test(create_app, Settings, db_name="test_vpn_ca") as h:
        yield h
