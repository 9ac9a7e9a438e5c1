"""The vpn-ca service's app factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from centralino_proto.auth import JWKSVerifier
from centralino_proto.events import DeviceDeleted, Envelope, TenantCreated
from centralino_proto.service import ServiceRuntime, create_service_app

from . import ca as domain
from .api import router
from .config import Settings
from .models import CertificateAuthority

MIGRATIONS = Path(__file__).parent / "migrations"
CRL_REFRESH_SECONDS = 3600.0

log = logging.getLogger("centralino.vpn_ca")


def _subscriber(ctx: domain.CaContext) -> Any:
    def subscribe(runtime: ServiceRuntime) -> None:
        async def on_tenant_created(session: AsyncSession, envelope: Envelope[Any]) -> None:
            event: TenantCreated = envelope.data
            if await domain.find_ca(session=session, tenant_id=event.tenant_id):
                return
            await domain.create_ca(
                session=session,
                ctx=ctx,
                outbox=runtime.outbox,
                tenant=domain.TenantRef(
                    tenant_id=event.tenant_id,
                    slug=event.slug,
                    name=event.name,
                    sip_realm=event.sip_realm,
                ),
            )

        async def on_device_deleted(session: AsyncSession, envelope: Envelope[Any]) -> None:
            event: DeviceDeleted = envelope.data
            revoked = await domain.revoke_device(
                session=session,
                ctx=ctx,
                outbox=runtime.outbox,
                tenant_id=event.tenant_id,
                device_id=event.device_id,
            )
            if revoked:
                log.info(
                    "device %s deleted: revoked %d certificate(s)", event.device_id, len(revoked)
                )

        runtime.consumer.subscribe(TenantCreated, on_tenant_created, name="tenant.created.ca")
        runtime.consumer.subscribe(DeviceDeleted, on_device_deleted)

    return subscribe


async def refresh_crls(runtime: ServiceRuntime, ctx: domain.CaContext) -> int:
    """Re-signs every CRL past half its lifetime; returns how many CAs were looked at."""
    async with runtime.sessionmaker() as session:
        tenants = list((await session.execute(select(CertificateAuthority.tenant_id))).scalars())
    for tenant_id in tenants:
        async with runtime.sessionmaker() as session, session.begin():
            await domain.fresh_crl(session=session, ctx=ctx, tenant_id=tenant_id)
    return len(tenants)


def create_app(
    settings: Settings | None = None, *, verifier: JWKSVerifier | None = None
) -> FastAPI:
    """Builds the vpn-ca app."""
    settings = settings or Settings()
    ctx = domain.load_context(settings)
    tasks: list[asyncio.Task[None]] = []

    async def keep_crls_fresh(runtime: ServiceRuntime) -> None:
        # An expired CRL makes OpenVPN refuse every client, so CRLs are re-signed ahead of time.
        while True:
            try:
                await refresh_crls(runtime, ctx)
            except Exception:
                log.exception("CRL refresh failed; retrying later")
            await asyncio.sleep(CRL_REFRESH_SECONDS)

    async def on_start(runtime: ServiceRuntime) -> None:
        if settings.ca_kek_previous is not None:
            async with runtime.sessionmaker() as session, session.begin():
                changed = await domain.reseal_all(session=session, ctx=ctx)
            log.info("KEK rotation: re-sealed %d key(s) under the current KEK", changed)
        tasks.append(asyncio.create_task(keep_crls_fresh(runtime), name="crl-refresh"))

    async def on_stop(runtime: ServiceRuntime) -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        tasks.clear()

    app = create_service_app(
        settings=settings,
        migrations_dir=MIGRATIONS,
        routers=[router],
        description="A certificate authority per tenant, device certificates, CRLs, OpenVPN server and client profiles, phone-model provisioning bundles.",
        subscribe=_subscriber(ctx),
        on_start=on_start,
        on_stop=on_stop,
        verifier=verifier,
    )
    app.state.runtime.extras["vpn_ca"] = ctx
    return app
