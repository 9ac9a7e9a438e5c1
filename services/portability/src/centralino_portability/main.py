"""The portability service's app factory."""

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
    """Builds the portability app."""
    return create_service_app(
        settings=settings or Settings(),
        migrations_dir=MIGRATIONS,
        routers=[router],
        description="Number port-in requests under the Italian migration rules, their timeline, attachments and consent documents, donor-operator adapters, the business calendar.",
        verifier=verifier,
    )
