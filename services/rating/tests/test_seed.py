"""The demo data of ARCHITECTURE.md, loaded twice."""

from decimal import Decimal

from rating_helpers import authorize, balance, d

from centralino_proto.demo import BELLAVISTA, ROSSI_MILANO, ROSSI_ROMA
from centralino_proto.testing import ServiceHarness
from centralino_rating.seed import seed


async def test_seed_is_idempotent_and_matches_the_demo(harness: ServiceHarness) -> None:
    await seed(harness.runtime)
    await seed(harness.runtime)
    operator = harness.mint.headers("operator")
    plans = (await harness.client.get("/v1/plans", headers=operator)).json()
    assert [
        (p["code"], p["fixed_minutes"], p["mobile_minutes"], p["monthly_fee"]) for p in plans
    ] == [
        ("MINI", 300, 150, "9.900000"),
        ("SMALL", 600, 300, "19.900000"),
        ("NORMAL", 1200, 600, "39.900000"),
        ("BIG", 2400, 1200, "69.900000"),
    ]
    decks = (await harness.client.get("/v1/rate-decks", headers=operator)).json()
    assert len(decks) == 1 and decks[0]["row_count"] >= 70
    assert d((await balance(harness, "rossi-roma"))["balance"]) == Decimal("50")
    sub = (await harness.client.get("/v1/tenants/rossi-roma/subscription", headers=operator)).json()
    assert sub["plan"] == "SMALL" and sub["fixed_seconds_left"] == 36000
    hotel = await balance(harness, "bellavista")
    assert d(hotel["balance"]) == Decimal("100") and d(hotel["station_markup_percent"]) == 30
    assert d((await balance(harness, "rossi-milano"))["balance"]) > 0
    # Rossi Roma's fixed calls draw on the bundle: a full hour is allowed.
    answer = await authorize(harness, ROSSI_ROMA.tenant_id, "+390612345678", "national_fixed")
    assert answer["allowed"] and answer["max_seconds"] == 3600
    for tenant in (BELLAVISTA, ROSSI_MILANO):
        assert (await authorize(harness, tenant.tenant_id, "+5511912345678", "international"))[
            "allowed"
        ]
