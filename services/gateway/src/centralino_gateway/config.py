"""The gateway service's settings (environment variables)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import SecretStr, model_validator

from centralino_proto.settings import PLACEHOLDER_SECRETS, ServiceSettings

# Marks the development key-encryption key; refused in production like any placeholder.
DEV_KEK = "dev-key-encryption-key"

# The services a client_credentials grant may name (client_id).
SERVICE_CLIENTS = frozenset({"registrar", "routing", "rating", "portability", "vpn-ca"})


class Settings(ServiceSettings):
    service_name: ClassVar[str] = "gateway"
    http_port: ClassVar[int] = 8000

    # Wraps the JWT signing keys (and webhook secrets) at rest; AES-256-GCM via HKDF.
    key_encryption_key: SecretStr = SecretStr(DEV_KEK)
    access_token_seconds: int = 900
    refresh_token_seconds: int = 30 * 24 * 3600
    service_token_seconds: int = 3600
    # A token minted for an API-key caller, to carry to the owning service.
    api_key_token_seconds: int = 120
    # A rotated-out signing key stays in the JWKS this long, so its tokens still verify.
    signing_key_grace_seconds: int = 24 * 3600

    # argon2id cost (RFC 9106 second recommended option by default).
    password_hash_time_cost: int = 3
    password_hash_memory_kib: int = 65536

    # Failed logins per username, and per client address, before 429. The address limit
    # is looser: an office NAT (or a proxy without X-Forwarded-For) is many people.
    login_max_failures: int = 5
    login_max_failures_per_client: int = 50
    login_window_seconds: int = 300

    # Tenants get the SIP realm "<slug>.<sip_realm_domain>".
    sip_realm_domain: str = "centralino.test"

    # The owners of the facade routes (docs/DEVELOPING.md).
    registrar_url: str = "http://127.0.0.1:8001"
    routing_url: str = "http://127.0.0.1:8002"
    rating_url: str = "http://127.0.0.1:8003"
    portability_url: str = "http://127.0.0.1:8004"
    vpn_ca_url: str = "http://127.0.0.1:8005"
    upstream_timeout_seconds: float = 15.0

    # Webhook delivery.
    # Hosts (names or IP literals) a webhook may point to even when private or loopback.
    # Empty means the default: localhost in development and test, none in production.
    webhook_allowed_hosts: list[str] = []
    webhook_timeout_seconds: float = 10.0
    webhook_backoff_base_seconds: float = 5.0
    webhook_backoff_max_seconds: float = 3600.0
    webhook_max_attempts: int = 12
    # A subscription whose deliveries fail this many times in a row is disabled.
    webhook_disable_after_failures: int = 50
    webhook_poll_seconds: float = 1.0
    # How long the old secret still signs after a rotation.
    webhook_secret_overlap_seconds: int = 24 * 3600
    webhook_concurrency: int = 16

    @model_validator(mode="after")
    def _gateway_secrets(self) -> Settings:
        if self.environment == "production":
            kek = self.key_encryption_key.get_secret_value().strip()
            if kek == DEV_KEK or kek.lower() in PLACEHOLDER_SECRETS or len(kek) < 32:
                raise ValueError("KEY_ENCRYPTION_KEY must be a real secret of 32+ characters")
            if self.service_client_secret.get_secret_value() == "dev-service-secret":
                raise ValueError("SERVICE_CLIENT_SECRET must be set to a real secret in production")
        return self

    def allowed_webhook_hosts(self) -> frozenset[str]:
        """Hosts exempt from the private-address rule."""
        if self.webhook_allowed_hosts:
            return frozenset(h.lower() for h in self.webhook_allowed_hosts)
        if self.environment in ("development", "test"):
            return frozenset({"127.0.0.1", "localhost", "::1"})
        return frozenset()

    def upstreams(self) -> dict[str, str]:
        """Base URL of each service the gateway proxies to."""
        return {
            "registrar": self.registrar_url.rstrip("/"),
            "routing": self.routing_url.rstrip("/"),
            "rating": self.rating_url.rstrip("/"),
            "portability": self.portability_url.rstrip("/"),
            "vpn-ca": self.vpn_ca_url.rstrip("/"),
        }
