"""Accounts, DID fees, link setup fees and recurring charges from bus events."""

import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from rating_helpers import balance, d, top_up
from sqlalchemy import update

from centralino_proto.events import LinkCreated, NumberAssigned, NumberReleased, TenantCreated
from centralino_proto.testing import ServiceHarness, until
from centralino_rating.charges import run_recurring
from centralino_rating.models import Did, Subscription


async def _equal(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def ledger(harness: ServiceHarness, tenant: str) -> list[dict[str, str]]:
    response = await harness.client.get(
        f"/v1/tenants/{tenant}/ledger", headers=harness.mint.headers("operator")
    )
    entries: list[dict[str, str]] = response.json()["entries"]
    return entries


async def test_tenant_created_opens_a_prepaid_account(harness: ServiceHarness) -> None:
    tenant_id = uuid.uuid4()
    async with harness.probe("credit.changed"):
        await harness.publish(
            TenantCreated(
                tenant_id=tenant_id, slug="nuovo", name="Nuovo", sip_realm="nuovo.centralino.test"
            ),
            tenant_id=tenant_id,
        )

        async def opened() -> bool:
            response = await harness.client.get(
                "/v1/tenants/nuovo/balance", headers=harness.mint.headers("operator")
            )
            return response.status_code == 200 and response.json()["balance"] == "0.000000"

        await until(opened, timeout=20, message="account opened")


async def test_did_fee_monthly_and_link_setup_once(harness: ServiceHarness) -> None:
    tenant = await harness.add_tenant("acme")
    await top_up(harness, "acme", "30.00")
    number_id = uuid.uuid4()
    group = uuid.uuid4()
    async with harness.probe("credit.changed") as probe:
        assigned = NumberAssigned(
            tenant_id=tenant.tenant_id,
            number_id=number_id,
            e164="+39062022600",
            target_kind="extension",
            target="400",
        )
        await harness.publish(assigned, tenant_id=tenant.tenant_id)
        link = LinkCreated(tenant_id=tenant.tenant_id, link_group_id=group, digit=1)
        await harness.publish(link, tenant_id=tenant.tenant_id)
        await harness.publish(link, tenant_id=tenant.tenant_id)  # a retry: charged once
        await probe.wait_for("credit.changed", 2, timeout=20)

        async def fees() -> list[str]:
            return sorted(e["amount"] for e in await ledger(harness, "acme") if e["kind"] == "fee")

        await until(
            lambda: _equal(fees(), ["-2.000000", "-25.000000"]),
            timeout=20,
            message="DID and link fees",
        )

    # A month on, the billing pass books the DID again (once, however often it runs).
    later = datetime.now(UTC) + timedelta(days=32)
    for _ in range(2):
        await run_recurring(
            harness.runtime.sessionmaker, harness.runtime.outbox, now=later, did_fee=Decimal("2.00")
        )
    fees = [
        e for e in await ledger(harness, "acme") if e["kind"] == "fee" and "DID" in e["description"]
    ]
    assert len(fees) == 2

    async with harness.probe("credit.changed"):
        await harness.publish(
            NumberReleased(tenant_id=tenant.tenant_id, number_id=number_id, e164="+39062022600"),
            tenant_id=tenant.tenant_id,
        )

        async def released() -> bool:
            async with harness.runtime.sessionmaker() as session:
                did = await session.get(Did, number_id)
                return did is not None and did.released_at is not None

        await until(released, timeout=20, message="DID released")
    await run_recurring(
        harness.runtime.sessionmaker,
        harness.runtime.outbox,
        now=later + timedelta(days=60),
        did_fee=Decimal("2.00"),
    )
    assert len([e for e in await ledger(harness, "acme") if "DID" in e["description"]]) == 2
    assert d((await balance(harness, "acme"))["balance"]) == Decimal("1.00")


async def test_plan_fee_renews_and_bundles_reset_each_cycle(harness: ServiceHarness) -> None:
    tenant = await harness.add_tenant("acme")
    operator = harness.mint.headers("operator")
    await harness.client.put(
        "/v1/plans/SMALL",
        json={
            "name": "FLAT SMALL",
            "monthly_fee": "19.90",
            "fixed_minutes": 600,
            "mobile_minutes": 300,
        },
        headers=operator,
    )
    await top_up(harness, "acme", "50.00")
    response = await harness.client.put(
        "/v1/tenants/acme/subscription", json={"plan": "SMALL"}, headers=operator
    )
    assert response.status_code == 200
    unknown = await harness.client.put(
        "/v1/tenants/acme/subscription", json={"plan": "HUGE"}, headers=operator
    )
    assert unknown.status_code == 422
    async with harness.runtime.sessionmaker() as session, session.begin():
        await session.execute(
            update(Subscription)
            .where(Subscription.tenant_id == tenant.tenant_id)
            .values(mobile_used_seconds=1000)  # type: ignore[arg-type]
        )
    later = datetime.now(UTC) + timedelta(days=32)
    await run_recurring(
        harness.runtime.sessionmaker, harness.runtime.outbox, now=later, did_fee=Decimal("2")
    )
    await run_recurring(
        harness.runtime.sessionmaker, harness.runtime.outbox, now=later, did_fee=Decimal("2")
    )
    fees = [e["amount"] for e in await ledger(harness, "acme") if e["kind"] == "fee"]
    assert fees == ["-19.900000", "-19.900000"]
    async with harness.runtime.sessionmaker() as session:
        sub = await session.get(Subscription, tenant.tenant_id)
        assert sub is not None and sub.mobile_used_seconds == 0 and sub.cycle_end > later
