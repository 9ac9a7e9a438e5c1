"""The gateway service's app factory."""

from pathlib import Path

from centralino_proto.auth import JWKSVerifier
from centralino_proto.service import create_service_app
from fastapi import FastAPI

from .api import router
from .config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(
    settings: Settings | None = None, *, verifier: JWKSVerifier | None = None
) -> FastAPI:
    """Builds the gateway app."""
    return create_service_app(
        settings=settings or Settings(),
        migrations_dir=MIGRATIONS,
        routers=[router],
        description="Public API: operator, reseller, tenant and user accounts, API keys, JWT signing keys (JWKS), webhook subscriptions and their delivery log; proxies to the owning services.",
        verifier=verifier,
    )
