"""Recurring and one-off charges: plan fees, DIDs (monthly), inter-company link setup."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from centralino_proto.bus import Outbox
from centralino_proto.events import LedgerEntryKind

from .ledger import add_months, charge_plan_fee, current_subscription, lock_account, post_entry
from .models import Did, Plan, Subscription

log = logging.getLogger("centralino.rating.charges")


async def charge_did(session: AsyncSession, outbox: Outbox, did: Did, *, fee: Decimal) -> None:
    """Books one month of a DID and moves its next charge a month on."""
    account = await lock_account(session, tenant_id=did.tenant_id)
    period = did.next_charge_at
    await post_entry(
        session,
        outbox,
        account,
        kind=LedgerEntryKind.fee,
        amount=-fee,
        description=f"DID {did.e164} {period:%Y-%m-%d} - {add_months(period, 1):%Y-%m-%d}",
        reference=f"did:{did.number_id}:{period.isoformat()}",
    )
    did.next_charge_at = next_month(did.assigned_at, period)


def next_month(anchor: datetime, period: datetime) -> datetime:
    months = (period.year - anchor.year) * 12 + period.month - anchor.month + 1
    return add_months(anchor, months)


async def assign_did(
    session: AsyncSession,
    outbox: Outbox,
    *,
    tenant_id: uuid.UUID,
    number_id: uuid.UUID,
    e164: str,
    at: datetime,
    fee: Decimal,
) -> None:
    """Starts billing a DID: its first month is charged now."""
    did = await session.get(Did, number_id, with_for_update=True)
    if did is not None and did.released_at is None and did.tenant_id == tenant_id:
        return
    if did is None:
        did = Did(
            number_id=number_id, tenant_id=tenant_id, e164=e164, assigned_at=at, next_charge_at=at
        )
        session.add(did)
    else:
        # Released earlier (or moved between tenants): a new billing life from now.
        did.tenant_id, did.e164, did.assigned_at, did.next_charge_at = tenant_id, e164, at, at
        did.released_at = None
    await session.flush()
    await charge_did(session, outbox, did, fee=fee)


async def release_did(session: AsyncSession, *, number_id: uuid.UUID, at: datetime) -> None:
    """Stops billing a DID (the month already paid is not refunded)."""
    did = await session.get(Did, number_id, with_for_update=True)
    if did is not None and did.released_at is None:
        did.released_at = at


async def charge_link_setup(
    session: AsyncSession,
    outbox: Outbox,
    *,
    tenant_id: uuid.UUID,
    link_group_id: uuid.UUID,
    fee: Decimal,
) -> None:
    """Books the one-off fee for joining an inter-company link group."""
    if fee <= 0:
        return
    account = await lock_account(session, tenant_id=tenant_id)
    await post_entry(
        session,
        outbox,
        account,
        kind=LedgerEntryKind.fee,
        amount=-fee,
        description="inter-company link setup",
        reference=f"link:{link_group_id}",
    )


async def subscribe_plan(
    session: AsyncSession,
    outbox: Outbox,
    *,
    tenant_id: uuid.UUID,
    plan: Plan,
    now: datetime,
    book_fee: bool = True,
) -> Subscription:
    """Puts a tenant on a plan; a new plan starts a new cycle and books its fee."""
    account = await lock_account(session, tenant_id=tenant_id)
    sub = await session.get(Subscription, tenant_id, with_for_update=True)
    if sub is not None and sub.plan_code == plan.code:
        return sub
    if sub is None:
        sub = Subscription(tenant_id=tenant_id, plan_code=plan.code)
        session.add(sub)
    sub.plan_code = plan.code
    sub.started_at = sub.cycle_start = now
    sub.cycle_end = add_months(now, 1)
    sub.fixed_used_seconds = sub.mobile_used_seconds = 0
    await session.flush()
    if book_fee:
        await charge_plan_fee(session, outbox, account, sub, plan)
    return sub


async def run_recurring(
    sessionmaker: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    *,
    now: datetime,
    did_fee: Decimal,
) -> int:
    """Books every recurring charge due by `now`, one tenant item per transaction; returns how many."""
    booked = 0
    while True:
        async with sessionmaker() as session, session.begin():
            did = (
                await session.execute(
                    select(Did)
                    .where(col(Did.released_at).is_(None), col(Did.next_charge_at) <= now)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
            ).scalar_one_or_none()
            if did is None:
                break
            await charge_did(session, outbox, did, fee=did_fee)
            booked += 1
    due = []
    async with sessionmaker() as session:
        due = list(
            (
                await session.execute(
                    select(col(Subscription.tenant_id)).where(col(Subscription.cycle_end) <= now)
                )
            ).scalars()
        )
    for tenant_id in due:
        async with sessionmaker() as session, session.begin():
            account = await lock_account(session, tenant_id=tenant_id)
            if await current_subscription(session, outbox, account, now=now):
                booked += 1
    return booked
