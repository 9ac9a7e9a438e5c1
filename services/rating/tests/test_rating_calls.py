"""Calls rated from call.ended on the real bus: arithmetic, bundles, markups, exactly once."""

import asyncio
import json
from decimal import ROUND_HALF_UP, Decimal

import aio_pika
from rating_helpers import authorize, balance, call_ended, d, handled, import_deck, top_up

from centralino_proto.events import CallClass, Direction, Envelope
from centralino_proto.testing import AMQP_URL, ServiceHarness, until

SIX = Decimal("0.000001")


async def test_61_seconds_to_brazil_is_61_60ths_of_the_minute_rate(harness: ServiceHarness) -> None:
    await import_deck(harness)
    tenant = await harness.add_tenant("acme")
    await top_up(harness, "acme", "10.00")
    async with harness.probe("cdr.rated", "credit.changed") as probe:
        await harness.publish(
            call_ended(tenant.tenant_id, "+5561912345678", 61), tenant_id=tenant.tenant_id
        )
        (rated,) = await probe.wait_for("cdr.rated", timeout=20)
    cdr = rated.data
    expected = (Decimal(61) / 60 * Decimal("0.0128")).quantize(SIX, ROUND_HALF_UP)
    assert expected == Decimal("0.013013")
    assert (cdr.prefix, cdr.destination, cdr.rate) == ("55", "Brazil", Decimal("0.0128"))
    assert cdr.cost == cdr.price == cdr.station_price == expected
    assert cdr.billable_seconds == 61 and cdr.bundle_seconds == 0
    # On the wire money is a decimal string, never a float.
    raw = rated.model_dump(mode="json", by_alias=True)["data"]
    assert raw["cost"] == "0.013013" and raw["class"] == "international"
    assert d((await balance(harness, "acme"))["balance"]) == Decimal("10") - expected


async def test_free_classes_and_unanswered_calls_cost_nothing(harness: ServiceHarness) -> None:
    await import_deck(harness)
    tenant = await harness.add_tenant("acme")
    async with harness.probe("cdr.rated") as probe:
        for event in (
            call_ended(tenant.tenant_id, "+390612345678", 120, call_class=CallClass.on_net),
            call_ended(tenant.tenant_id, "112", 300, call_class=CallClass.emergency),
            call_ended(tenant.tenant_id, "+390612345678", 0, call_class=CallClass.national_fixed),
            call_ended(
                tenant.tenant_id,
                "+390612345678",
                90,
                call_class=CallClass.national_fixed,
                direction=Direction.inbound,
            ),
        ):
            await harness.publish(event, tenant_id=tenant.tenant_id)
        rated = await probe.wait_for("cdr.rated", 4, timeout=20)
    assert all(e.data.price == 0 and e.data.cost == 0 for e in rated)
    assert d((await balance(harness, "acme"))["balance"]) == 0


async def test_flat_call_crossing_its_allowance_is_split_between_bundle_and_credit(
    harness: ServiceHarness,
) -> None:
    await import_deck(harness)
    tenant = await harness.add_tenant("acme")
    operator = harness.mint.headers("operator")
    plan = await harness.client.put(
        "/v1/plans/TINY",
        json={"name": "FLAT TINY", "monthly_fee": "1.00", "fixed_minutes": 2, "mobile_minutes": 1},
        headers=operator,
    )
    assert plan.status_code == 200, plan.text
    await top_up(harness, "acme", "5.00")
    sub = await harness.client.put(
        "/v1/tenants/acme/subscription", json={"plan": "TINY"}, headers=operator
    )
    assert sub.status_code == 200, sub.text
    assert sub.json()["mobile_seconds_left"] == 60
    assert d((await balance(harness, "acme"))["balance"]) == Decimal("4.00")  # fee booked

    async with harness.probe("cdr.rated") as probe:
        # 45 s inside the bundle, then 50 s of which 15 are bundle and 35 paid.
        await harness.publish(
            call_ended(tenant.tenant_id, "+393351234567", 45, call_class=CallClass.mobile),
            tenant_id=tenant.tenant_id,
        )
        await probe.wait_for("cdr.rated", 1, timeout=20)
        await harness.publish(
            call_ended(tenant.tenant_id, "+393351234567", 50, call_class=CallClass.mobile),
            tenant_id=tenant.tenant_id,
        )
        first, second = (e.data for e in await probe.wait_for("cdr.rated", 2, timeout=20))
    assert (first.bundle_seconds, first.price) == (45, Decimal("0"))
    assert second.bundle_seconds == 15
    paid = (Decimal(35) / 60 * Decimal("0.03")).quantize(SIX, ROUND_HALF_UP)
    assert second.price == second.cost == paid == Decimal("0.017500")
    # The guest/desk price covers the whole call (the bundle is the tenant's).
    assert second.station_price == Decimal("0.025000")
    assert d((await balance(harness, "acme"))["balance"]) == Decimal("4.00") - paid
    left = (await harness.client.get("/v1/tenants/acme/subscription", headers=operator)).json()
    assert left["mobile_seconds_left"] == 0 and left["fixed_seconds_left"] == 120


async def test_markup_chain_operator_cost_reseller_price_station_price(
    harness: ServiceHarness,
) -> None:
    await import_deck(harness)
    tenant = await harness.add_tenant("bellavista", kind="hotel")
    operator = harness.mint.headers("operator")
    await top_up(harness, "bellavista", "20.00")
    settings = await harness.client.patch(
        "/v1/tenants/bellavista/balance",
        json={"reseller_markup_percent": "20", "station_markup_percent": "30"},
        headers=operator,
    )
    assert settings.status_code == 200, settings.text
    # Room 110 is a suite: 50 % on top instead of the tenant's 30 %.
    room = await harness.client.put(
        "/v1/tenants/bellavista/stations/110", json={"markup_percent": "50"}, headers=operator
    )
    assert room.status_code == 200, room.text
    async with harness.probe("cdr.rated") as probe:
        await harness.publish(
            call_ended(
                tenant.tenant_id,
                "+390612345678",
                120,
                extension="105",
                call_class=CallClass.national_fixed,
            ),
            tenant_id=tenant.tenant_id,
        )
        await harness.publish(
            call_ended(
                tenant.tenant_id,
                "+390612345678",
                120,
                extension="110",
                call_class=CallClass.national_fixed,
            ),
            tenant_id=tenant.tenant_id,
        )
        rated = {e.data.extension: e.data for e in await probe.wait_for("cdr.rated", 2, timeout=20)}
    # 2 minutes at 0.0100: cost 0.02, +20 % reseller = 0.024, +30 % station = 0.0312.
    assert rated["105"].cost == Decimal("0.020000")
    assert rated["105"].price == Decimal("0.024000")
    assert rated["105"].station_price == Decimal("0.031200")
    assert rated["110"].station_price == Decimal("0.036000")
    quote = await harness.client.get(
        "/v1/tenants/bellavista/quote",
        params={"e164": "+390612345678", "seconds": 120, "extension": "105"},
        headers=operator,
    )
    assert quote.status_code == 200, quote.text
    assert (quote.json()["price"], quote.json()["station_price"]) == ("0.024000", "0.031200")


async def test_call_ended_delivered_twice_is_rated_once(harness: ServiceHarness) -> None:
    await import_deck(harness)
    tenant = await harness.add_tenant("acme")
    await top_up(harness, "acme", "10.00")
    event = call_ended(tenant.tenant_id, "+393351234567", 60, call_class=CallClass.mobile)
    envelope = Envelope.wrap(event, producer="registrar", tenant_id=tenant.tenant_id)
    body = json.dumps(envelope.model_dump(mode="json", by_alias=True)).encode()
    duplicates_before = handled(harness, "call.ended", "duplicate")
    async with harness.probe("cdr.rated") as probe:
        connection = await aio_pika.connect(AMQP_URL)
        try:
            channel = await connection.channel()
            exchange = await channel.get_exchange(harness.settings.bus_exchange)
            # The same envelope twice, as a broker redelivery would hand it over.
            for _ in range(2):
                await exchange.publish(
                    aio_pika.Message(body, message_id=str(envelope.id), type="call.ended"),
                    routing_key="call.ended",
                )
        finally:
            await connection.close()
        await probe.wait_for("cdr.rated", 1, timeout=20)
        await until(
            lambda: handled(harness, "call.ended", "duplicate") == duplicates_before + 1,
            timeout=20,
            message="second delivery seen as a duplicate",
        )
        # Same call id in a fresh envelope (a producer retry): the CDR's call id stops it.
        await harness.publish(event, tenant_id=tenant.tenant_id)
        await until(
            lambda: handled(harness, "call.ended", "handled") >= 2,
            timeout=20,
            message="retry handled",
        )
        await asyncio.sleep(0.5)
        assert len(probe.of_type("cdr.rated")) == 1
    ledger = (
        await harness.client.get(
            "/v1/tenants/acme/ledger", headers=harness.mint.headers("operator")
        )
    ).json()
    assert [e["kind"] for e in ledger["entries"]] == ["call", "top_up"]
    assert d((await balance(harness, "acme"))["balance"]) == Decimal("9.97")
    cdrs = (
        await harness.client.get(
            "/v1/tenants/acme/cdrs",
            headers=harness.mint.headers("tenant_admin", tenant_id=tenant.tenant_id),
        )
    ).json()
    assert len(cdrs["cdrs"]) == 1 and cdrs["cdrs"][0]["price"] == "0.030000"


async def test_authorized_call_settles_its_reservation(harness: ServiceHarness) -> None:
    await import_deck(harness)
    tenant = await harness.add_tenant("acme")
    await top_up(harness, "acme", "1.00")
    decision = await authorize(harness, tenant.tenant_id, "+393351234567", "mobile", call_id="c-1")
    assert decision == {"allowed": True, "max_seconds": 2000, "reason": None}
    held = await balance(harness, "acme")
    assert d(held["reserved"]) == Decimal("1.000000") and d(held["available"]) == 0
    # A retry of the same authorization holds nothing more.
    assert (await authorize(harness, tenant.tenant_id, "+393351234567", "mobile", call_id="c-1"))[
        "max_seconds"
    ] == 2000
    denied = await authorize(harness, tenant.tenant_id, "+393351234567", "mobile")
    assert denied == {"allowed": False, "max_seconds": None, "reason": "insufficient credit"}
    # Emergency and internal calls are always allowed, unlimited.
    assert (await authorize(harness, tenant.tenant_id, "+39112", "emergency"))[
        "max_seconds"
    ] is None
    async with harness.probe("cdr.rated") as probe:
        await harness.publish(
            call_ended(
                tenant.tenant_id, "+393351234567", 120, call_id="c-1", call_class=CallClass.mobile
            ),
            tenant_id=tenant.tenant_id,
        )
        await probe.wait_for("cdr.rated", timeout=20)
    after = await balance(harness, "acme")
    assert d(after["reserved"]) == 0
    assert d(after["balance"]) == Decimal("0.94")
