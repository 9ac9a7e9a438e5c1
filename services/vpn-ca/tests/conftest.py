from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from centralino_proto.testing import ServiceHarness, service_under_test
from centralino_vpn_ca import pki
from centralino_vpn_ca.config import Settings
from centralino_vpn_ca.main import create_app


@pytest.fixture
async def harness() -> AsyncIterator[ServiceHarness]:
    """The vpn-ca app on a fresh database and a private exchange."""
    async with service_under_test(create_app, Settings, db_name="test_vpn_ca") as h:
        yield h


@pytest.fixture
async def rooted_harness(tmp_path: Path) -> AsyncIterator[ServiceHarness]:
    """The same, with an operator root: tenant CAs are intermediates under it."""
    key = pki.generate_key("ecdsa-p256")
    root = pki.build_root(key=key, common_name="Centralino Test Root", days=30)
    (tmp_path / "root.pem").write_text(pki.cert_to_pem(root))
    (tmp_path / "root.key").write_text(pki.key_to_pem(key))
    async with service_under_test(
        create_app,
        Settings,
        db_name="test_vpn_ca_rooted",
        root_ca_cert_file=str(tmp_path / "root.pem"),
        root_ca_key_file=str(tmp_path / "root.key"),
    ) as h:
        yield h
