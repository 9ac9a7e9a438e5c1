"""The vpn-ca service's app factory."""

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
    """Builds the vpn-ca app."""
    return create_service_app(
        settings=settings or Settings(),
        migrations_dir=MIGRATIONS,
        routers=[router],
        description="A certificate authority per tenant, device certificates, CRLs, OpenVPN server and client profiles, phone-model provisioning bundles.",
        verifier=verifier,
    )
