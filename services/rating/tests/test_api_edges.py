"""Edges of the HTTP API: problem+json on bad input, roles, plans, quotes."""

from rating_helpers import import_deck

from centralino_proto.testing import ServiceHarness


async def test_plans_quotes_and_subscriptions_refuse_bad_input(harness: ServiceHarness) -> None:
    await import_deck(harness)
    await harness.add_tenant("acme")
    operator = harness.mint.headers("operator")
    reseller_less = harness.mint.headers("tenant_admin")
    bad_fee = await harness.client.put(
        "/v1/plans/CHEAP", json={"name": "x", "monthly_fee": "-1"}, headers=operator
    )
    assert bad_fee.status_code == 422
    assert bad_fee.headers["content-type"] == "application/problem+json"
    bad_code = await harness.client.put(
        "/v1/plans/not a code", json={"name": "x", "monthly_fee": "1"}, headers=operator
    )
    assert bad_code.status_code == 422
    forbidden = await harness.client.put(
        "/v1/plans/CHEAP", json={"name": "x", "monthly_fee": "1"}, headers=reseller_less
    )
    assert forbidden.status_code == 403

    unpriced = await harness.client.get(
        "/v1/tenants/acme/quote", params={"e164": "+88216123456"}, headers=operator
    )
    assert unpriced.status_code == 404 and "+88216123456" in unpriced.json()["detail"]
    malformed = await harness.client.get(
        "/v1/tenants/acme/quote", params={"e164": "0612345678"}, headers=operator
    )
    assert malformed.status_code == 422
    quote = await harness.client.get(
        "/v1/tenants/acme/quote",
        params={"e164": "+870123456789", "seconds": "30"},
        headers=operator,
    )
    # Inmarsat: 0.50 setup, billed by the minute with a one-minute minimum.
    assert quote.json()["cost"] == "6.500000"

    assert (
        await harness.client.put(
            "/v1/tenants/acme/subscription", json={"plan": None}, headers=operator
        )
    ).json()["plan"] is None
    bogus = await harness.client.patch(
        "/v1/tenants/acme/balance", json={"floor": "5"}, headers=operator
    )
    assert bogus.status_code == 422
    other = await harness.add_tenant("other")
    acme = await harness.client.get("/v1/tenants/acme/balance", headers=operator)
    acme_admin = harness.mint.headers("tenant_admin", tenant_id=acme.json()["tenant_id"])
    markup = {"reseller_markup_percent": "10"}
    own = await harness.client.patch("/v1/tenants/acme/balance", json=markup, headers=acme_admin)
    assert own.status_code == 403  # the reseller's markup is not the tenant's to set
    other_admin = harness.mint.headers("tenant_admin", tenant_id=other.tenant_id)
    hidden = await harness.client.patch(
        "/v1/tenants/acme/balance", json=markup, headers=other_admin
    )
    assert hidden.status_code == 404
    progress = await harness.client.get("/v1/rate-decks/imports", headers=operator)
    assert progress.status_code == 200 and progress.json() == []
    missing = await harness.client.get(
        "/v1/rate-decks/00000000-0000-0000-0000-000000000000", headers=operator
    )
    assert missing.status_code == 404


async def test_a_reseller_sets_its_markup_and_tops_up_only_its_own_tenants(
    harness: ServiceHarness,
) -> None:
    import uuid

    reseller_id = uuid.uuid4()
    await harness.add_tenant("mine", reseller_id=reseller_id)
    await harness.add_tenant("theirs", reseller_id=uuid.uuid4())
    reseller = harness.mint.headers("reseller", reseller_id=reseller_id)
    markup = await harness.client.patch(
        "/v1/tenants/mine/balance", json={"reseller_markup_percent": "12.5"}, headers=reseller
    )
    assert markup.status_code == 200 and markup.json()["reseller_markup_percent"] == "12.500000"
    floor = await harness.client.patch(
        "/v1/tenants/mine/balance", json={"floor": "-10"}, headers=reseller
    )
    assert floor.status_code == 403  # a credit line is the operator's call
    top_up = await harness.client.post(
        "/v1/tenants/mine/top-ups", json={"amount": "5"}, headers=reseller
    )
    assert top_up.status_code == 201
    elsewhere = await harness.client.post(
        "/v1/tenants/theirs/top-ups", json={"amount": "5"}, headers=reseller
    )
    assert elsewhere.status_code == 404
