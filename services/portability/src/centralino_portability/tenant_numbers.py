"""The tenants' own numbers, learnt from routing's number.assigned / number.released.

They tell which district a tenant is in, so a request needs no temporary_number
when the tenant already has a number in the district of the one it ports.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from centralino_proto.events import Envelope, NumberAssigned, NumberReleased
from centralino_proto.service import ServiceRuntime

from .models import TenantNumber
from .numbers import NumberProblem, parse


async def on_number_event(session: AsyncSession, envelope: Envelope[Any]) -> None:
    """Keeps the index in step with routing."""
    event = envelope.data
    if isinstance(event, NumberReleased):
        await session.execute(
            delete(TenantNumber).where(
                col(TenantNumber.e164) == event.e164, col(TenantNumber.tenant_id) == event.tenant_id
            )
        )
        return
    assert isinstance(event, NumberAssigned)
    try:
        area = parse(event.e164).area_code
    except NumberProblem:
        area = None  # a number not of the Italian plan: no district to offer
    statement = pg_insert(TenantNumber).values(
        e164=event.e164, tenant_id=event.tenant_id, area_code=area
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[col(TenantNumber.e164)],
            set_={"tenant_id": event.tenant_id, "area_code": area},
        )
    )


def subscribe(runtime: ServiceRuntime) -> None:
    """One queue for both events, so a release never overtakes its assignment."""
    runtime.consumer.subscribe(
        [NumberAssigned, NumberReleased], on_number_event, name="tenant.numbers"
    )


async def number_in_district(
    *, session: AsyncSession, tenant_id: uuid.UUID, area_code: str
) -> str | None:
    """One of the tenant's numbers in a district, if it has any."""
    found = await session.execute(
        select(col(TenantNumber.e164))
        .where(col(TenantNumber.tenant_id) == tenant_id, col(TenantNumber.area_code) == area_code)
        .order_by(col(TenantNumber.e164))
        .limit(1)
    )
    return found.scalar_one_or_none()
