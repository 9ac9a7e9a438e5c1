"""The simulated donor, driven by the injectable clock, through to port.completed on the bus."""

from datetime import date
from functools import partial
from typing import Any

from centralino_portability.config import Settings
from centralino_portability.donors import DonorLine, SimulatedDonor, sync_with_donors
from centralino_portability.main import create_app
from centralino_portability.migration_code import check_character
from centralino_proto.testing import ServiceHarness, service_under_test, until

from .conftest import ROME_TEMPORARY, TAX_CODE, FakeClock, Portal, code_for


def donor_of(harness: ServiceHarness) -> SimulatedDonor:
    donor = harness.runtime.extras["donors"]["simulated"]  # type: ignore[index]
    assert isinstance(donor, SimulatedDonor)
    return donor


async def sync(harness: ServiceHarness, clock: FakeClock) -> int:
    settings = harness.runtime.settings
    assert isinstance(settings, Settings)
    return await sync_with_donors(
        runtime=harness.runtime,
        donors=harness.runtime.extras["donors"],  # type: ignore[arg-type]
        settings=settings,
        clock=clock,
    )


async def submitted(portal: Portal, body: dict[str, Any] | None = None) -> str:
    created = await portal.create(body)
    signed = await portal.sign(created["id"])
    assert signed.status_code == 200, signed.text
    rid: str = created["id"]
    return rid


async def test_donor_walks_the_procedure_to_port_completed(
    portal: Portal, harness: ServiceHarness, clock: FakeClock
) -> None:
    async with harness.probe("port.completed", "port.state_changed") as probe:
        rid = await submitted(portal)
        # Monday 21 September 2026: the donor answers the next business day.
        assert await sync(harness, clock) == 0
        clock.advance(days=1)
        assert await sync(harness, clock) == 1
        taken = await portal.get(rid)
        assert taken["state"] == "taken_in_charge"
        clock.advance(days=1)
        assert await sync(harness, clock) == 2
        scheduled = await portal.get(rid)
        assert scheduled["state"] == "scheduled"
        # Ten business days from the submission on Monday 21 September.
        assert scheduled["expected_completion"] == "2026-10-05"
        assert scheduled["expected_closure"] == "2026-10-06"
        clock.advance(days=11)  # Sunday 4 October: nothing yet
        assert await sync(harness, clock) == 0
        clock.advance(days=1)
        assert await sync(harness, clock) == 1
        [completed] = await probe.wait_for("port.completed")
        clock.advance(days=1)
        assert await sync(harness, clock) == 1
        changes = await probe.wait_for("port.state_changed", count=6)
    assert completed.tenant_id == portal.tenant_id
    assert str(completed.data.port_request_id) == rid
    assert completed.data.numbers == ["+390620000001"]
    assert completed.data.temporary_number == ROME_TEMPORARY
    assert completed.data.completed_at.date() == date(2026, 10, 5)
    assert [(c.data.from_state, c.data.to_state) for c in changes] == [
        ("draft", "submitted"),
        ("submitted", "taken_in_charge"),
        ("taken_in_charge", "unlocked"),
        ("unlocked", "scheduled"),
        ("scheduled", "completed"),
        ("completed", "closed"),
    ]
    timeline = (
        await portal.client.get(f"{portal.base}/{rid}/timeline", headers=portal.headers)
    ).json()
    steps = [e for e in timeline if e["kind"] == "transition"]
    assert [e["expected_completion"] for e in steps] == [
        "2026-10-05",
        None,
        None,
        "2026-10-05",
        None,
        None,
    ]
    assert changes[3].data.expected_closure == date(2026, 10, 6)
    actors = [e["actor"] for e in timeline if e["kind"] == "transition"]
    assert actors == ["tenant_admin:test-user"] + ["donor:simulated"] * 5
    assert (await portal.get(rid))["state"] == "closed"


async def test_port_completed_carries_a_gnr_range(
    portal: Portal, harness: ServiceHarness, clock: FakeClock
) -> None:
    body = portal.single(
        line_type="isdn",
        numbers=[
            {
                "kind": "gnr",
                "number": "+3906123450",
                "extensions": {"first": "00", "last": "19"},
                "migration_code": code_for("06123450", cos="003"),
            }
        ],
    )
    rid = await submitted(portal, body)
    async with harness.probe("port.completed") as probe:
        for _ in range(30):  # a day at a time, as the loop would
            clock.advance(days=1)
            await sync(harness, clock)
            if (await portal.get(rid))["state"] == "closed":
                break
        [completed] = await probe.wait_for("port.completed")
    assert completed.data.completed_at.date() == date(2026, 10, 5)
    assert completed.data.numbers == [f"+3906123450{n:02d}" for n in range(20)]


REFUSALS = [
    ("check_character", "invalid_migration_code"),
    ("resource_code", "invalid_migration_code"),
    ("line_type", "wrong_line_type"),
    ("unknown", "unknown_number"),
    ("administrative", "administrative_change"),
    ("identity", "identity_mismatch"),
]


async def test_donor_rejects_what_a_donor_would(
    portal: Portal, harness: ServiceHarness, clock: FakeClock
) -> None:
    donor = donor_of(harness)
    lines: dict[str, DonorLine] = {}
    unknown: set[str] = set()
    requests: list[tuple[str, str]] = []
    for setup, reason in REFUSALS:
        body = portal.single()
        entry = body["numbers"][0]
        national = entry["number"][3:]
        if setup == "check_character":
            wrong = "A" if entry["migration_code"][-1] != "A" else "B"
            entry["migration_code"] = entry["migration_code"][:-1] + wrong
        elif setup == "resource_code":
            other = "TLC0699999999001"
            entry["migration_code"] = other + check_character(other)
        elif setup == "line_type":
            entry["migration_code"] = code_for(national, cos="002")  # ISDN BRA, said analog
        elif setup == "unknown":
            unknown.add(entry["number"])
        elif setup == "administrative":
            lines[entry["number"]] = DonorLine(administrative_change=True)
        elif setup == "identity":
            lines[entry["number"]] = DonorLine(holder_tax_id=TAX_CODE)
        requests.append((await submitted(portal, body), reason))
    donor.lines, donor.unknown = lines, frozenset(unknown)
    clock.advance(days=1)
    assert await sync(harness, clock) == len(REFUSALS)
    for rid, reason in requests:
        request = await portal.get(rid)
        assert (request["state"], request["reject_reason"]) == ("rejected", reason)
        timeline = (
            await portal.client.get(f"{portal.base}/{rid}/timeline", headers=portal.headers)
        ).json()
        assert timeline[-1]["reason"] == reason and timeline[-1]["actor"] == "donor:simulated"


async def test_wrong_check_character_is_a_warning_at_creation(portal: Portal) -> None:
    body = portal.single()
    code = body["numbers"][0]["migration_code"]
    body["numbers"][0]["migration_code"] = code[:-1] + ("A" if code[-1] != "A" else "B")
    created = await portal.create(body)
    assert any("check character" in w for w in created["warnings"])


async def test_donor_reschedules_once(
    portal: Portal, harness: ServiceHarness, clock: FakeClock
) -> None:
    body = portal.single()
    donor_of(harness).lines = {body["numbers"][0]["number"]: DonorLine(reschedule_by=3)}
    rid = await submitted(portal, body)
    for _ in range(2):
        clock.advance(days=1)
        await sync(harness, clock)
    scheduled = await portal.get(rid)
    assert scheduled["state"] == "scheduled" and scheduled["expected_completion"] == "2026-10-05"
    clock.advance(days=12)  # Monday 5 October
    assert await sync(harness, clock) == 1
    moved = await portal.get(rid)
    assert moved["state"] == "scheduled" and moved["expected_completion"] == "2026-10-08"
    clock.advance(days=3)
    assert await sync(harness, clock) == 1
    assert (await portal.get(rid))["state"] == "completed"


async def test_the_sync_loop_runs_in_the_service(clock: FakeClock) -> None:
    async with service_under_test(
        partial(create_app, clock=clock),
        Settings,
        db_name="test_portability_loop",
        donor_poll_seconds=0.2,
    ) as harness:
        tenant = await harness.add_tenant("rossi-roma")
        portal = Portal(
            harness=harness,
            slug=tenant.slug,
            tenant_id=tenant.tenant_id,
            headers=harness.mint.headers("tenant_admin", tenant_id=tenant.tenant_id),
            operator=harness.mint.headers("operator"),
        )
        rid = await submitted(portal)
        for state in ("taken_in_charge", "scheduled"):
            clock.advance(days=1)

            async def reached(state: str = state) -> bool:
                return (await portal.get(rid))["state"] == state

            await until(reached, timeout=20, message=f"the loop moved the port to {state}")
