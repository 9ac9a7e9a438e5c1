"""The routing service's share of the demo data (ARCHITECTURE.md); idempotent."""

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from centralino_proto.demo import (
    BELLAVISTA,
    ROSSI_MILANO,
    ROSSI_ROMA,
    DemoTenant,
    demo_id,
    seed_tenant_directory,
)
from centralino_proto.events import ExtensionKind
from centralino_proto.service import ServiceRuntime
from centralino_proto.tenancy import Tenant, find_tenant

from . import store
from .models import (
    ExtensionCreate,
    LinkGroup,
    LinkMember,
    Number,
    NumberCreate,
    Permissions,
    Target,
    TargetKind,
)

NATIONAL_ONLY = Permissions(
    national_fixed=True,
    mobile=False,
    international=False,
    premium=False,
    toll_free=False,
    shared_cost=False,
)
ROOM_ABROAD = Permissions(
    national_fixed=True,
    mobile=True,
    international=True,
    premium=False,
    toll_free=True,
    shared_cost=True,
)
OFFICE = Permissions()
RECEPTION = ROOM_ABROAD

# (tenant, number, name, kind, permissions)
EXTENSIONS: list[tuple[DemoTenant, str, str, ExtensionKind, Permissions]] = [
    (BELLAVISTA, "100", "Reception", ExtensionKind.operator, RECEPTION),
    *[
        (BELLAVISTA, str(n), f"Room {n}", ExtensionKind.station, NATIONAL_ONLY)
        for n in range(101, 106)
    ],
    *[
        (BELLAVISTA, str(n), f"Room {n}", ExtensionKind.station, ROOM_ABROAD)
        for n in range(106, 111)
    ],
    (ROSSI_ROMA, "400", "Centralino Roma", ExtensionKind.operator, OFFICE),
    *[
        (ROSSI_ROMA, str(n), f"Roma {n}", ExtensionKind.user, OFFICE)
        for n in (401, 402, 403, 404, 409, 410)
    ],
    (ROSSI_MILANO, "407", "Milano 407", ExtensionKind.user, OFFICE),
    (ROSSI_MILANO, "408", "Milano 408", ExtensionKind.user, OFFICE),
]

# (tenant, E.164, extension it rings)
NUMBERS: list[tuple[DemoTenant, str, str]] = [
    (ROSSI_ROMA, "+39062022600", "400"),
    *[(ROSSI_ROMA, f"+3906202260{i}", f"40{i}") for i in range(1, 5)],
    (ROSSI_MILANO, "+39021234567", "407"),
]

LINK_GROUP = "Rossi S.r.l."
LINK_DIGITS = {ROSSI_ROMA: 1, ROSSI_MILANO: 2}


async def seed(runtime: ServiceRuntime) -> None:
    """Loads the demo data this service owns."""
    async with runtime.sessionmaker() as session, session.begin():
        await seed_tenant_directory(session)
        await seed_dial_plans(session, runtime)


async def _tenant(session: AsyncSession, demo: DemoTenant) -> Tenant:
    tenant = await find_tenant(session, demo.tenant_id)
    assert tenant is not None, f"{demo.slug} missing from the tenant directory"
    return tenant


async def seed_dial_plans(session: AsyncSession, runtime: ServiceRuntime) -> None:
    """The demo extensions, numbers and the Rossi link group (skipping what exists)."""
    outbox = runtime.outbox
    for demo, number, name, kind, permissions in EXTENSIONS:
        tenant = await _tenant(session, demo)
        if await store.find_extension(session, tenant.tenant_id, number) is None:
            await store.create_extension(
                session,
                outbox=outbox,
                tenant=tenant,
                data=ExtensionCreate(number=number, name=name, kind=kind, permissions=permissions),
                extension_id=demo_id(f"extension:{demo.slug}:{number}"),
            )
    for demo, e164, extension in NUMBERS:
        tenant = await _tenant(session, demo)
        taken = await session.execute(select(Number.id).where(Number.e164 == e164))
        if taken.scalar_one_or_none() is None:
            await store.create_numbers(
                session,
                outbox=outbox,
                tenant=tenant,
                data=NumberCreate(
                    e164=e164, target=Target(kind=TargetKind.extension, extension=extension)
                ),
            )
    group = (
        await session.execute(select(LinkGroup).where(LinkGroup.name == LINK_GROUP))
    ).scalar_one_or_none()
    if group is None:
        group = await store.create_link_group(
            session, outbox=outbox, name=LINK_GROUP, group_id=demo_id("link-group:rossi")
        )
    for demo, digit in LINK_DIGITS.items():
        member = await session.execute(
            select(LinkMember).where(LinkMember.tenant_id == demo.tenant_id)
        )
        if member.scalar_one_or_none() is None:
            await store.add_link_member(
                session,
                outbox=outbox,
                group=group,
                tenant=await _tenant(session, demo),
                digit=digit,
            )
