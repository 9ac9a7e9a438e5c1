"""The vpn-ca service's share of the demo data (ARCHITECTURE.md); idempotent."""

from centralino_proto.demo import TENANTS, seed_tenant_directory
from centralino_proto.service import ServiceRuntime

from . import ca as domain
from .config import Settings


async def seed(runtime: ServiceRuntime) -> None:
    """Loads the demo data this service owns: the tenant directory and a VPN CA per demo tenant."""
    settings = runtime.settings
    assert isinstance(settings, Settings)
    ctx = domain.load_context(settings)
    async with runtime.sessionmaker() as session, session.begin():
        await seed_tenant_directory(session)
    for tenant in TENANTS:
        async with runtime.sessionmaker() as session, session.begin():
            if await domain.find_ca(session=session, tenant_id=tenant.tenant_id):
                continue
            await domain.create_ca(
                session=session,
                ctx=ctx,
                outbox=runtime.outbox,
                tenant=domain.TenantRef(
                    tenant_id=tenant.tenant_id,
                    slug=tenant.slug,
                    name=tenant.name,
                    sip_realm=tenant.sip_realm,
                ),
            )
