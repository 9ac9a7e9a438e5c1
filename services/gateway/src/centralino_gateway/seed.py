"""The gateway's share of the demo data (ARCHITECTURE.md); idempotent."""

from __future__ import annotations

import time
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from centralino_proto.auth import Claims, Role
from centralino_proto.demo import RESELLER_ID, TENANTS
from centralino_proto.events import TenantKind
from centralino_proto.service import ServiceRuntime

from . import accounts
from .config import Settings
from .models import Reseller, Tenant, TenantCreate, User
from .security import hash_password

OPERATOR = ("admin@centralino.test", "admin")
RESELLER = ("reseller@centralino.test", "reseller")


async def _login(
    session: AsyncSession,
    email: str,
    password: str,
    role: Role,
    reseller_id: uuid.UUID | None = None,
) -> None:
    if await session.scalar(select(col(User.id)).where(col(User.email) == email)) is None:
        session.add(
            User(
                email=email,
                name=email.split("@")[0].title(),
                password_hash=hash_password(password),
                role=role.value,
                reseller_id=reseller_id,
            )
        )
        await session.flush()


async def seed(runtime: ServiceRuntime) -> None:
    """The operator, the demo reseller and its three tenants (tenant.created on first creation)."""
    settings = runtime.settings
    realm_domain = (
        settings.sip_realm_domain if isinstance(settings, Settings) else "centralino.test"
    )
    operator = Claims(sub="seed", role=Role.operator, exp=int(time.time()) + 60)
    async with runtime.sessionmaker() as session, session.begin():
        await _login(session, *OPERATOR, Role.operator)
        if await session.get(Reseller, RESELLER_ID) is None:
            session.add(Reseller(id=RESELLER_ID, name="Demo Reseller"))
            await session.flush()
        await _login(session, *RESELLER, Role.reseller, reseller_id=RESELLER_ID)
        for demo in TENANTS:
            if await session.get(Tenant, demo.tenant_id) is not None:
                continue
            await accounts.create_tenant(
                session=session,
                outbox=runtime.outbox,
                claims=operator,
                data=TenantCreate(
                    slug=demo.slug,
                    name=demo.name,
                    kind=TenantKind(demo.kind),
                    reseller_id=RESELLER_ID,
                    sip_realm=demo.sip_realm,
                ),
                realm_domain=realm_domain,
                tenant_id=demo.tenant_id,
            )
