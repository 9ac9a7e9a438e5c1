"""Calls through the real platform (issue 7): sipp phones registered with the demo
credentials on SIP 5060, the registrar asking the real routing and rating, a sipp
carrier on CARRIER_URI (127.0.0.1:5080), events on the real exchange."""

import asyncio
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from centralino_proto.testing import BusProbe

from .conftest import GATEWAY, ROOT

REGISTRAR_SIPP = ROOT / "services/registrar/tests/sipp"
OWN_SIPP = Path(__file__).parent / "sipp"
SIP = "127.0.0.1:5060"
CARRIER_PORT = 5080


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def phone_row(extension: str, realm: str) -> list[str]:
    return [extension, realm, f"[authentication username={extension} password=secret{extension}]"]


async def sipp(
    scenario: Path, rows: list[list[str]], tmp: Path, *, port: int | None = None
) -> None:
    """Runs one sipp scenario against the registrar; fails the test unless every call passed."""
    csv = tmp / f"{scenario.stem}-{port or 'uac'}.csv"
    csv.write_text("SEQUENTIAL\n" + "".join(";".join(r) + "\n" for r in rows))
    proc = await asyncio.create_subprocess_exec(
        "sipp",
        SIP,
        "-sf",
        str(scenario),
        "-inf",
        str(csv),
        "-i",
        "127.0.0.1",
        "-p",
        str(port or free_port()),
        "-m",
        str(len(rows)),
        "-timeout",
        "30s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        cwd=tmp,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    errors = "".join(p.read_text()[-2000:] for p in tmp.glob("*errors.log"))
    assert proc.returncode == 0, f"{scenario.name}: {err.decode()[-1500:]} {errors}"


async def answering_phone(
    extension: str,
    realm: str,
    tmp: Path,
    operator: dict[str, str],
    scenario: Path = REGISTRAR_SIPP / "call_uas.xml",
) -> asyncio.subprocess.Process:
    """Registers a demo extension from a port, then takes one call there (a sipp UAS:
    call_uas answers, call_uas_ring only rings, ctd_phone answers a click-to-dial)."""
    # Bindings outlive a restart: drop those an earlier run left, so only this phone rings.
    tenant = realm.split(".")[0]
    cleared = httpx.delete(
        f"{GATEWAY}/v1/tenants/{tenant}/line-status/{extension}", headers=operator
    )
    assert cleared.status_code in (204, 404), cleared.text
    port = free_port()
    await sipp(REGISTRAR_SIPP / "register_auth.xml", [phone_row(extension, realm)], tmp, port=port)
    return await uas(port, tmp, scenario)


async def uas(
    port: int, tmp: Path, scenario: Path = REGISTRAR_SIPP / "call_uas.xml"
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "sipp",
        "-sf",
        str(scenario),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-m",
        "1",
        "-timeout",
        "30s",
        "-timeout_error",
        "-nostdin",
        cwd=tmp,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def answered(proc: asyncio.subprocess.Process) -> None:
    _, err = await asyncio.wait_for(proc.communicate(), 40)
    assert proc.returncode == 0, err.decode()[-1500:]


def call_row(caller: str, digits: str, realm: str) -> list[str]:
    return [digits, realm, f"[authentication username={caller} password=secret{caller}]", caller]


@pytest.fixture
async def bus(platform: None) -> AsyncIterator[BusProbe]:
    async with BusProbe("centralino.events", ["call.*", "cdr.rated"]) as probe:
        yield probe


def ended_by(bus: BusProbe, caller: str, callee_part: str) -> list[Any]:
    return [
        e
        for e in bus.of_type("call.ended")
        if e.data.caller.endswith(caller) and callee_part in e.data.callee
    ]


def of_call(bus: BusProbe, event_type: str, call_id: str) -> list[Any]:
    return [e for e in bus.of_type(event_type) if e.data.call_id == call_id]


def click_to_dial(operator: dict[str, str], extension: str, destination: str) -> str:
    """Asks the gateway to ring a bellavista room and then call the destination."""
    response = httpx.post(
        f"{GATEWAY}/v1/tenants/bellavista/calls",
        headers=operator,
        json={"extension": extension, "destination": destination},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["call_id"])


async def wait_for(predicate: Any, timeout: float = 30) -> Any:
    for _ in range(int(timeout * 10)):
        if result := predicate():
            return result
        await asyncio.sleep(0.1)
    raise AssertionError("not seen on the bus in time")


async def test_room_101_calls_room_102(
    bus: BusProbe, operator: dict[str, str], tmp_path: Path
) -> None:
    realm = "bellavista.centralino.test"
    callee = await answering_phone("102", realm, tmp_path, operator)
    await sipp(REGISTRAR_SIPP / "call_uac.xml", [call_row("101", "102", realm)], tmp_path)
    await answered(callee)
    [ended] = await wait_for(lambda: ended_by(bus, "101", "102"))
    assert ended.data.disposition == "answered" and ended.data.call_class == "internal"
    cdr = await wait_for(
        lambda: [e for e in bus.of_type("cdr.rated") if e.data.call_id == ended.data.call_id]
    )
    assert cdr[0].data.cost == Decimal(0), "internal calls are free"
    await asyncio.sleep(1)
    assert len([e for e in bus.of_type("call.ended") if e.data.call_id == ended.data.call_id]) == 1


async def test_room_101_may_not_call_abroad(bus: BusProbe, tmp_path: Path) -> None:
    realm = "bellavista.centralino.test"
    await sipp(
        OWN_SIPP / "call_refused_403.xml", [call_row("101", "00551187654321", realm)], tmp_path
    )
    [ended] = await wait_for(lambda: ended_by(bus, "101", "551187654321"))
    assert ended.data.disposition == "rejected"


async def test_room_106_calls_brazil_through_the_carrier_and_is_billed_with_markup(
    bus: BusProbe, operator: dict[str, str], tmp_path: Path
) -> None:
    carrier = await uas(CARRIER_PORT, tmp_path)
    realm = "bellavista.centralino.test"
    await sipp(
        REGISTRAR_SIPP / "call_uac.xml", [call_row("106", "00551187654321", realm)], tmp_path
    )
    await answered(carrier)
    [ended] = await wait_for(lambda: ended_by(bus, "106", "+551187654321"))
    assert ended.data.call_class == "international" and ended.data.disposition == "answered"
    [cdr] = await wait_for(
        lambda: [e for e in bus.of_type("cdr.rated") if e.data.call_id == ended.data.call_id]
    )
    seconds = cdr.data.billable_seconds - cdr.data.bundle_seconds
    assert cdr.data.rate == Decimal("0.0128")
    assert cdr.data.cost == (Decimal(seconds) / 60 * Decimal("0.0128")).quantize(
        Decimal("0.000001")
    )
    assert cdr.data.station_price == (cdr.data.price * Decimal("1.30")).quantize(
        Decimal("0.000001")
    )
    spend = httpx.get(f"{GATEWAY}/v1/tenants/bellavista/stations/106", headers=operator)
    assert spend.status_code == 200, spend.text
    assert Decimal(spend.json()["station_price"]) >= cdr.data.station_price


async def test_emergency_goes_through_from_any_room(bus: BusProbe, tmp_path: Path) -> None:
    carrier = await uas(CARRIER_PORT, tmp_path)
    await sipp(
        REGISTRAR_SIPP / "call_uac.xml",
        [call_row("101", "112", "bellavista.centralino.test")],
        tmp_path,
    )
    await answered(carrier)
    [ended] = await wait_for(lambda: ended_by(bus, "101", "112"))
    assert ended.data.call_class == "emergency" and ended.data.disposition == "answered"


async def test_milan_407_dials_1409_and_reaches_rome_409(
    bus: BusProbe, operator: dict[str, str], tmp_path: Path
) -> None:
    callee = await answering_phone("409", "rossi-roma.centralino.test", tmp_path, operator)
    await sipp(
        REGISTRAR_SIPP / "call_uac.xml",
        [call_row("407", "1409", "rossi-milano.centralino.test")],
        tmp_path,
    )
    await answered(callee)
    [ended] = await wait_for(lambda: ended_by(bus, "407", "409"))
    assert ended.data.call_class == "inter_company" and ended.data.disposition == "answered"


async def test_an_unknown_extension_gets_404(bus: BusProbe, tmp_path: Path) -> None:
    realm = "bellavista.centralino.test"
    await sipp(OWN_SIPP / "call_refused_404.xml", [call_row("101", "199", realm)], tmp_path)
    [ended] = await wait_for(lambda: ended_by(bus, "101", "199"))
    assert ended.data.disposition == "rejected"


async def test_a_busy_room_forwards_to_another_as_its_dial_plan_says(
    bus: BusProbe, operator: dict[str, str], tmp_path: Path
) -> None:
    realm = "bellavista.centralino.test"
    forwarding = f"{GATEWAY}/v1/tenants/bellavista/extensions/104/forwarding"
    set_rule = httpx.patch(
        forwarding, headers=operator, json={"busy": {"kind": "extension", "extension": "103"}}
    )
    assert set_rule.status_code == 200, set_rule.text
    try:
        for extension in ("104", "103"):
            cleared = httpx.delete(
                f"{GATEWAY}/v1/tenants/bellavista/line-status/{extension}", headers=operator
            )
            assert cleared.status_code in (204, 404), cleared.text
        busy_port, backup_port = free_port(), free_port()
        await sipp(
            REGISTRAR_SIPP / "register_auth.xml",
            [phone_row("104", realm)],
            tmp_path,
            port=busy_port,
        )
        await sipp(
            REGISTRAR_SIPP / "register_auth.xml",
            [phone_row("103", realm)],
            tmp_path,
            port=backup_port,
        )
        busy = await uas(busy_port, tmp_path, REGISTRAR_SIPP / "call_uas_busy.xml")
        backup = await uas(backup_port, tmp_path)
        await sipp(REGISTRAR_SIPP / "call_uac.xml", [call_row("101", "104", realm)], tmp_path)
        await answered(busy)
        await answered(backup)
        [ended] = await wait_for(lambda: ended_by(bus, "101", "103"))
        assert ended.data.disposition == "answered" and ended.data.forwarded_from == "104"
    finally:
        httpx.delete(forwarding, headers=operator)


async def test_a_room_that_does_not_answer_forwards_after_its_timeout(
    bus: BusProbe, operator: dict[str, str], tmp_path: Path
) -> None:
    realm = "bellavista.centralino.test"
    forwarding = f"{GATEWAY}/v1/tenants/bellavista/extensions/105/forwarding"
    set_rule = httpx.patch(
        forwarding,
        headers=operator,
        json={"no_answer": {"kind": "extension", "extension": "103", "after_seconds": 5}},
    )
    assert set_rule.status_code == 200, set_rule.text
    try:
        # 105 only rings (and takes the CANCEL); 103 answers the forwarded call.
        silent = await answering_phone(
            "105", realm, tmp_path, operator, REGISTRAR_SIPP / "call_uas_ring.xml"
        )
        backup = await answering_phone("103", realm, tmp_path, operator)
        await sipp(REGISTRAR_SIPP / "call_uac.xml", [call_row("101", "105", realm)], tmp_path)
        await answered(silent)
        await answered(backup)
        [ended] = await wait_for(lambda: ended_by(bus, "101", "103"))
        assert ended.data.disposition == "answered" and ended.data.forwarded_from == "105"
        # 105 rang for its own 5 s, not Timer C: the rule's timeout came from routing.
        rang = (ended.data.answered_at - ended.data.started_at).total_seconds()
        assert 4.5 <= rang <= 15, rang
        await asyncio.sleep(1)
        assert len(of_call(bus, "call.ended", ended.data.call_id)) == 1
    finally:
        httpx.delete(forwarding, headers=operator)


LIMIT = 4  # seconds of credit left for the prepaid call


async def test_a_prepaid_call_is_cut_with_bye_to_both_sides_when_its_credit_runs_out(
    bus: BusProbe, operator: dict[str, str], tmp_path: Path
) -> None:
    balance_url = f"{GATEWAY}/v1/tenants/bellavista/balance"
    top_ups = f"{GATEWAY}/v1/tenants/bellavista/top-ups"

    def settled() -> dict[str, Any] | None:
        # Earlier calls' reservations must be settled, or they would free credit mid-test.
        account: dict[str, Any] = httpx.get(balance_url, headers=operator).json()
        return account if Decimal(account["reserved"]) == 0 else None

    account = await wait_for(settled)
    # Brazil is 0.0128/min, per second: leave LIMIT and a half seconds of it.
    markup = Decimal(account["reseller_markup_percent"])
    per_second = Decimal("0.0128") / 60 * (100 + markup) / 100
    credit = (per_second * (LIMIT + Decimal("0.5"))).quantize(Decimal("0.000001"))
    taken = Decimal(account["available"]) - credit
    assert taken > 0, account
    cut = httpx.post(
        top_ups,
        headers=operator,
        json={
            "amount": str(-taken),
            "kind": "adjustment",
            "reference": f"test-prepaid-{uuid.uuid4().hex}",
            "description": "test: leave a few seconds of credit",
        },
    )
    assert cut.status_code == 201, cut.text
    try:
        carrier = await uas(CARRIER_PORT, tmp_path)
        realm = "bellavista.centralino.test"
        # call_uac_cut never hangs up: it passes only when the registrar's BYE comes,
        # and the carrier's call_uas only when a BYE reaches it too.
        await sipp(
            REGISTRAR_SIPP / "call_uac_cut.xml",
            [call_row("106", "00551133334444", realm)],
            tmp_path,
        )
        await answered(carrier)
        [ended] = await wait_for(lambda: ended_by(bus, "106", "+551133334444"))
        assert ended.data.disposition == "answered" and ended.data.direction == "outbound"
        assert LIMIT <= ended.data.billable_seconds <= LIMIT + 2, ended.data.billable_seconds
        [cdr] = await wait_for(lambda: of_call(bus, "cdr.rated", ended.data.call_id))
        # Rating billed what it authorized: the credit bought exactly LIMIT seconds.
        assert cdr.data.billable_seconds == LIMIT
    finally:
        restored = httpx.post(
            top_ups,
            headers=operator,
            json={
                "amount": str(taken),
                "kind": "adjustment",
                "reference": f"test-prepaid-{uuid.uuid4().hex}",
                "description": "test: credit back",
            },
        )
        assert restored.status_code == 201, restored.text


@pytest.mark.parametrize(
    ("extension", "destination", "callee", "direction"),
    [
        ("107", "108", "108", "internal"),
        ("106", "00551187654321", "+551187654321", "outbound"),
    ],
    ids=["room", "carrier"],
)
async def test_click_to_dial_rings_the_room_then_calls_the_destination(
    bus: BusProbe,
    operator: dict[str, str],
    tmp_path: Path,
    extension: str,
    destination: str,
    callee: str,
    direction: str,
) -> None:
    realm = "bellavista.centralino.test"
    # The room's phone answers first (its 200 carries the offer), then the destination.
    phone = await answering_phone(
        extension, realm, tmp_path, operator, REGISTRAR_SIPP / "ctd_phone.xml"
    )
    if direction == "internal":
        far = await answering_phone(destination, realm, tmp_path, operator)
    else:
        far = await uas(CARRIER_PORT, tmp_path)
    call_id = click_to_dial(operator, extension, destination)
    # ctd_phone hangs up after the ACK with the answer; the registrar BYEs the far side.
    await answered(phone)
    await answered(far)
    [ended] = await wait_for(lambda: of_call(bus, "call.ended", call_id))
    [started] = of_call(bus, "call.started", call_id)
    [answer] = await wait_for(lambda: of_call(bus, "call.answered", call_id))
    assert started.data.extension == extension and started.data.callee == callee
    assert ended.data.disposition == "answered" and ended.data.extension == extension
    assert ended.data.callee == callee and ended.data.direction == direction
    assert ended.data.answered_at == answer.data.answered_at
    if direction == "outbound":
        # Real rating authorized and billed it as a call of the room.
        [cdr] = await wait_for(lambda: of_call(bus, "cdr.rated", call_id))
        assert cdr.data.extension == extension and cdr.data.rate == Decimal("0.0128")


async def test_a_click_to_dial_leg_keeps_its_session_and_knows_its_dialog(
    bus: BusProbe, operator: dict[str, str], tmp_path: Path
) -> None:
    realm = "bellavista.centralino.test"
    # Room 104's phone puts the call on hold (UPDATE: 488, no media to re-offer through),
    # sends an UPDATE with another tag (481), then hangs up; room 110 is the destination.
    phone = await answering_phone("104", realm, tmp_path, operator, OWN_SIPP / "ctd_phone_hold.xml")
    far = await answering_phone("110", realm, tmp_path, operator)
    call_id = click_to_dial(operator, "104", "110")
    await answered(phone)
    await answered(far)
    [ended] = await wait_for(lambda: of_call(bus, "call.ended", call_id))
    assert ended.data.disposition == "answered"


async def test_a_click_to_dial_room_that_hangs_up_first_cancels_the_ringing_destination(
    bus: BusProbe, operator: dict[str, str], tmp_path: Path
) -> None:
    realm = "bellavista.centralino.test"
    # Room 107's phone answers, then hangs up 2 s later while room 108 still rings;
    # call_uas_ring passes only when a CANCEL reaches 108 (and its 487 gets the ACK).
    phone = await answering_phone(
        "107", realm, tmp_path, operator, OWN_SIPP / "ctd_phone_hangup.xml"
    )
    far = await answering_phone(
        "108", realm, tmp_path, operator, REGISTRAR_SIPP / "call_uas_ring.xml"
    )
    call_id = click_to_dial(operator, "107", "108")
    await answered(phone)
    await answered(far)
    [ended] = await wait_for(lambda: of_call(bus, "call.ended", call_id))
    assert ended.data.disposition == "cancelled", ended.data.disposition
    assert ended.data.answered_at is None and ended.data.billable_seconds == 0
    assert not of_call(bus, "call.answered", call_id)
    # Neither the phone's BYE nor the destination's 487 ends it a second time.
    await asyncio.sleep(3)
    assert len(of_call(bus, "call.ended", call_id)) == 1


async def test_click_to_dial_refusals_are_problems_not_calls(
    operator: dict[str, str], tmp_path: Path
) -> None:
    calls = f"{GATEWAY}/v1/tenants/bellavista/calls"
    # Room 101 has a phone, but may not call abroad (its dial plan, from routing).
    realm = "bellavista.centralino.test"
    await sipp(REGISTRAR_SIPP / "register_auth.xml", [phone_row("101", realm)], tmp_path)
    abroad = httpx.post(
        calls, headers=operator, json={"extension": "101", "destination": "00551187654321"}
    )
    assert abroad.status_code == 403, abroad.text
    cleared = httpx.delete(f"{GATEWAY}/v1/tenants/bellavista/line-status/109", headers=operator)
    assert cleared.status_code in (204, 404), cleared.text
    nobody = httpx.post(calls, headers=operator, json={"extension": "109", "destination": "102"})
    assert nobody.status_code == 409, nobody.text
    bad = httpx.post(calls, headers=operator, json={"extension": "1x", "destination": "0612"})
    assert bad.status_code == 422, bad.text


async def restart_registrar() -> None:
    """Stops the registrar of `make up` and starts a new process, as an upgrade would."""
    before = (ROOT / ".run/registrar.pid").read_text()
    restart = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "scripts/devctl.py"),
        "restart",
        "registrar",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(restart.communicate(), 90)
    assert restart.returncode == 0, out.decode()[-2000:]
    assert (ROOT / ".run/registrar.pid").read_text() != before


async def test_registrar_restart_during_a_call_still_yields_one_call_ended(
    bus: BusProbe, operator: dict[str, str], tmp_path: Path
) -> None:
    realm = "bellavista.centralino.test"
    callee = await answering_phone("102", realm, tmp_path, operator)
    # 101 holds the call 8 s before its BYE; the registrar restarts meanwhile.
    phone = asyncio.ensure_future(
        sipp(REGISTRAR_SIPP / "call_uac_long.xml", [call_row("101", "102", realm)], tmp_path)
    )
    [started] = await wait_for(
        lambda: [
            e
            for e in bus.of_type("call.started")
            if e.data.caller.endswith("101") and e.data.callee == "102"
        ]
    )
    call_id = started.data.call_id
    await wait_for(lambda: of_call(bus, "call.answered", call_id))
    await restart_registrar()
    # The new process knows the dialog: 101's BYE gets its 200 and reaches 102.
    await asyncio.wait_for(phone, 60)
    await answered(callee)
    [ended] = await wait_for(lambda: of_call(bus, "call.ended", call_id))
    assert ended.data.disposition == "answered" and ended.data.billable_seconds >= 6
    # Neither the old process on its way out nor the new one ends it a second time.
    await asyncio.sleep(3)
    assert len(of_call(bus, "call.ended", call_id)) == 1


async def test_registrar_restart_during_a_click_to_dial_call_still_yields_one_call_ended(
    bus: BusProbe, operator: dict[str, str], tmp_path: Path
) -> None:
    realm = "bellavista.centralino.test"
    # Room 107's phone holds the call 8 s before its BYE; the registrar restarts meanwhile.
    phone = await answering_phone("107", realm, tmp_path, operator, OWN_SIPP / "ctd_phone_long.xml")
    far = await answering_phone("108", realm, tmp_path, operator)
    call_id = click_to_dial(operator, "107", "108")
    await wait_for(lambda: of_call(bus, "call.answered", call_id))
    await restart_registrar()
    # The new process knows both dialogs: 107's BYE gets its 200 and a BYE reaches 108.
    await answered(phone)
    await answered(far)
    [ended] = await wait_for(lambda: of_call(bus, "call.ended", call_id))
    assert ended.data.disposition == "answered" and ended.data.billable_seconds >= 6
    await asyncio.sleep(3)
    assert len(of_call(bus, "call.ended", call_id)) == 1
