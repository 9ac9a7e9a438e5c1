"""Typed settings every service extends."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .auth import ServiceToken

# Values that mark a secret nobody chose; refused outside development and tests.
PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "changethis", "secret", "dev", "development"}
)


class ServiceSettings(BaseSettings):
    """Settings shared by all services; each service subclasses it and names itself."""

    model_config = SettingsConfigDict(extra="ignore", env_nested_delimiter="__")

    service_name: ClassVar[str] = "service"
    http_port: ClassVar[int] = 8000

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = ""
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    bus_exchange: str = "centralino.events"
    # Queues are named "<prefix>.<event type>"; tests set a unique prefix.
    bus_queue_prefix: str = ""
    bus_prefetch: int = 64
    bus_max_attempts: int = 5
    bus_retry_delay_ms: int = 2000
    # Where the outbox relay runs: in the service's event loop, or in a child process
    # (for a service whose loop is its product, the registrar's SIP edge).
    outbox_relay: Literal["inline", "process"] = "inline"
    jwks_url: str = "http://127.0.0.1:8000/.well-known/jwks.json"
    jwt_audience: str = "centralino"
    jwt_issuer: str = "centralino-gateway"
    # Where services ask the gateway for their own token (client credentials).
    gateway_url: str = "http://127.0.0.1:8000"
    service_client_secret: SecretStr = SecretStr("dev-service-secret")
    migrate_on_start: bool = True
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _defaults_and_secrets(self) -> ServiceSettings:
        if not self.database_url:
            db = "centralino_" + self.service_name.replace("-", "_")
            self.database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{db}"
        self.database_url = asyncpg_url(self.database_url)
        if not self.bus_queue_prefix:
            self.bus_queue_prefix = self.service_name
        if self.environment == "production":
            for name, value in self:
                if isinstance(value, SecretStr) and (
                    value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS
                ):
                    raise ValueError(f"{name.upper()} must be set to a real secret in production")
        return self

    def service_token(self) -> ServiceToken:
        """This service's token source for calling another service's per-call API."""
        return ServiceToken(
            token_url=f"{self.gateway_url}/v1/auth/token",
            client_id=self.service_name,
            client_secret=self.service_client_secret.get_secret_value(),
        )

    def override(self, **changes: Any) -> ServiceSettings:
        """A copy with some fields changed (validated again)."""
        return type(self)(**{**self.model_dump(), **changes})


def asyncpg_url(url: str) -> str:
    """Normalises a PostgreSQL URL to SQLAlchemy's asyncpg driver."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def libpq_url(url: str) -> str:
    """The same URL as plain libpq/asyncpg understands it (no driver suffix)."""
    return "postgresql://" + asyncpg_url(url)[len("postgresql+asyncpg://") :]
