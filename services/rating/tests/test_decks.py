"""Rate deck import (streamed, all or nothing) and lookups consistent across replicas."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from rating_helpers import import_deck
from sqlalchemy import text

from centralino_proto.testing import ServiceHarness, until
from centralino_rating.decks import DeckCache
from centralino_rating.decks import import_deck as import_rows

HEADER = "prefix,destination,rate_per_minute,connection_fee,billing_increment,minimum_seconds,effective_from\n"


async def post_deck(harness: ServiceHarness, body: str, **params: str) -> httpx.Response:
    return await harness.client.post(
        "/v1/rate-decks",
        content=body.encode(),
        params=params,
        headers={**harness.mint.headers("operator"), "Content-Type": "text/csv"},
    )


async def rate_rows(harness: ServiceHarness) -> int:
    async with harness.runtime.sessionmaker() as session:
        count: int = (await session.execute(text("SELECT count(*) FROM rate"))).scalar_one()
    return count


async def lookup(harness: ServiceHarness, e164: str, **params: str) -> dict[str, object]:
    response = await harness.client.get(
        "/v1/rate-decks/lookup",
        params={"e164": e164, **params},
        headers=harness.mint.headers("service"),
    )
    assert response.status_code in (200, 404), response.text
    body: dict[str, object] = response.json()
    return body


async def test_demo_deck_imports_and_prices_by_longest_prefix(harness: ServiceHarness) -> None:
    deck = await import_deck(harness)
    assert deck["status"] == "ready" and deck["row_count"] >= 70
    fixed = await lookup(harness, "+390612345678")
    assert (fixed["prefix"], fixed["rate_per_minute"]) == ("3906", "0.010000")
    mobile = await lookup(harness, "+393351234567")
    assert (mobile["destination"], mobile["rate_per_minute"]) == ("Italy - Mobile", "0.030000")
    assert (await lookup(harness, "+5511912345678"))["rate_per_minute"] == "0.012800"
    assert (await lookup(harness, "+88216123456"))["status"] == 404


async def test_destination_names_keep_commas_quotes_backslashes_and_tabs(
    harness: ServiceHarness,
) -> None:
    name = 'Spain, "mainland" \\ Baleares\tIslands'
    body = HEADER + '34,"Spain, ""mainland"" \\ Baleares\tIslands",0.01,0,1,0,2026-01-01\n'
    response = await post_deck(harness, body)
    assert response.status_code == 201, response.text
    assert (await lookup(harness, "+34912345678"))["destination"] == name


async def test_a_bad_row_imports_nothing_and_every_bad_row_is_named(
    harness: ServiceHarness,
) -> None:
    await import_deck(harness)
    before = await rate_rows(harness)
    body = (
        HEADER
        + "39,Italy,0.02,0,1,0,2026-01-01\n"
        + "3X9,Broken prefix,0.02,0,1,0,2026-01-01\n"  # line 3
        + "44,UK,-0.01,0,1,0,2026-01-01\n"  # line 4
        + "\n"
        + "49,Germany,0.01,0,0,0,2026-01-01\n"  # line 6: increment 0
        + "33,France,0.01,0,1,0,yesterday\n"  # line 7
        + "34,Spain,0.01\n"  # line 8: too few fields
        + "39,Italy again,0.03,0,1,0,2026-01-01\n"  # line 9: fine by itself, a duplicate
    )
    response = await post_deck(harness, body, name="broken")
    assert response.status_code == 422
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["line"] for e in problem["errors"]] == [3, 4, 6, 7, 8]
    assert problem["errors"][0]["column"] == "prefix" and "3X9" in problem["errors"][0]["error"]
    assert await rate_rows(harness) == before
    # The refusal is on record, without rates.
    decks = (
        await harness.client.get("/v1/rate-decks", headers=harness.mint.headers("operator"))
    ).json()
    newest = decks[0]
    assert (newest["name"], newest["status"], newest["error_count"]) == ("broken", "failed", 5)
    # Still priced by the deck in force.
    assert (await lookup(harness, "+390612345678"))["rate_per_minute"] == "0.010000"

    duplicate = await post_deck(
        harness, HEADER + "39,Italy,0.02,0,1,0,2026-01-01\n39,Italy,0.03,0,1,0,2026-01-01\n"
    )
    assert duplicate.status_code == 422
    (error,) = duplicate.json()["errors"]
    assert error["line"] == 3 and "line 2" in error["error"]
    assert await rate_rows(harness) == before

    headless = await post_deck(harness, "39,Italy,0.02\n")
    assert headless.status_code == 422
    assert "header lacks" in headless.json()["errors"][0]["error"]
    empty = await post_deck(harness, "")
    assert empty.status_code == 422


async def test_new_deck_reaches_every_replica_and_waits_for_its_date(
    harness: ServiceHarness, tmp_path: Path
) -> None:
    await import_deck(harness)
    replica = DeckCache(harness.runtime.engine)  # another replica's memory
    now = datetime.now(UTC)
    async with harness.runtime.sessionmaker() as session:
        index = await replica.in_force(session, now)
        assert index is not None and index.lookup("+390612345678") is not None
    future = (now + timedelta(days=30)).date().isoformat()
    # Semicolons, as a spreadsheet in Italian locale exports them.
    deck = tmp_path / "next.csv"
    deck.write_text("prefix;destination;rate\n+390;Italia fissi;0.0090\n")
    response = await post_deck(harness, deck.read_text(), name="next", effective_from=future)
    assert response.status_code == 201, response.text
    assert (await lookup(harness, "+390612345678"))["rate_per_minute"] == "0.010000"
    later = (now + timedelta(days=31)).isoformat()
    assert (await lookup(harness, "+390612345678", at=later))["rate_per_minute"] == "0.009000"
    async with harness.runtime.sessionmaker() as session:
        seen = await replica.in_force(session, now + timedelta(days=31))
    assert seen is not None
    match = seen.lookup("+390612345678", now + timedelta(days=31))
    assert match is not None and str(match.rate_per_minute) == "0.009000"


async def test_only_the_operator_imports(harness: ServiceHarness) -> None:
    tenant = await harness.add_tenant("acme")
    response = await harness.client.post(
        "/v1/rate-decks",
        content=HEADER.encode(),
        headers=harness.mint.headers("tenant_admin", tenant_id=tenant.tenant_id),
    )
    assert response.status_code == 403


async def test_a_replica_builds_a_new_deck_before_any_call_asks(harness: ServiceHarness) -> None:
    """The deck watch of a replica that did not import picks the new version up on its own."""
    # Another replica imports (its own cache is not this app's).
    other = DeckCache(harness.runtime.engine)
    async with harness.runtime.sessionmaker() as session, session.begin():

        async def body() -> AsyncIterator[bytes]:
            yield (HEADER + "39,Italy,0.02,0,1,0,2026-01-01\n").encode()

        deck = await import_rows(
            session,
            name="elsewhere",
            effective_from=datetime(2026, 1, 1, tzinfo=UTC),
            chunks=body(),
        )
    await other.get(deck.id)
    mine = harness.runtime.extras["decks"]
    assert isinstance(mine, DeckCache)
    await until(lambda: deck.id in mine._indexes, timeout=20, message="deck built by the watch")


async def test_a_long_import_reports_its_progress(harness: ServiceHarness) -> None:
    operator = harness.mint.headers("operator")
    more = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield HEADER.encode()
        yield "".join(f"{1000 + i},Somewhere,0.01,0,1,0,2026-01-01\n" for i in range(3000)).encode()
        await more.wait()  # the rest of the file is still on its way
        yield b"39,Italy,0.01,0,1,0,2026-01-01\n"

    upload = asyncio.create_task(
        harness.client.post(
            "/v1/rate-decks", content=slow_body(), headers={**operator, "Content-Type": "text/csv"}
        )
    )

    async def progress() -> list[dict[str, object]]:
        response = await harness.client.get("/v1/rate-decks/imports", headers=operator)
        body: list[dict[str, object]] = response.json()
        return body

    running = await until(progress, timeout=20, message="import in progress")
    assert running[0]["rows_read"] == 3000
    more.set()
    response = await upload
    assert response.status_code == 201 and response.json()["row_count"] == 3001
    assert await progress() == []
