"""What rating does with the events it consumes."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from centralino_proto.events import (
    CallEnded,
    Envelope,
    LinkCreated,
    NumberAssigned,
    NumberReleased,
    TenantCreated,
)
from centralino_proto.service import ServiceRuntime

from .calls import rate_call
from .charges import assign_did, charge_link_setup, release_did
from .config import Settings
from .decks import DeckCache
from .ledger import ensure_account, utcnow


def subscribe(runtime: ServiceRuntime) -> None:
    """Binds rating's handlers; each runs in the transaction that records the event id."""
    decks = runtime.extras.setdefault("decks", DeckCache(runtime.engine))
    assert isinstance(decks, DeckCache)
    settings = runtime.settings
    assert isinstance(settings, Settings)
    outbox = runtime.outbox

    async def on_call_ended(session: AsyncSession, envelope: Envelope[Any]) -> None:
        await rate_call(session, outbox=outbox, decks=decks, event=envelope.data, now=utcnow())

    async def on_number_assigned(session: AsyncSession, envelope: Envelope[Any]) -> None:
        event: NumberAssigned = envelope.data
        await assign_did(
            session,
            outbox,
            tenant_id=event.tenant_id,
            number_id=event.number_id,
            e164=event.e164,
            at=envelope.occurred_at,
            fee=settings.did_monthly_fee,
        )

    async def on_number_released(session: AsyncSession, envelope: Envelope[Any]) -> None:
        await release_did(session, number_id=envelope.data.number_id, at=envelope.occurred_at)

    async def on_link_created(session: AsyncSession, envelope: Envelope[Any]) -> None:
        event: LinkCreated = envelope.data
        await charge_link_setup(
            session,
            outbox,
            tenant_id=event.tenant_id,
            link_group_id=event.link_group_id,
            fee=settings.link_setup_fee,
        )

    async def on_tenant_created(session: AsyncSession, envelope: Envelope[Any]) -> None:
        await ensure_account(session, tenant_id=envelope.data.tenant_id)

    runtime.consumer.subscribe(CallEnded, on_call_ended)
    runtime.consumer.subscribe(NumberAssigned, on_number_assigned)
    runtime.consumer.subscribe(NumberReleased, on_number_released)
    runtime.consumer.subscribe(LinkCreated, on_link_created)
    runtime.consumer.subscribe(TenantCreated, on_tenant_created, name="tenant.account")
