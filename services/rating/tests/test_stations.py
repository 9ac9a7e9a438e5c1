"""Per-station spend, the guest's statement (JSON and CSV) and checkout."""

import csv
import io
from decimal import Decimal

from rating_helpers import call_ended, import_deck, top_up

from centralino_proto.events import CallClass
from centralino_proto.testing import ServiceHarness


async def test_station_spend_statement_and_checkout(harness: ServiceHarness) -> None:
    await import_deck(harness)
    tenant = await harness.add_tenant("bellavista", kind="hotel")
    admin = harness.mint.headers("tenant_admin", tenant_id=tenant.tenant_id)
    await top_up(harness, "bellavista", "100.00")
    markup = await harness.client.patch(
        "/v1/tenants/bellavista/balance", json={"station_markup_percent": "30"}, headers=admin
    )
    assert markup.status_code == 200, markup.text
    async with harness.probe("cdr.rated") as probe:
        for extension, number, seconds, call_class in (
            ("101", "+390612345678", 60, CallClass.national_fixed),
            ("101", "+5511912345678", 120, CallClass.international),
            ("102", "+393351234567", 30, CallClass.mobile),
        ):
            await harness.publish(
                call_ended(
                    tenant.tenant_id, number, seconds, extension=extension, call_class=call_class
                ),
                tenant_id=tenant.tenant_id,
            )
        await probe.wait_for("cdr.rated", 3, timeout=20)

    spend = {
        s["extension"]: s
        for s in (await harness.client.get("/v1/tenants/bellavista/stations", headers=admin)).json()
    }
    # Room 101: 0.01 + 0.0256 = 0.0356 to the hotel, +30 % = 0.04628 to the guest.
    assert (spend["101"]["calls"], spend["101"]["seconds"]) == (2, 180)
    assert spend["101"]["price"] == "0.035600" and spend["101"]["station_price"] == "0.046280"
    assert spend["102"]["station_price"] == "0.019500"
    room = await harness.client.get("/v1/tenants/bellavista/stations/101", headers=admin)
    assert room.status_code == 200 and room.json() == spend["101"]
    unknown = await harness.client.get("/v1/tenants/bellavista/stations/999", headers=admin)
    assert unknown.status_code == 404

    statement = await harness.client.get(
        "/v1/tenants/bellavista/stations/101/statement", headers=admin
    )
    assert statement.status_code == 200
    body = statement.json()
    assert body["calls"] == 2 and body["total"] == "0.046280"
    assert [line["destination"] for line in body["lines"]] == [
        "Italy - Fixed Rome",
        "Brazil - Sao Paulo",
    ]
    as_csv = await harness.client.get(
        "/v1/tenants/bellavista/stations/101/statement", params={"format": "csv"}, headers=admin
    )
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(as_csv.text)))
    assert rows[0][0] == "ended_at" and rows[-1] == ["total", "", "", "180", "0.046280"]
    assert sum(Decimal(r[4]) for r in rows[1:-1]) == Decimal("0.046280")

    # Checkout: the guest's bill, and room 101 starts again from zero.
    bill = await harness.client.post("/v1/tenants/bellavista/stations/101/checkout", headers=admin)
    assert bill.status_code == 200 and bill.json()["total"] == "0.046280"
    spend = {
        s["extension"]: s
        for s in (await harness.client.get("/v1/tenants/bellavista/stations", headers=admin)).json()
    }
    assert spend["101"]["calls"] == 0 and spend["101"]["station_price"] == "0.000000"
    assert spend["102"]["calls"] == 1
    empty = await harness.client.get("/v1/tenants/bellavista/stations/101/statement", headers=admin)
    assert empty.json()["calls"] == 0

    bad = await harness.client.get(
        "/v1/tenants/bellavista/stations/101/statement",
        params={"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        headers=admin,
    )
    assert bad.status_code == 422
    user = harness.mint.headers("tenant_user", tenant_id=tenant.tenant_id)
    refused = await harness.client.post(
        "/v1/tenants/bellavista/stations/102/checkout", headers=user
    )
    assert refused.status_code == 403
