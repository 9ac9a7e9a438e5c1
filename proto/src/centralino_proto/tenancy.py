"""The tenant directory each service keeps from tenant.* events, and tenant scoping."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from .auth import Claims
from .bus import Consumer
from .db import tenant_directory
from .events import Envelope, TenantCreated, TenantDeleted, TenantUpdated
from .web import ClaimsDep, Problem, SessionDep


@dataclass(frozen=True)
class Tenant:
    """A tenant as every service knows it."""

    tenant_id: uuid.UUID
    slug: str
    name: str
    kind: str
    reseller_id: uuid.UUID | None
    sip_realm: str
    timezone: str
    active: bool


async def upsert_tenant(session: AsyncSession, event: TenantCreated | TenantUpdated) -> None:
    """Records a tenant (or its new details) in the directory."""
    values: dict[str, Any] = {
        "tenant_id": event.tenant_id,
        "slug": event.slug,
        "name": event.name,
        "kind": str(event.kind),
        "reseller_id": event.reseller_id,
        "sip_realm": event.sip_realm,
        "timezone": event.timezone,
        "active": getattr(event, "active", True),
        "updated_at": func.now(),
    }
    statement = pg_insert(tenant_directory).values(**values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[tenant_directory.c.tenant_id],
            set_={k: statement.excluded[k] for k in values if k != "tenant_id"},
        )
    )


async def _on_upsert(session: AsyncSession, envelope: Envelope[Any]) -> None:
    await upsert_tenant(session, envelope.data)


async def _on_deleted(session: AsyncSession, envelope: Envelope[Any]) -> None:
    # Kept, inactive: the service's history still refers to it.
    await session.execute(
        tenant_directory.update()
        .where(tenant_directory.c.tenant_id == envelope.data.tenant_id)
        .values(active=False, updated_at=func.now())
    )


def subscribe_tenant_directory(consumer: Consumer) -> None:
    """Keeps this service's tenant directory in step with the gateway."""
    consumer.subscribe([TenantCreated, TenantUpdated], _on_upsert, name="tenant.directory")
    consumer.subscribe(TenantDeleted, _on_deleted)


async def find_tenant(session: AsyncSession, ref: str | uuid.UUID) -> Tenant | None:
    """A tenant by id or slug."""
    column = tenant_directory.c.slug
    try:
        ref = uuid.UUID(str(ref))
        column = tenant_directory.c.tenant_id
    except ValueError:
        pass
    row = (await session.execute(select(tenant_directory).where(column == ref))).first()
    return Tenant(**{k: v for k, v in row._mapping.items() if k != "updated_at"}) if row else None


async def find_tenant_by_realm(session: AsyncSession, realm: str) -> Tenant | None:
    """The tenant whose SIP realm this is."""
    row = (
        await session.execute(
            select(tenant_directory).where(tenant_directory.c.sip_realm == realm.lower())
        )
    ).first()
    return Tenant(**{k: v for k, v in row._mapping.items() if k != "updated_at"}) if row else None


async def authorize_tenant(session: AsyncSession, claims: Claims, ref: str | uuid.UUID) -> Tenant:
    """The tenant the bearer asked for, if the bearer may act on it; 404 otherwise.

    404 rather than 403, so a token cannot probe which tenants exist.
    """
    tenant = await find_tenant(session, ref)
    if tenant is None or not claims.may_access(
        tenant_id=tenant.tenant_id, tenant_reseller_id=tenant.reseller_id
    ):
        raise Problem(404, "Tenant not found", f"no tenant {ref!s} visible to this token")
    return tenant


async def current_tenant(tenant: str, claims: ClaimsDep, session: SessionDep) -> Tenant:
    """Dependency for routes under /v1/tenants/{tenant}/...: the authorized tenant."""
    return await authorize_tenant(session, claims, tenant)


TenantDep = Annotated[Tenant, Depends(current_tenant)]
