from typing import ClassVar

import pytest
from pydantic import SecretStr, ValidationError

from centralino_proto.settings import ServiceSettings


class SomeSettings(ServiceSettings):
    service_name: ClassVar[str] = "vpn-ca"
    key_encryption_key: SecretStr = SecretStr("changeme")


def test_development_accepts_placeholders_and_derives_the_database() -> None:
    settings = SomeSettings()
    assert settings.database_url == "postgresql+asyncpg://postgres@127.0.0.1:5432/centralino_vpn_ca"
    assert settings.bus_queue_prefix == "vpn-ca"


@pytest.mark.parametrize("field", ["key_encryption_key", "service_client_secret"])
def test_production_refuses_placeholder_secrets(field: str) -> None:
    real = {"key_encryption_key": "k" * 32, "service_client_secret": "s" * 32}
    with pytest.raises(ValidationError, match=field.upper()):
        SomeSettings(environment="production", **{**real, field: "changeme"})
    assert SomeSettings(environment="production", **real).environment == "production"


def test_plain_postgres_urls_get_the_asyncpg_driver() -> None:
    assert (
        SomeSettings(database_url="postgres://u@h/db").database_url == "postgresql+asyncpg://u@h/db"
    )
