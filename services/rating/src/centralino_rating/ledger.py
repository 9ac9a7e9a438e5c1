"""Prepaid accounts, the append-only ledger and the FLAT subscription cycle.

Every change to a tenant's money happens with its account row locked
(SELECT ... FOR UPDATE): authorizations, settlements, fees and top-ups of one
tenant are serialized, so a check of the available credit and the reservation
that follows it can never interleave with another.
"""

from __future__ import annotations

import calendar
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from centralino_proto.bus import Outbox
from centralino_proto.events import (
    CreditChanged,
    CreditExhausted,
    CreditLow,
    Event,
    LedgerEntryKind,
)

from .models import Account, LedgerEntry, Plan, Reservation, Subscription
from .pricing import ZERO, money


async def ensure_account(session: AsyncSession, *, tenant_id: uuid.UUID) -> None:
    """Opens a tenant's prepaid account (zero balance) unless it has one."""
    await session.execute(pg_insert(Account).values(tenant_id=tenant_id).on_conflict_do_nothing())


async def lock_account(session: AsyncSession, *, tenant_id: uuid.UUID) -> Account:
    """The tenant's account, locked until the transaction ends (opened if missing)."""
    query = (
        select(Account)
        .where(col(Account.tenant_id) == tenant_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    account = (await session.execute(query)).scalar_one_or_none()
    if account is None:
        await ensure_account(session, tenant_id=tenant_id)
        account = (await session.execute(query)).scalar_one()
    return account


async def held(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    now: datetime,
    excluding_call: str | None = None,
) -> tuple[Decimal, dict[str, int]]:
    """Credit and bundle seconds held by open, unexpired reservations."""
    query = (
        select(
            col(Reservation.bundle),
            func.coalesce(func.sum(col(Reservation.amount)), 0),
            func.coalesce(func.sum(col(Reservation.bundle_seconds)), 0),
        )
        .where(
            col(Reservation.tenant_id) == tenant_id,
            col(Reservation.settled_at).is_(None),
            col(Reservation.expires_at) > now,
        )
        .group_by(col(Reservation.bundle))
    )
    if excluding_call is not None:
        query = query.where(col(Reservation.call_id) != excluding_call)
    amount = ZERO
    seconds: dict[str, int] = {}
    for bundle, held_amount, held_seconds in (await session.execute(query)).all():
        amount += Decimal(held_amount)
        if bundle:
            seconds[bundle] = int(held_seconds)
    return amount, seconds


async def post_entry(
    session: AsyncSession,
    outbox: Outbox,
    account: Account,
    *,
    kind: LedgerEntryKind,
    amount: Decimal,
    description: str,
    reference: str | None = None,
    call_id: str | None = None,
    pending: list[tuple[Event, uuid.UUID | None]] | None = None,
) -> LedgerEntry | None:
    """Appends a ledger entry to a locked account; None if `reference` was booked already.

    With `pending`, its events are left there for the caller to write in one go.
    """
    if reference is not None:
        seen = await session.execute(
            select(col(LedgerEntry.id)).where(
                col(LedgerEntry.tenant_id) == account.tenant_id,
                col(LedgerEntry.reference) == reference,
            )
        )
        if seen.first() is not None:
            return None
    before = account.balance
    account.balance = money(before + amount)
    entry = LedgerEntry(
        tenant_id=account.tenant_id,
        kind=kind,
        amount=money(amount),
        balance_after=account.balance,
        reference=reference,
        description=description,
        call_id=call_id,
    )
    session.add(entry)
    tenant = account.tenant_id
    events: list[tuple[Event, uuid.UUID | None]] = [
        (
            CreditChanged(
                tenant_id=tenant,
                entry_id=entry.id,
                kind=kind,
                amount=entry.amount,
                balance=account.balance,
                currency=account.currency,
            ),
            tenant,
        )
    ]
    # Crossings only, so a tenant hears it once per fall, not once per call.
    if before >= account.low_threshold > account.balance:
        low = CreditLow(
            tenant_id=tenant,
            balance=account.balance,
            threshold=account.low_threshold,
            currency=account.currency,
        )
        events.append((low, tenant))
    if before > account.floor >= account.balance:
        exhausted = CreditExhausted(
            tenant_id=tenant, balance=account.balance, currency=account.currency
        )
        events.append((exhausted, tenant))
    if pending is not None:
        pending.extend(events)
    else:
        await session.flush()
        await outbox.add_many(session, events)
    return entry


def add_months(anchor: datetime, months: int) -> datetime:
    """The same day-of-month `months` later (clamped to the month's last day)."""
    index = anchor.month - 1 + months
    year, month = anchor.year + index // 12, index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def next_cycle_end(anchor: datetime, after: datetime) -> datetime:
    """The first monthly boundary from `anchor` strictly after `after`."""
    months = (after.year - anchor.year) * 12 + after.month - anchor.month
    end = add_months(anchor, max(months, 0))
    while end <= after:
        months += 1
        end = add_months(anchor, months)
    return end


async def charge_plan_fee(
    session: AsyncSession, outbox: Outbox, account: Account, sub: Subscription, plan: Plan
) -> None:
    """Books the plan fee of the subscription's current cycle (once per cycle)."""
    if plan.monthly_fee <= 0:
        return
    await post_entry(
        session,
        outbox,
        account,
        kind=LedgerEntryKind.fee,
        amount=-plan.monthly_fee,
        description=f"FLAT {plan.code} {sub.cycle_start:%Y-%m-%d} - {sub.cycle_end:%Y-%m-%d}",
        reference=f"plan:{plan.code}:{sub.cycle_start.isoformat()}",
    )


async def current_subscription(
    session: AsyncSession, outbox: Outbox, account: Account, *, now: datetime
) -> tuple[Subscription, Plan] | None:
    """The tenant's subscription rolled to the cycle containing `now` (fees booked, bundles reset)."""
    row = (
        await session.execute(
            select(Subscription, Plan)
            .join(Plan, col(Plan.code) == col(Subscription.plan_code))
            .where(col(Subscription.tenant_id) == account.tenant_id)
            .execution_options(populate_existing=True)
        )
    ).first()
    if row is None:
        return None
    sub, plan = row
    while sub.cycle_end <= now:
        sub.cycle_start = sub.cycle_end
        sub.cycle_end = next_cycle_end(sub.started_at, sub.cycle_start)
        sub.fixed_used_seconds = 0
        sub.mobile_used_seconds = 0
        await charge_plan_fee(session, outbox, account, sub, plan)
    return sub, plan


def bundle_left(sub: Subscription, plan: Plan, bucket: str) -> int:
    """Seconds of a bundle not yet used this cycle (before reservations)."""
    if bucket == "fixed":
        return max(0, plan.fixed_minutes * 60 - sub.fixed_used_seconds)
    return max(0, plan.mobile_minutes * 60 - sub.mobile_used_seconds)


def use_bundle(sub: Subscription, bucket: str, seconds: int) -> None:
    if bucket == "fixed":
        sub.fixed_used_seconds += seconds
    else:
        sub.mobile_used_seconds += seconds


def utcnow() -> datetime:
    return datetime.now(UTC)


async def close_lapsed_reservations(session: AsyncSession, *, before: datetime) -> int:
    """Closes holds that lapsed before `before` (their call.ended never came); returns how many.

    They already hold nothing (availability ignores lapsed holds); closing them keeps the
    open-reservation index small.
    """
    result = await session.execute(
        update(Reservation)
        .where(col(Reservation.settled_at).is_(None), col(Reservation.expires_at) < before)
        .values(settled_at=func.now())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
