"""The routing service's app factory."""

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from centralino_proto.auth import JWKSVerifier
from centralino_proto.db import tenant_directory
from centralino_proto.events import (
    Envelope,
    PortCompleted,
    TenantCreated,
    TenantDeleted,
    TenantUpdated,
)
from centralino_proto.service import ServiceRuntime, create_service_app
from centralino_proto.tenancy import upsert_tenant

from . import store
from .api import link_router, router, tenant_router
from .config import Settings
from .replica import PlanKeeper

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(
    settings: Settings | None = None, *, verifier: JWKSVerifier | None = None
) -> FastAPI:
    """Builds the routing app."""
    settings = settings or Settings()

    def subscribe(runtime: ServiceRuntime) -> None:
        async def on_port_completed(session: AsyncSession, envelope: Envelope[Any]) -> None:
            event: PortCompleted = envelope.data
            await store.assign_ported(
                session, outbox=runtime.outbox, tenant_id=event.tenant_id, numbers=event.numbers
            )

        async def on_tenant(session: AsyncSession, envelope: Envelope[Any]) -> None:
            # The directory has its own queue; writing here too keeps the order
            # (directory row, then plan version) inside this one transaction.
            event = envelope.data
            if isinstance(event, TenantDeleted):
                await session.execute(
                    update(tenant_directory)
                    .where(tenant_directory.c.tenant_id == event.tenant_id)
                    .values(active=False)
                )
            else:
                await upsert_tenant(session, event)
            await store.touch(session, outbox=runtime.outbox, tenant_ids=[event.tenant_id])

        runtime.consumer.subscribe(PortCompleted, on_port_completed)
        runtime.consumer.subscribe(
            [TenantCreated, TenantUpdated, TenantDeleted], on_tenant, name="tenant.plan"
        )

    async def on_start(runtime: ServiceRuntime) -> None:
        keeper = PlanKeeper(runtime, sweep_seconds=settings.dialplan_sweep_seconds)
        runtime.extras["plans"] = keeper
        await keeper.start()

    async def on_stop(runtime: ServiceRuntime) -> None:
        keeper = runtime.extras.get("plans")
        if isinstance(keeper, PlanKeeper):
            await keeper.stop()

    async def dialplan_ready(runtime: ServiceRuntime) -> str | None:
        keeper = runtime.extras.get("plans")
        if not isinstance(keeper, PlanKeeper) or not keeper.plans.loaded:
            return "dial plans not compiled yet"
        return None

    return create_service_app(
        settings=settings,
        migrations_dir=MIGRATIONS,
        routers=[router, tenant_router, link_router],
        description="Each tenant's dial plan: extensions, stations and their permissions, numbers (DIDs), forwarding, day/night schedules, IVR menus, inter-company links, the on-net index; answers POST /v1/route.",
        subscribe=subscribe,
        on_start=on_start,
        on_stop=on_stop,
        verifier=verifier,
        readiness={"dialplan": dialplan_ready},
    )
