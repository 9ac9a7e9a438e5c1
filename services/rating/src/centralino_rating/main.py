"""The rating service's app factory."""

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
    """Builds the rating app."""
    return create_service_app(
        settings=settings or Settings(),
        migrations_dir=MIGRATIONS,
        routers=[router],
        description="Rate decks, FLAT plans and bundles, subscriptions, the prepaid credit ledger, markups, rated CDRs and per-station spend; answers POST /v1/authorize.",
        verifier=verifier,
    )
