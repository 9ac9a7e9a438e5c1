"""Call control through the proxy with sipp phones (issue 7, first part).

Routing and rating are reached over their HTTP contracts (docs/DEVELOPING.md); a small
app in this file answers those two contracts for the numbers these tests dial. What the
real platform shows already (no-answer forwarding, the prepaid cut, click-to-dial, a
restart mid-call) is shown there only, in tests/test_calls.py; here stays what needs the
registrar's own knobs or is not shown there (forking, NAT, Timer B's 408, inbound from the
carrier, forwards across companies and to a mobile).
"""

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from centralino_proto.testing import ServiceHarness

from .conftest import SIPP_DIR, Phone, Provision, Sipp, free_port
from .test_sip_behaviour import _sip


def contract_app(
    tenant_id: uuid.UUID,
    *,
    peer: uuid.UUID | None = None,
    peer_busy_to: str | None = None,
) -> FastAPI:
    """POST /v1/route and POST /v1/authorize as the contract describes them."""
    app = FastAPI()
    seen: dict[str, list[dict[str, Any]]] = {"route": [], "authorize": []}
    app.state.seen = seen

    @app.post("/v1/route")
    async def route(body: dict[str, Any]) -> dict[str, Any]:
        seen["route"].append(body)
        digits = body["digits"]
        base = {"tenant_id": str(tenant_id), "extension": body["extension"], "failure_rules": {}}
        rules = {
            # 104 is busy -> 103.
            "104": {"busy": {"kind": "extension", "extension": "103", "e164": None}},
        }
        if body.get("inbound_did") == "+39062022600":
            return {
                "tenant_id": str(tenant_id),
                "extension": "102",
                "failure_rules": {},
                "action": "extension",
                "class": "internal",
                "e164": "+39062022600",
                "targets": [{"tenant_id": str(tenant_id), "extension": "102"}],
            }
        if body.get("forwarded_from"):
            # A forwarded leg to the user's mobile, as an outbound call of that station.
            return {**base, "action": "pstn", "class": "mobile", "e164": digits, "targets": []}
        if digits == "108":
            # Nobody registered on 108: the unavailable rule sends it to a mobile.
            return {
                **base,
                "action": "extension",
                "class": "internal",
                "e164": None,
                "targets": [{"tenant_id": str(tenant_id), "extension": "108"}],
                "failure_rules": {
                    "unavailable": {"kind": "external", "e164": "+393351234567"},
                    "busy": None,
                    "no_answer": None,
                },
            }
        if digits == "1409" and peer is not None:
            # Inter-company digit 1: Milan reaches Rome's 409 (a call of Milan's station).
            return {
                **base,
                "action": "inter_company",
                "class": "inter_company",
                "e164": None,
                "targets": [{"tenant_id": str(peer), "extension": "409"}],
                # The called station's own rule: its target is in the called tenant.
                "failure_rules": {
                    "busy": {"kind": "extension", "extension": peer_busy_to, "tenant_id": str(peer)}
                }
                if peer_busy_to
                else {},
            }
        if digits in rules:
            return {
                **base,
                "action": "extension",
                "class": "internal",
                "e164": None,
                "targets": [{"tenant_id": str(tenant_id), "extension": digits}],
                "failure_rules": rules[digits],
            }
        if digits in ("102", "103"):
            return {
                **base,
                "action": "extension",
                "class": "internal",
                "e164": None,
                "targets": [{"tenant_id": str(tenant_id), "extension": digits}],
            }
        if digits.startswith("0055") and body["extension"] == "106":
            return {
                **base,
                "action": "pstn",
                "class": "international",
                "e164": "+" + digits[2:],
                "targets": [],
            }
        if digits == "112":
            return {**base, "action": "pstn", "class": "emergency", "e164": "112", "targets": []}
        if digits.startswith("00"):
            return {
                **base,
                "action": "reject",
                "class": "international",
                "e164": "+" + digits[2:],
                "targets": [],
                "reject": {"status": 403, "reason": "international calls not permitted"},
            }
        return {
            **base,
            "action": "reject",
            "class": None,
            "e164": None,
            "targets": [],
            "reject": {"status": 404, "reason": "unknown extension"},
        }

    @app.post("/v1/authorize")
    async def authorize(body: dict[str, Any]) -> dict[str, Any]:
        seen["authorize"].append(body)
        return {"allowed": True, "max_seconds": None, "reason": None}

    return app


def plug(harness: ServiceHarness, app: FastAPI) -> None:
    calls = _sip(harness).calls
    calls.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    calls.settings.routing_url = "http://routing"  # type: ignore[attr-defined]
    calls.settings.rating_url = "http://rating"  # type: ignore[attr-defined]

    async def service_headers() -> dict[str, str]:
        return harness.mint.headers("service")

    calls.auth_headers = service_headers


async def uas(
    harness: ServiceHarness,
    sipp: Sipp,
    callee: Phone | None,
    tmp_path: Path,
    port: int | None = None,
    scenario: str = "call_uas",
) -> asyncio.subprocess.Process:
    """A sipp UAS that answers one call: a phone (registered first from its port) or the carrier."""
    port = port or free_port()
    if callee is not None:
        registered = await sipp("register_auth", [callee.row()], local_port=port)
        assert registered.returncode == 0, registered.errors
    return await asyncio.create_subprocess_exec(
        "sipp",
        "-sf",
        str(SIPP_DIR / f"{scenario}.xml"),
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
        "-trace_err",
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


def caller_row(caller: Phone, digits: str) -> list[str]:
    return [
        digits,
        caller.realm,
        f"[authentication username={caller.username} password={caller.password}]",
        caller.extension,
    ]


async def test_room_101_calls_room_102(
    harness: ServiceHarness, provision: Provision, sipp: Sipp, tmp_path: Path
) -> None:
    caller = await provision(extension="101")
    callee = await provision(extension="102")
    stub = contract_app(caller.tenant_id)
    plug(harness, stub)
    callee_sipp = await uas(harness, sipp, callee, tmp_path)
    async with harness.probe("call.started", "call.answered", "call.ended") as probe:
        result = await sipp("call_uac", [caller_row(caller, "102")])
        assert result.returncode == 0, result.errors or result.stderr[-2000:]
        _, err = await asyncio.wait_for(callee_sipp.communicate(), 30)
        assert callee_sipp.returncode == 0, err.decode()[-2000:]
        [ended] = await probe.wait_for("call.ended")
        await probe.wait_for("call.answered")
        await harness.relayed()  # a duplicate would be published by now
        await asyncio.sleep(0.5)
        assert len(probe.of_type("call.ended")) == 1
    assert ended.data.disposition == "answered"
    assert ended.data.call_class == "internal" and ended.data.direction == "internal"
    assert ended.data.caller == "101" and ended.data.extension == "101"
    assert 1 <= ended.data.billable_seconds <= 3
    assert stub.state.seen["route"][0]["digits"] == "102"
    assert stub.state.seen["authorize"] == []  # internal calls are not rated


@pytest.mark.parametrize(("digits", "status"), [("0055119999", "403"), ("999", "404")])
async def test_refused_calls(
    harness: ServiceHarness,
    provision: Provision,
    sipp: Sipp,
    tmp_path: Path,
    digits: str,
    status: str,
) -> None:
    caller = await provision(extension="101")
    plug(harness, contract_app(caller.tenant_id))
    async with harness.probe("call.ended") as probe:
        result = await sipp("call_uac_rejected", [caller_row(caller, digits)], extra=["-trace_msg"])
        assert result.returncode == 0, result.errors or result.stderr[-2000:]
        [ended] = await probe.wait_for("call.ended")
    trace = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*_messages.log"))
    assert f"SIP/2.0 {status} " in trace
    assert ended.data.disposition == "rejected"


async def test_emergency_goes_through_unrated(
    harness: ServiceHarness, provision: Provision, sipp: Sipp, tmp_path: Path
) -> None:
    caller = await provision(extension="101")
    stub = contract_app(caller.tenant_id)
    plug(harness, stub)
    carrier_port = free_port()
    _sip(harness).calls.settings.carrier_uri = f"sip:127.0.0.1:{carrier_port}"  # type: ignore[attr-defined]
    carrier = await uas(harness, sipp, None, tmp_path, carrier_port)
    async with harness.probe("call.ended") as probe:
        result = await sipp("call_uac", [caller_row(caller, "112")])
        assert result.returncode == 0, result.errors or result.stderr[-2000:]
        _, err = await asyncio.wait_for(carrier.communicate(), 30)
        assert carrier.returncode == 0, err.decode()[-2000:]
        [ended] = await probe.wait_for("call.ended")
    assert stub.state.seen["authorize"] == []
    assert ended.data.call_class == "emergency" and ended.data.disposition == "answered"


async def _finished(*phones: asyncio.subprocess.Process) -> None:
    for phone in phones:
        _, err = await asyncio.wait_for(phone.communicate(), 40)
        assert phone.returncode == 0, err.decode()[-2000:]


async def call_and_wait(
    harness: ServiceHarness,
    sipp: Sipp,
    caller: Phone,
    digits: str,
    *phones: asyncio.subprocess.Process,
) -> Any:
    """Places one call with sipp, lets the answering phones finish, returns its one call.ended."""
    async with harness.probe("call.ended") as probe:
        result = await sipp("call_uac", [caller_row(caller, digits)])
        assert result.returncode == 0, result.errors or result.stderr[-2000:]
        await _finished(*phones)
        [ended] = await probe.wait_for("call.ended")
    return ended


async def test_forking_first_answer_wins_and_the_other_branch_is_cancelled(
    harness: ServiceHarness, provision: Provision, sipp: Sipp, tmp_path: Path
) -> None:
    caller = await provision(extension="101")
    callee = await provision(extension="102")
    plug(harness, contract_app(caller.tenant_id))
    # Two contacts of 102: a desk phone that answers, a softphone that only rings.
    answering = await uas(harness, sipp, callee, tmp_path)
    ringing = await uas(harness, sipp, callee, tmp_path, scenario="call_uas_ring")
    assert len(_sip(harness).location.bindings((caller.tenant_id, "102"))) == 2
    ended = await call_and_wait(harness, sipp, caller, "102", answering, ringing)
    assert ended.data.disposition == "answered"


async def test_busy_forwards_to_another_extension(
    harness: ServiceHarness, provision: Provision, sipp: Sipp, tmp_path: Path
) -> None:
    caller = await provision(extension="101")
    busy = await provision(extension="104")
    busy_phone = await uas(harness, sipp, busy, tmp_path, scenario="call_uas_busy")
    backup = await uas(harness, sipp, await provision(extension="103"), tmp_path)
    plug(harness, contract_app(caller.tenant_id))
    ended = await call_and_wait(harness, sipp, caller, "104", busy_phone, backup)
    assert ended.data.disposition == "answered"
    assert ended.data.forwarded_from == "104" and ended.data.callee == "103"


async def test_inbound_call_from_the_carrier_by_did(
    harness: ServiceHarness, provision: Provision, sipp: Sipp, tmp_path: Path
) -> None:
    callee = await provision(extension="102")
    stub = contract_app(callee.tenant_id)
    plug(harness, stub)
    carrier_port = free_port()
    _sip(harness).calls.settings.carrier_uri = f"sip:127.0.0.1:{carrier_port}"  # type: ignore[attr-defined]
    phone = await uas(harness, sipp, callee, tmp_path)
    async with harness.probe("call.ended") as probe:
        result = await sipp(
            "call_carrier_uac",
            [["39062022600", "carrier.example", "-", "+393351234567"]],
            local_port=carrier_port,
        )
        assert result.returncode == 0, result.errors or result.stderr[-2000:]
        await _finished(phone)
        [ended] = await probe.wait_for("call.ended")
    assert stub.state.seen["route"][0]["inbound_did"] == "+39062022600"
    assert ended.data.direction == "inbound" and ended.data.extension == "102"
    assert ended.data.caller == "+393351234567" and ended.data.disposition == "answered"


async def test_a_contact_that_never_answers_ends_as_408(
    harness: ServiceHarness, provision: Provision, sipp: Sipp, tmp_path: Path
) -> None:
    caller = await provision(extension="101")
    callee = await provision(extension="102")
    plug(harness, contract_app(caller.tenant_id))
    harness.settings.sip_t1 = 0.05  # type: ignore[attr-defined]
    # 102 registers a contact where nothing listens.
    registered = await sipp("register_auth", [callee.row()])
    assert registered.returncode == 0
    async with harness.probe("call.ended") as probe:
        result = await sipp("call_uac_rejected", [caller_row(caller, "102")], extra=["-trace_msg"])
        assert result.returncode == 0, result.errors or result.stderr[-2000:]
        [ended] = await probe.wait_for("call.ended")
    trace = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*_messages.log"))
    assert "SIP/2.0 408 " in trace
    assert ended.data.disposition == "no_answer"


async def test_milan_407_dials_1409_and_reaches_rome_409(
    harness: ServiceHarness, provision: Provision, sipp: Sipp, tmp_path: Path
) -> None:
    milan = await provision("rossi-milano", extension="407")
    rome = await provision("rossi-roma", extension="409")
    plug(harness, contract_app(milan.tenant_id, peer=rome.tenant_id))
    phone = await uas(harness, sipp, rome, tmp_path)
    ended = await call_and_wait(harness, sipp, milan, "1409", phone)
    assert ended.data.call_class == "inter_company" and ended.data.disposition == "answered"
    assert ended.tenant_id == milan.tenant_id and ended.data.extension == "407"


async def test_an_inter_company_call_forwards_within_the_called_company(
    harness: ServiceHarness, provision: Provision, sipp: Sipp, tmp_path: Path
) -> None:
    milan = await provision("rossi-milano", extension="407")
    rome_409 = await provision("rossi-roma", extension="409")
    rome_400 = await provision("rossi-roma", extension="400")
    plug(harness, contract_app(milan.tenant_id, peer=rome_409.tenant_id, peer_busy_to="400"))
    busy_phone = await uas(harness, sipp, rome_409, tmp_path, scenario="call_uas_busy")
    operator = await uas(harness, sipp, rome_400, tmp_path)
    ended = await call_and_wait(harness, sipp, milan, "1409", busy_phone, operator)
    assert ended.data.disposition == "answered"
    assert ended.data.forwarded_from == "409" and ended.data.callee == "400"


async def test_a_phone_behind_nat_is_reached_at_its_source_address(
    harness: ServiceHarness, provision: Provision, sipp: Sipp
) -> None:
    from centralino_registrar.sip.transaction import make_response

    from .conftest import SipClient

    caller = await provision(extension="101")
    callee = await provision(extension="102")
    plug(harness, contract_app(caller.tenant_id))
    port = int(harness.settings.sip_port)  # type: ignore[attr-defined]
    async with SipClient(port) as phone:
        # The phone only knows its private address; the proxy sees the NAT's.
        private = "<sip:102@192.168.1.50:5060>"
        await phone.register_with_digest(
            user="102", realm=callee.realm, password="secret102", contact=private
        )
        call = asyncio.ensure_future(sipp("call_uac_rejected", [caller_row(caller, "102")]))
        invite = await phone.recv(timeout=20)
        assert invite.method == "INVITE" and invite.uri == "sip:102@192.168.1.50:5060"
        busy = make_response(
            invite, 480, "Temporarily Unavailable", source_ip="127.0.0.1", source_port=port
        )
        await phone.send(busy.encode())
        ack = await phone.recv()
        assert ack.method == "ACK"
        result = await asyncio.wait_for(call, 60)
    assert result.returncode == 0, result.errors or result.stderr[-2000:]


async def test_unavailable_forwards_to_a_mobile_through_the_carrier(
    harness: ServiceHarness, provision: Provision, sipp: Sipp, tmp_path: Path
) -> None:
    caller = await provision(extension="101")
    await provision(extension="108")  # a device, but nothing registered
    stub = contract_app(caller.tenant_id)
    plug(harness, stub)
    carrier_port = free_port()
    _sip(harness).calls.settings.carrier_uri = f"sip:127.0.0.1:{carrier_port}"  # type: ignore[attr-defined]
    carrier = await uas(harness, sipp, None, tmp_path, carrier_port)
    ended = await call_and_wait(harness, sipp, caller, "108", carrier)
    forwarded = stub.state.seen["route"][1]
    assert forwarded["forwarded_from"] == "108" and forwarded["extension"] == "108"
    [asked] = stub.state.seen["authorize"]
    assert asked["class"] == "mobile" and asked["extension"] == "108"
    assert ended.data.forwarded_from == "108" and ended.data.extension == "108"
    assert ended.data.callee == "+393351234567" and ended.data.call_class == "mobile"
    assert ended.data.disposition == "answered"


async def test_in_dialog_requests_outside_the_dialog_get_481(
    harness: ServiceHarness, provision: Provision, sipp: Sipp
) -> None:
    from centralino_registrar.sip.transaction import make_response

    from .conftest import SipClient

    caller = await provision(extension="101")
    callee = await provision(extension="102")
    plug(harness, contract_app(caller.tenant_id))
    port = int(harness.settings.sip_port)  # type: ignore[attr-defined]
    async with SipClient(port) as phone:
        await phone.register_with_digest(user="102", realm=callee.realm, password="secret102")
        call = asyncio.ensure_future(sipp("call_uac", [caller_row(caller, "102")]))
        invite = await phone.recv(timeout=20)
        routes = invite.all("record-route")
        ok = make_response(
            invite,
            200,
            "OK",
            source_ip="127.0.0.1",
            source_port=port,
            headers=[
                *(("record-route", r) for r in routes),
                ("contact", f"<sip:102@127.0.0.1:{phone.local_port}>"),
            ],
        )
        await phone.send(ok.encode())
        assert (await phone.recv()).method == "ACK"
        ours = (ok.get("to") or "").split(";tag=")[1]
        caller_contact = (invite.get("contact") or "").strip("<>")

        def request(method: str, tag: str, cseq: int) -> str:
            """A request of the callee towards the caller, through the proxy (its Route)."""
            return "\r\n".join(
                [
                    f"{method} {caller_contact} SIP/2.0",
                    f"Via: SIP/2.0/UDP 127.0.0.1:{phone.local_port};"
                    f"branch=z9hG4bK{uuid.uuid4().hex};rport",
                    *(f"Route: {r}" for r in routes),
                    "Max-Forwards: 70",
                    f"From: <sip:102@{callee.realm}>;tag={tag}",
                    f"To: {invite.get('from')}",
                    f"Call-ID: {invite.call_id}",
                    f"CSeq: {cseq} {method}",
                    f"Contact: <sip:102@127.0.0.1:{phone.local_port}>",
                    "Content-Length: 0",
                    "",
                    "",
                ]
            )

        # The call's Call-ID, but not its dialog (another To tag): not relayed to the caller.
        await phone.send(request("UPDATE", "not-this-dialog", 1))
        assert (await phone.recv()).status == 481
        bye = await phone.recv(timeout=10)
        assert bye.method == "BYE"
        done = make_response(bye, 200, "OK", source_ip="127.0.0.1", source_port=port)
        await phone.send(done.encode())
        result = await asyncio.wait_for(call, 60)
        assert result.returncode == 0, result.errors or result.stderr[-2000:]
        # The dialog is over: a re-INVITE with its own tags is not relayed any more.
        await phone.send(request("INVITE", ours, 2))
        assert (await phone.recv()).status == 481


async def test_an_unrated_call_nobody_hangs_up_ends_at_the_maximum_duration(
    harness: ServiceHarness, provision: Provision, sipp: Sipp, tmp_path: Path
) -> None:
    caller = await provision(extension="101")
    callee = await provision(extension="102")
    plug(harness, contract_app(caller.tenant_id))  # internal: rating gives no limit
    _sip(harness).calls.settings.sip_max_call_seconds = 3  # type: ignore[attr-defined]
    callee_sipp = await uas(harness, sipp, callee, tmp_path)
    async with harness.probe("call.ended") as probe:
        # Neither phone hangs up: call_uac_cut waits for a BYE, call_uas too.
        result = await sipp("call_uac_cut", [caller_row(caller, "102")], extra=["-trace_msg"])
        assert result.returncode == 0, result.errors or result.stderr[-2000:]
        _, err = await asyncio.wait_for(callee_sipp.communicate(), 30)
        assert callee_sipp.returncode == 0, err.decode()[-2000:]
        [ended] = await probe.wait_for("call.ended")
    assert ended.data.disposition == "answered" and ended.data.call_class == "internal"
    assert 3 <= ended.data.billable_seconds <= 4, ended.data.billable_seconds
    trace = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*_messages.log"))
    assert 'text="maximum call duration"' in trace


@pytest.mark.parametrize("answers", [False, True], ids=["phone_rings_on", "destination_rings_on"])
async def test_click_to_dial_gives_up_on_a_leg_that_never_answers(
    harness: ServiceHarness, provision: Provision, sipp: Sipp, tmp_path: Path, answers: bool
) -> None:
    user = await provision(extension="106")
    plug(harness, contract_app(user.tenant_id))
    calls = _sip(harness).calls
    calls.settings.sip_timer_c = 2  # type: ignore[attr-defined]
    carrier_port = free_port()
    calls.settings.carrier_uri = f"sip:127.0.0.1:{carrier_port}"  # type: ignore[attr-defined]
    # call_uas_ring passes only when the CANCEL comes; ctd_phone_dropped only on ACK and BYE.
    phone = await uas(
        harness, sipp, user, tmp_path, scenario="ctd_phone_dropped" if answers else "call_uas_ring"
    )
    far = await uas(harness, sipp, None, tmp_path, carrier_port, scenario="call_uas_ring")
    headers = harness.mint.headers("tenant_admin", tenant_id=user.tenant_id)
    async with harness.probe("call.ended") as probe:
        response = await harness.client.post(
            "/v1/tenants/bellavista/calls",
            json={"extension": "106", "destination": "00551133334444"},
            headers=headers,
        )
        assert response.status_code == 202, response.text
        [ended] = await probe.wait_for("call.ended", timeout=20)
        if answers:
            _, err = await asyncio.wait_for(far.communicate(), 30)
            assert far.returncode == 0, err.decode()[-2000:]
        else:
            far.kill()  # never reached: the phone did not answer
            await far.wait()
        _, err = await asyncio.wait_for(phone.communicate(), 30)
        assert phone.returncode == 0, err.decode()[-2000:]
    assert ended.data.call_id == response.json()["call_id"]
    assert ended.data.disposition == "no_answer" and ended.data.billable_seconds == 0
