"""Per-call rating: authorize (reserve) before a call, rate and settle after it."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from centralino_proto.bus import Outbox
from centralino_proto.db import tenant_directory
from centralino_proto.events import (
    CallClass,
    CallEnded,
    CdrRated,
    Direction,
    Event,
    LedgerEntryKind,
)
from centralino_proto.events import Disposition as CallDisposition

from .decks import DeckCache
from .ledger import (
    bundle_left,
    current_subscription,
    held,
    lock_account,
    post_entry,
    use_bundle,
)
from .lpm import RateMatch
from .models import Account, Cdr, Reservation, Station
from .pricing import (
    BUNDLE_OF,
    FREE_CLASSES,
    ZERO,
    affordable_seconds,
    billed_seconds,
    deck_cost,
    marked_up,
    price_call,
)

log = logging.getLogger("centralino.rating.calls")


@dataclass(frozen=True)
class Authorization:
    allowed: bool
    max_seconds: int | None
    reason: str | None = None


async def authorize(
    session: AsyncSession,
    *,
    decks: DeckCache,
    tenant_id: uuid.UUID,
    call_id: str,
    extension: str,
    e164: str,
    call_class: CallClass,
    now: datetime,
    max_call_seconds: int,
    grace_seconds: int,
    outbox: Outbox,
) -> Authorization:
    """Decides whether a call may start and for how long, reserving what it may spend."""
    if call_class in FREE_CLASSES:
        return Authorization(True, None)
    known = await session.execute(
        select(tenant_directory.c.active).where(tenant_directory.c.tenant_id == tenant_id)
    )
    active = known.scalar_one_or_none()
    if not active:
        return Authorization(False, None, "unknown or inactive tenant")

    index = await decks.in_force(session, now)
    rate = index.lookup(e164, now) if index else None
    if rate is None:
        return Authorization(False, None, f"no rate for {e164}")

    account = await lock_account(session, tenant_id=tenant_id)
    # A retried authorize of the same call gets the same answer, not a second hold.
    existing = await session.get(Reservation, call_id, populate_existing=True)
    if existing is not None:
        if existing.tenant_id != tenant_id or existing.settled_at is not None:
            return Authorization(False, None, "call id already used")
        if existing.expires_at <= now:
            return Authorization(False, None, "authorization expired")
        return Authorization(True, existing.max_seconds)

    held_amount, held_bundle = await held(session, tenant_id=tenant_id, now=now)
    bucket = BUNDLE_OF.get(call_class)
    bundle_take = 0
    if bucket:
        subscription = await current_subscription(session, outbox, account, now=now)
        if subscription:
            sub, plan = subscription
            free = bundle_left(sub, plan, bucket) - held_bundle.get(bucket, 0)
            bundle_take = max(0, min(free, max_call_seconds))
    credit = account.balance - account.floor - held_amount
    markup = account.reseller_markup_percent
    credit_seconds = affordable_seconds(
        rate,
        credit=credit,
        reseller_markup=markup,
        with_bundle=bundle_take > 0,
        cap=max_call_seconds - bundle_take,
    )
    max_seconds = bundle_take + credit_seconds
    if max_seconds <= 0:
        return Authorization(False, None, "insufficient credit")
    amount = marked_up(
        deck_cost(
            rate,
            billed_seconds(
                credit_seconds,
                increment=rate.increment,
                minimum=rate.minimum if bundle_take == 0 else 0,
            ),
            connection_fee=bundle_take == 0,
        ),
        markup,
    )
    session.add(
        Reservation(
            call_id=call_id,
            tenant_id=tenant_id,
            extension=extension,
            e164=e164,
            call_class=str(call_class),
            prefix=rate.prefix,
            amount=amount,
            reseller_markup_percent=markup,
            bundle=bucket if bundle_take else None,
            bundle_seconds=bundle_take,
            max_seconds=max_seconds,
            expires_at=now + timedelta(seconds=max_seconds + grace_seconds),
        )
    )
    await session.flush()
    return Authorization(True, max_seconds)


async def station_markup(session: AsyncSession, account: Account, extension: str) -> Decimal:
    """The station's own markup, else the tenant's."""
    station = await session.get(Station, (account.tenant_id, extension))
    if station is not None and station.markup_percent is not None:
        return station.markup_percent
    return account.station_markup_percent


def is_billable(event: CallEnded) -> bool:
    """Whether a call can cost anything: a paying class, and not a plain inbound call."""
    if event.call_class in FREE_CLASSES:
        return False
    return not (event.direction is Direction.inbound and event.forwarded_from is None)


async def rate_call(
    session: AsyncSession,
    *,
    outbox: Outbox,
    decks: DeckCache,
    event: CallEnded,
    now: datetime,
) -> Cdr | None:
    """Rates an ended call once: bundle first, then credit; settles its reservation."""
    account = await lock_account(session, tenant_id=event.tenant_id)
    # After the lock: a concurrent copy of this call (another envelope) has committed by now.
    seen = select(col(Cdr.id)).where(col(Cdr.call_id) == event.call_id)
    if (await session.execute(seen)).first():
        return None
    reservation = await session.get(
        Reservation, event.call_id, with_for_update=True, populate_existing=True
    )
    if reservation is not None and reservation.tenant_id != event.tenant_id:
        reservation = None
    seconds = event.billable_seconds if event.disposition is CallDisposition.answered else 0
    if reservation is not None and reservation.settled_at is None:
        # Never bill past what was authorized: overrun is the switch's, not the tenant's.
        seconds = min(seconds, reservation.max_seconds)
    e164 = (
        reservation.e164
        if reservation
        else (event.callee if event.callee.startswith("+") else None)
    )

    rate: RateMatch | None = None
    bundle_seconds = 0
    cost = price = station_price = ZERO
    charged = 0
    if is_billable(event) and e164:
        index = await decks.in_force(session, event.started_at)
        rate = index.lookup(e164, event.started_at) if index else None
        if rate is None and seconds > 0:
            log.warning("call %s to %s: no rate in force; rated at zero", event.call_id, e164)
    if rate is not None:
        # Priced as authorized: a markup changed mid-call cannot outgrow the hold.
        markup = account.reseller_markup_percent
        if reservation is not None and reservation.reseller_markup_percent is not None:
            markup = reservation.reseller_markup_percent
        bucket = BUNDLE_OF.get(event.call_class)
        available = 0
        subscription = None
        if bucket:
            subscription = await current_subscription(session, outbox, account, now=now)
            if subscription:
                sub, plan = subscription
                # Its own reserved seconds plus whatever nobody else holds.
                _, others = await held(
                    session, tenant_id=account.tenant_id, now=now, excluding_call=event.call_id
                )
                available = max(0, bundle_left(sub, plan, bucket) - others.get(bucket, 0))
        charge = price_call(
            rate,
            seconds,
            bundle_available=available,
            reseller_markup=markup,
            station_markup=await station_markup(session, account, event.extension),
        )
        if subscription and bucket and charge.bundle_seconds:
            use_bundle(subscription[0], bucket, charge.bundle_seconds)
        bundle_seconds, charged = charge.bundle_seconds, charge.charged_seconds
        cost, price, station_price = charge.cost, charge.price, charge.station_price

    cdr = Cdr(
        call_id=event.call_id,
        tenant_id=event.tenant_id,
        extension=event.extension,
        call_class=str(event.call_class),
        direction=str(event.direction),
        disposition=str(event.disposition),
        caller=event.caller[:64],
        callee=event.callee[:64],
        e164=e164,
        started_at=event.started_at,
        answered_at=event.answered_at,
        ended_at=event.ended_at,
        billable_seconds=seconds,
        bundle_seconds=bundle_seconds,
        charged_seconds=charged,
        prefix=rate.prefix if rate else None,
        destination=rate.destination if rate else None,
        rate=rate.rate_per_minute if rate else ZERO,
        cost=cost,
        price=price,
        station_price=station_price,
        currency=account.currency,
        deck_id=rate.deck_id if rate else None,
    )
    session.add(cdr)
    pending: list[tuple[Event, uuid.UUID | None]] = []
    if price > 0:
        await post_entry(
            session,
            outbox,
            account,
            kind=LedgerEntryKind.call,
            amount=-price,
            description=f"call {event.extension} -> {e164} {seconds}s",
            # No reference lookup: the CDR's unique call id already makes this once.
            call_id=event.call_id,
            pending=pending,
        )
    if reservation is not None and reservation.settled_at is None:
        reservation.settled_at = now
    await session.flush()
    rated = CdrRated(
        call_id=cdr.call_id,
        tenant_id=cdr.tenant_id,
        extension=cdr.extension,
        call_class=event.call_class,
        e164=cdr.e164,
        billable_seconds=cdr.billable_seconds,
        bundle_seconds=cdr.bundle_seconds,
        prefix=cdr.prefix,
        destination=cdr.destination,
        rate=cdr.rate,
        cost=cdr.cost,
        price=cdr.price,
        station_price=cdr.station_price,
        currency=cdr.currency,
        charged_seconds=cdr.charged_seconds,
        started_at=cdr.started_at,
        ended_at=cdr.ended_at,
    )
    # One outbox write (and one NOTIFY) for the CDR and its credit events.
    await outbox.add_many(session, [*pending, (rated, cdr.tenant_id)])
    return cdr
