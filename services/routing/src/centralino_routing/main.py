"""The routing service's app factory."""

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
    """Builds the routing app."""
    return create_service_app(
        settings=settings or Settings(),
        migrations_dir=MIGRATIONS,
        routers=[router],
        description="Each tenant's dial plan: extensions, stations and their permissions, numbers (DIDs), forwarding, day/night schedules, IVR menus, inter-company links, the on-net index; answers POST /v1/route.",
        verifier=verifier,
    )
