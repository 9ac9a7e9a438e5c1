"""Every replica converges on the same plans: through the dialplan.changed signal,
and through the version sweep when a signal was missed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import text

from centralino_proto.demo import BELLAVISTA
from centralino_proto.testing import ServiceHarness, serve_app, until
from centralino_routing.decide import RouteRequest
from centralino_routing.main import create_app
from centralino_routing.replica import PlanKeeper

WORKDAY = "2026-11-25T10:00:00+01:00"


def _decide(keeper: PlanKeeper, **body: Any) -> dict[str, Any]:
    return keeper.router.decide(RouteRequest.model_validate({"at": WORKDAY, **body})).body()


async def test_a_change_on_one_replica_reaches_the_other(demo: ServiceHarness, keeper: Any) -> None:
    # Replica B shares the database and the exchange, and never sweeps on its own here.
    settings_b = demo.settings.override(dialplan_sweep_seconds=3600)
    app_b = create_app(settings_b, verifier=demo.mint.verifier())  # type: ignore[arg-type]
    async with serve_app(app_b):
        replica_b: PlanKeeper = app_b.state.runtime.extras["plans"]
        call = {"tenant_id": str(BELLAVISTA.tenant_id), "extension": "101"}
        assert _decide(replica_b, **call, digits="3351234567")["reject"]["status"] == 403

        granted = await demo.client.put(
            f"/v1/tenants/{BELLAVISTA.slug}/extensions/101/permissions",
            json={"national_fixed": True, "mobile": True},
            headers=demo.mint.headers("tenant_admin", tenant_id=BELLAVISTA.tenant_id),
        )
        assert granted.status_code == 200
        # Replica A (the one written to) answers at once ...
        assert _decide(keeper(demo), **call, digits="3351234567")["action"] == "pstn"
        # ... replica B once the signal went through the bus.
        await until(
            lambda: _decide(replica_b, **call, digits="3351234567")["action"] == "pstn",
            timeout=20,
            message="replica B rebuilt bellavista",
        )

        # A change behind every replica's back (no signal): the sweep finds it.
        async with replica_b.runtime.sessionmaker() as session, session.begin():
            await session.execute(
                text(
                    "UPDATE extension SET enabled = false WHERE tenant_id = :t AND number = '101'"
                ),
                {"t": BELLAVISTA.tenant_id},
            )
            await session.execute(
                text(
                    "UPDATE dialplan_version SET version = nextval('dialplan_version_seq')"
                    " WHERE tenant_id = :t"
                ),
                {"t": BELLAVISTA.tenant_id},
            )
        assert _decide(replica_b, **call, digits="0612345678")["action"] == "pstn"
        assert await replica_b.sweep() == 1
        assert _decide(replica_b, **call, digits="0612345678")["reject"]["status"] == 403
        assert await replica_b.sweep() == 0


async def test_the_decision_takes_well_under_a_millisecond(
    demo: ServiceHarness, keeper: Any
) -> None:
    router = keeper(demo).router
    requests = [
        RouteRequest.model_validate({"at": WORKDAY, **body})
        for body in (
            {
                "tenant_id": str(BELLAVISTA.tenant_id),
                "extension": "106",
                "digits": "00442071234567",
            },
            {"tenant_id": str(BELLAVISTA.tenant_id), "extension": "101", "digits": "3351234567"},
            {"tenant_id": str(BELLAVISTA.tenant_id), "extension": "101", "digits": "104"},
            {"inbound_did": "+39062022601"},
        )
    ]
    samples = []
    for _ in range(500):
        for request in requests:
            started = time.perf_counter()
            router.decide(request)
            samples.append(time.perf_counter() - started)
    samples.sort()
    p99 = samples[int(len(samples) * 0.99)]
    assert p99 < 0.0005, f"p99 {p99 * 1e6:.0f} us"


async def test_a_decision_never_queries_the_database(demo: ServiceHarness, route: Any) -> None:
    from sqlalchemy import event

    # Let the seed's own dialplan.changed signals arrive and be applied first.
    async def relayed() -> bool:
        async with demo.runtime.sessionmaker() as session:
            unsent = await session.execute(
                text("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            )
            return unsent.scalar_one() == 0

    await until(relayed, timeout=20, message="outbox drained")
    await asyncio.sleep(1.0)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = demo.runtime.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        for digits in ("104", "0612345678", "3351234567", "+39062022601", "00442071234567"):
            await route(
                demo,
                tenant_id=str(BELLAVISTA.tenant_id),
                extension="106",
                digits=digits,
                at=WORKDAY,
            )
        await route(demo, inbound_did="+39021234567", at=WORKDAY)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    # The outbox relay and the version sweep may run meanwhile; nothing reads the plan tables.
    plan_tables = ("extension", "number", "forwarding_rule", "ivr_menu", "schedule", "link_member")
    assert not [s for s in statements if any(f" {t}" in s for t in plan_tables)], statements
