"""The demo tenants of ARCHITECTURE.md, with ids every service's seed agrees on."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from .events import TenantCreated, TenantKind
from .tenancy import upsert_tenant

DEMO_NAMESPACE = uuid.UUID("6f1c2a4e-8d3b-4c59-9a77-0e5b1d2c3f40")


def demo_id(name: str) -> uuid.UUID:
    """A stable id for a demo object, the same in every service."""
    return uuid.uuid5(DEMO_NAMESPACE, name)


@dataclass(frozen=True)
class DemoTenant:
    slug: str
    name: str
    kind: str

    @property
    def tenant_id(self) -> uuid.UUID:
        return demo_id(f"tenant:{self.slug}")

    @property
    def sip_realm(self) -> str:
        return f"{self.slug}.centralino.test"


RESELLER_ID = demo_id("reseller:reseller@centralino.test")

BELLAVISTA = DemoTenant("bellavista", "Hotel Bellavista", "hotel")
ROSSI_ROMA = DemoTenant("rossi-roma", "Rossi S.r.l. - Roma", "company")
ROSSI_MILANO = DemoTenant("rossi-milano", "Rossi S.r.l. - Milano", "company")
TENANTS = (BELLAVISTA, ROSSI_ROMA, ROSSI_MILANO)


def tenant_created(tenant: DemoTenant) -> TenantCreated:
    """The tenant.created event the gateway publishes for a demo tenant."""
    return TenantCreated(
        tenant_id=tenant.tenant_id,
        slug=tenant.slug,
        name=tenant.name,
        kind=TenantKind(tenant.kind),
        reseller_id=RESELLER_ID,
        sip_realm=tenant.sip_realm,
    )


async def seed_tenant_directory(session: AsyncSession) -> None:
    """Puts the demo tenants in a service's directory without waiting for the gateway."""
    for tenant in TENANTS:
        await upsert_tenant(session, tenant_created(tenant))
