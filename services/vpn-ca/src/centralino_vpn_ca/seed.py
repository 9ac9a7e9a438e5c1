"""The vpn-ca service's share of the demo data (ARCHITECTURE.md); idempotent."""

from centralino_proto.demo import seed_tenant_directory
from centralino_proto.service import ServiceRuntime


async def seed(runtime: ServiceRuntime) -> None:
    """Loads the demo data this service owns."""
    async with runtime.sessionmaker() as session, session.begin():
        await seed_tenant_directory(session)
