"""The registrar service's share of the demo data (ARCHITECTURE.md); idempotent."""

from sqlalchemy import select
from sqlmodel import col

from centralino_proto.demo import (
    BELLAVISTA,
    ROSSI_MILANO,
    ROSSI_ROMA,
    demo_id,
    seed_tenant_directory,
)
from centralino_proto.service import ServiceRuntime

from .devices import create_device
from .models import Device, DeviceCreate

# Every demo extension has one device: username = extension, password secret<ext>.
DEMO_EXTENSIONS = {
    BELLAVISTA: [str(n) for n in range(100, 111)],
    ROSSI_ROMA: ["400", "401", "402", "403", "404", "409", "410"],
    ROSSI_MILANO: ["407", "408"],
}


async def seed(runtime: ServiceRuntime) -> None:
    """Loads the demo data this service owns."""
    async with runtime.sessionmaker() as session, session.begin():
        await seed_tenant_directory(session)
        for tenant, extensions in DEMO_EXTENSIONS.items():
            for ext in extensions:
                device_id = demo_id(f"device:{tenant.slug}:{ext}")
                if (
                    await session.execute(select(col(Device.id)).where(col(Device.id) == device_id))
                ).first():
                    continue
                await create_device(
                    session=session,
                    tenant_id=tenant.tenant_id,
                    realm=tenant.sip_realm,
                    extension=ext,
                    data=DeviceCreate(username=ext, password=f"secret{ext}"),
                    device_id=device_id,
                )
