"""The rating service's app factory."""

import asyncio
import contextlib
import logging
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from centralino_proto.auth import JWKSVerifier
from centralino_proto.service import ServiceRuntime, create_service_app

from .api import router
from .charges import run_recurring
from .config import Settings
from .decks import DeckCache, deck_in_force
from .handlers import subscribe
from .ledger import close_lapsed_reservations, utcnow

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("centralino.rating")


async def _deck_watch(runtime: ServiceRuntime) -> None:
    """Builds the index of every deck in force or due within a day before a call needs it.

    Calls always use the version PostgreSQL says is in force (so replicas agree); this only
    keeps the first call after an import on another replica from waiting for the build.
    """
    settings = runtime.settings
    assert isinstance(settings, Settings)
    decks = runtime.extras["decks"]
    assert isinstance(decks, DeckCache)
    while True:
        try:
            async with runtime.sessionmaker() as session:
                now = utcnow()
                due = await deck_in_force(session, now + timedelta(days=1))
                current = await deck_in_force(session, now)
            for deck_id in dict.fromkeys(d for d in (current, due) if d):
                await decks.get(deck_id)
        except Exception:
            log.exception("deck watch pass failed; retried next pass")
        await asyncio.sleep(settings.deck_poll_seconds)


async def _billing_loop(runtime: ServiceRuntime) -> None:
    settings = runtime.settings
    assert isinstance(settings, Settings)
    while True:
        try:
            await run_recurring(
                runtime.sessionmaker, runtime.outbox, now=utcnow(), did_fee=settings.did_monthly_fee
            )
            async with runtime.sessionmaker() as session, session.begin():
                await close_lapsed_reservations(session, before=utcnow() - timedelta(days=1))
        except Exception:
            log.exception("recurring charges pass failed; retried next pass")
        await asyncio.sleep(settings.billing_interval_seconds)


async def on_start(runtime: ServiceRuntime) -> None:
    runtime.extras["decks"] = runtime.extras.get("decks") or DeckCache(runtime.engine)
    runtime.extras["tasks"] = [
        asyncio.create_task(_deck_watch(runtime), name="rating-deck-watch"),
        asyncio.create_task(_billing_loop(runtime), name="rating-billing"),
    ]


async def on_stop(runtime: ServiceRuntime) -> None:
    tasks = runtime.extras.get("tasks") or []
    assert isinstance(tasks, list)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def create_app(
    settings: Settings | None = None, *, verifier: JWKSVerifier | None = None
) -> FastAPI:
    """Builds the rating app."""
    return create_service_app(
        settings=settings or Settings(),
        migrations_dir=MIGRATIONS,
        routers=[router],
        description="Rate decks, FLAT plans and bundles, subscriptions, the prepaid credit ledger, markups, rated CDRs and per-station spend; answers POST /v1/authorize.",
        subscribe=subscribe,
        on_start=on_start,
        on_stop=on_stop,
        verifier=verifier,
    )
