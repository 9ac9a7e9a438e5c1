"""Prepaid credit under concurrency, top-ups, ledger and credit events."""

import asyncio
import uuid
from decimal import Decimal

from rating_helpers import authorize, balance, call_ended, d, import_deck, top_up

from centralino_proto.events import CallClass
from centralino_proto.testing import ServiceHarness


async def test_100_concurrent_authorizations_never_overspend(short_calls: ServiceHarness) -> None:
    harness = short_calls
    await import_deck(harness)
    tenant = await harness.add_tenant("callshop", kind="call_shop")
    await top_up(harness, "callshop", "1.00")
    calls = [f"call-{i}" for i in range(100)]
    # Italy mobile 0.03/min, 600 s per authorization: 0.30 each, so 3 full calls and one of 200 s.
    answers = await asyncio.gather(
        *(authorize(harness, tenant.tenant_id, "+393351234567", "mobile", call_id=c) for c in calls)
    )
    allowed = {c: a["max_seconds"] for c, a in zip(calls, answers, strict=True) if a["allowed"]}
    assert sorted(allowed.values()) == [200, 600, 600, 600]
    assert all(a["reason"] == "insufficient credit" for a in answers if not a["allowed"])
    spendable = sum(Decimal(s) / 60 * Decimal("0.03") for s in allowed.values())
    assert spendable == Decimal("1.00")
    held = await balance(harness, "callshop")
    assert d(held["reserved"]) == Decimal("1.00") and d(held["available"]) == 0

    # Every allowed call runs to its limit and a few seconds over (the switch is late).
    async with harness.probe("cdr.rated", "credit.exhausted") as probe:
        for call_id, seconds in allowed.items():
            await harness.publish(
                call_ended(
                    tenant.tenant_id,
                    "+393351234567",
                    seconds + 3,
                    call_id=call_id,
                    call_class=CallClass.mobile,
                ),
                tenant_id=tenant.tenant_id,
            )
        rated = await probe.wait_for("cdr.rated", len(allowed), timeout=30)
        await probe.wait_for("credit.exhausted", 1, timeout=20)
    assert sorted(e.data.billable_seconds for e in rated) == [200, 600, 600, 600]
    after = await balance(harness, "callshop")
    assert d(after["balance"]) == 0 and d(after["reserved"]) == 0


async def test_top_up_is_for_managers_and_idempotent_by_reference(harness: ServiceHarness) -> None:
    owner = uuid.uuid4()
    tenant = await harness.add_tenant("acme", reseller_id=owner)
    admin = harness.mint.headers("tenant_admin", tenant_id=tenant.tenant_id)
    refused = await harness.client.post(
        "/v1/tenants/acme/top-ups", json={"amount": "5"}, headers=admin
    )
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    operator = harness.mint.headers("operator")
    for status in (201, 200):
        response = await harness.client.post(
            "/v1/tenants/acme/top-ups",
            json={"amount": "12.50", "reference": "bonifico-77"},
            headers=operator,
        )
        assert response.status_code == status, response.text
    clash = await harness.client.post(
        "/v1/tenants/acme/top-ups",
        json={"amount": "1.00", "reference": "bonifico-77"},
        headers=operator,
    )
    assert clash.status_code == 409
    for bad in ({"amount": "-1"}, {"amount": "0"}, {"amount": "1.0000001"}, {"amount": "abc"}):
        response = await harness.client.post("/v1/tenants/acme/top-ups", json=bad, headers=operator)
        assert response.status_code == 422, bad
    assert d((await balance(harness, "acme"))["balance"]) == Decimal("12.50")
    refund = await harness.client.post(
        "/v1/tenants/acme/top-ups",
        json={"amount": "0.50", "kind": "refund", "call_id": "c-9", "description": "dropped call"},
        headers=operator,
    )
    assert refund.status_code == 201 and refund.json()["kind"] == "refund"
    reseller = harness.mint.headers("reseller", reseller_id=owner)
    adjustment = {"amount": "-3.00", "kind": "adjustment", "description": "goodwill reversed"}
    assert (
        await harness.client.post("/v1/tenants/acme/top-ups", json=adjustment, headers=reseller)
    ).status_code == 403
    taken = await harness.client.post("/v1/tenants/acme/top-ups", json=adjustment, headers=operator)
    assert taken.status_code == 201 and taken.json()["amount"] == "-3.000000"
    negative_refund = {"amount": "-1", "kind": "refund"}
    assert (
        await harness.client.post(
            "/v1/tenants/acme/top-ups", json=negative_refund, headers=operator
        )
    ).status_code == 422
    assert d((await balance(harness, "acme"))["balance"]) == Decimal("10.00")
    # A reseller sees only its own tenants.
    other = harness.mint.headers("reseller", reseller_id=uuid.uuid4())
    hidden = await harness.client.post(
        "/v1/tenants/acme/top-ups", json={"amount": "1"}, headers=other
    )
    assert hidden.status_code == 404


async def test_credit_low_and_ledger_paging(harness: ServiceHarness) -> None:
    await import_deck(harness)
    tenant = await harness.add_tenant("acme")
    operator = harness.mint.headers("operator")
    await top_up(harness, "acme", "1.00")
    threshold = await harness.client.patch(
        "/v1/tenants/acme/balance", json={"low_threshold": "0.95"}, headers=operator
    )
    assert threshold.status_code == 200
    async with harness.probe("credit.low", "credit.changed") as probe:
        await harness.publish(
            call_ended(tenant.tenant_id, "+393351234567", 120, call_class=CallClass.mobile),
            tenant_id=tenant.tenant_id,
        )
        (low,) = await probe.wait_for("credit.low", timeout=20)
        changed = await probe.wait_for("credit.changed", timeout=20)
    assert (low.data.balance, low.data.threshold) == (Decimal("0.94"), Decimal("0.95"))
    assert changed[-1].data.kind == "call" and changed[-1].data.amount == Decimal("-0.06")
    page = (await harness.client.get("/v1/tenants/acme/ledger?limit=1", headers=operator)).json()
    assert [e["kind"] for e in page["entries"]] == ["call"]
    older = await harness.client.get(
        f"/v1/tenants/acme/ledger?limit=1&before={page['next_before']}", headers=operator
    )
    assert [e["kind"] for e in older.json()["entries"]] == ["top_up"]
    assert older.json()["entries"][0]["balance_after"] == "1.000000"


async def test_authorize_needs_a_service_token_and_a_valid_request(harness: ServiceHarness) -> None:
    tenant = await harness.add_tenant("acme")
    body = {
        "tenant_id": str(tenant.tenant_id),
        "call_id": "x",
        "extension": "101",
        "e164": "+390612345678",
        "class": "national_fixed",
    }
    user = harness.mint.headers("tenant_admin", tenant_id=tenant.tenant_id)
    assert (await harness.client.post("/v1/authorize", json=body, headers=user)).status_code == 403
    service = harness.mint.headers("service")
    bad = await harness.client.post(
        "/v1/authorize", json={**body, "e164": "0612345678"}, headers=service
    )
    assert bad.status_code == 422 and "E.164" in bad.json()["detail"]
    missing = {k: v for k, v in body.items() if k != "e164"}
    assert (
        await harness.client.post("/v1/authorize", json=missing, headers=service)
    ).status_code == 422
    # Emergency numbers need no E.164 form and no credit.
    emergency = {**body, "e164": "112", "class": "emergency"}
    answer = (await harness.client.post("/v1/authorize", json=emergency, headers=service)).json()
    assert answer == {"allowed": True, "max_seconds": None, "reason": None}
    # No deck yet: nothing to price the call with.
    answer = (await harness.client.post("/v1/authorize", json=body, headers=service)).json()
    assert answer == {"allowed": False, "max_seconds": None, "reason": "no rate for +390612345678"}
    unknown = {**body, "tenant_id": str(uuid.uuid4())}
    answer = (await harness.client.post("/v1/authorize", json=unknown, headers=service)).json()
    assert answer["allowed"] is False and answer["reason"] == "unknown or inactive tenant"


async def test_an_unsettled_reservation_lapses_after_its_call_could_have_ended(
    harness: ServiceHarness,
) -> None:
    from datetime import UTC, datetime, timedelta

    from centralino_rating.calls import authorize as authorize_call
    from centralino_rating.ledger import close_lapsed_reservations

    await import_deck(harness)
    tenant = await harness.add_tenant("acme")
    await top_up(harness, "acme", "0.30")
    decks = harness.runtime.extras["decks"]
    # Authorized two hours ago; its call.ended never came (a lost registrar, say).
    async with harness.runtime.sessionmaker() as session, session.begin():
        old = await authorize_call(
            session,
            decks=decks,  # type: ignore[arg-type]
            tenant_id=tenant.tenant_id,
            call_id="lost",
            extension="101",
            e164="+393351234567",
            call_class=CallClass.mobile,
            now=datetime.now(UTC) - timedelta(hours=2),
            max_call_seconds=600,
            grace_seconds=900,
            outbox=harness.runtime.outbox,
        )
    assert old.allowed and old.max_seconds == 600
    assert d((await balance(harness, "acme"))["reserved"]) == 0
    assert (await authorize(harness, tenant.tenant_id, "+393351234567", "mobile"))["allowed"]
    # The billing pass closes it for good.
    async with harness.runtime.sessionmaker() as session, session.begin():
        closed = await close_lapsed_reservations(session, before=datetime.now(UTC))
    assert closed == 1


async def test_cdr_list_filters_and_pages(harness: ServiceHarness) -> None:
    await import_deck(harness)
    tenant = await harness.add_tenant("acme")
    await top_up(harness, "acme", "10.00")
    async with harness.probe("cdr.rated") as probe:
        for i in range(5):
            await harness.publish(
                call_ended(
                    tenant.tenant_id,
                    "+390612345678",
                    10 + i,
                    extension="101" if i % 2 else "102",
                    call_class=CallClass.national_fixed,
                ),
                tenant_id=tenant.tenant_id,
            )
        await probe.wait_for("cdr.rated", 5, timeout=20)
    admin = harness.mint.headers("tenant_admin", tenant_id=tenant.tenant_id)
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (
            await harness.client.get("/v1/tenants/acme/cdrs", params=params, headers=admin)
        ).json()
        seen += [c["call_id"] for c in page["cdrs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5
    only = await harness.client.get(
        "/v1/tenants/acme/cdrs",
        params={"extension": "101", "class": "national_fixed"},
        headers=admin,
    )
    assert {c["extension"] for c in only.json()["cdrs"]} == {"101"} and len(
        only.json()["cdrs"]
    ) == 2
    assert only.json()["cdrs"][0]["class"] == "national_fixed"
    bad = await harness.client.get(
        "/v1/tenants/acme/cdrs", params={"cursor": "nonsense"}, headers=admin
    )
    assert bad.status_code == 400
    other = await harness.add_tenant("other")
    foreign = harness.mint.headers("tenant_admin", tenant_id=other.tenant_id)
    assert (await harness.client.get("/v1/tenants/acme/cdrs", headers=foreign)).status_code == 404


async def test_concurrent_authorizations_share_bundle_and_credit_without_overlap(
    short_calls: ServiceHarness,
) -> None:
    harness = short_calls
    await import_deck(harness)
    tenant = await harness.add_tenant("acme")
    operator = harness.mint.headers("operator")
    await harness.client.put(
        "/v1/plans/TINY",
        json={"name": "TINY", "monthly_fee": "0", "fixed_minutes": 2, "mobile_minutes": 0},
        headers=operator,
    )
    await harness.client.put(
        "/v1/tenants/acme/subscription", json={"plan": "TINY"}, headers=operator
    )
    await top_up(harness, "acme", "0.10")
    # 120 s of bundle and 0.10 EUR at 0.01/min (600 s): 720 s in all, whoever asks first.
    answers = await asyncio.gather(
        *(
            authorize(harness, tenant.tenant_id, "+390612345678", "national_fixed")
            for _ in range(40)
        )
    )
    granted = sorted(a["max_seconds"] for a in answers if a["allowed"])
    assert granted == [120, 600]
    held = await balance(harness, "acme")
    assert d(held["reserved"]) == Decimal("0.10") and d(held["available"]) == 0


async def test_a_markup_raised_mid_call_cannot_push_credit_below_the_floor(
    short_calls: ServiceHarness,
) -> None:
    harness = short_calls
    await import_deck(harness)
    tenant = await harness.add_tenant("acme")
    operator = harness.mint.headers("operator")
    await top_up(harness, "acme", "0.30")
    decision = await authorize(harness, tenant.tenant_id, "+393351234567", "mobile", call_id="m")
    assert decision["max_seconds"] == 600
    raised = await harness.client.patch(
        "/v1/tenants/acme/balance", json={"reseller_markup_percent": "100"}, headers=operator
    )
    assert raised.status_code == 200
    async with harness.probe("cdr.rated") as probe:
        await harness.publish(
            call_ended(
                tenant.tenant_id, "+393351234567", 600, call_id="m", call_class=CallClass.mobile
            ),
            tenant_id=tenant.tenant_id,
        )
        (rated,) = await probe.wait_for("cdr.rated", timeout=20)
    assert rated.data.price == Decimal("0.30")
    assert d((await balance(harness, "acme"))["balance"]) == 0
