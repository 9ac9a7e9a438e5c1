"""The rating service's share of the demo data (ARCHITECTURE.md); idempotent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select
from sqlmodel import col

from centralino_proto.demo import BELLAVISTA, ROSSI_MILANO, ROSSI_ROMA, seed_tenant_directory
from centralino_proto.events import LedgerEntryKind
from centralino_proto.service import ServiceRuntime

from .charges import subscribe_plan
from .decks import import_deck, parse_effective
from .ledger import lock_account, post_entry, utcnow
from .models import Plan, RateDeck

DEMO_DECK = Path(__file__).parent / "data" / "demo_deck.csv"
DEMO_DECK_NAME = "demo"

# code: (name, fixed minutes, mobile minutes, monthly fee)
FLAT_PLANS = {
    "MINI": ("FLAT MINI", 300, 150, Decimal("9.90")),
    "SMALL": ("FLAT SMALL", 600, 300, Decimal("19.90")),
    "NORMAL": ("FLAT NORMAL", 1200, 600, Decimal("39.90")),
    "BIG": ("FLAT BIG", 2400, 1200, Decimal("69.90")),
}

# slug: (opening credit, station markup %, plan)
ACCOUNTS = {
    ROSSI_ROMA: (Decimal("50.00"), Decimal("0"), "SMALL"),
    BELLAVISTA: (Decimal("100.00"), Decimal("30"), None),
    ROSSI_MILANO: (Decimal("20.00"), Decimal("0"), None),
}


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(65536):
            yield chunk


async def seed(runtime: ServiceRuntime) -> None:
    """Loads the demo data this service owns."""
    async with runtime.sessionmaker() as session, session.begin():
        await seed_tenant_directory(session)
        for code, (name, fixed, mobile, fee) in FLAT_PLANS.items():
            plan = await session.get(Plan, code)
            if plan is None:
                session.add(
                    Plan(
                        code=code,
                        name=name,
                        fixed_minutes=fixed,
                        mobile_minutes=mobile,
                        monthly_fee=fee,
                    )
                )
    async with runtime.sessionmaker() as session, session.begin():
        seeded = await session.execute(
            select(col(RateDeck.id)).where(
                col(RateDeck.name) == DEMO_DECK_NAME,
                col(RateDeck.status) == "ready",
            )
        )
        if seeded.first() is None:
            await import_deck(
                session,
                name=DEMO_DECK_NAME,
                effective_from=parse_effective("2026-01-01"),
                chunks=_file_chunks(DEMO_DECK),
            )
    for tenant, (credit, station_markup, plan_code) in ACCOUNTS.items():
        async with runtime.sessionmaker() as session, session.begin():
            account = await lock_account(session, tenant_id=tenant.tenant_id)
            account.station_markup_percent = station_markup
            await post_entry(
                session,
                runtime.outbox,
                account,
                kind=LedgerEntryKind.top_up,
                amount=credit,
                description="demo opening credit",
                reference="seed:opening-credit",
            )
            if plan_code:
                plan = await session.get(Plan, plan_code)
                assert plan is not None
                # The demo's first cycle counts as paid, so the credit shown is the opening one.
                await subscribe_plan(
                    session,
                    runtime.outbox,
                    tenant_id=tenant.tenant_id,
                    plan=plan,
                    now=utcnow(),
                    book_fee=False,
                )
