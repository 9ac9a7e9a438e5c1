"""The dial-plan API and the decisions that follow from it: stations, forwarding,
day/night, IVR, links, bad input refused whole, events on the bus."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from centralino_proto.demo import BELLAVISTA, ROSSI_MILANO, ROSSI_ROMA, DemoTenant
from centralino_proto.testing import ServiceHarness

WORKDAY = "2026-11-25T10:00:00+01:00"  # Wednesday
EVENING = "2026-11-25T20:30:00+01:00"
SATURDAY = "2026-11-28T10:00:00+01:00"
CHRISTMAS = "2026-12-25T10:00:00+01:00"  # a Friday, Natale


def _admin(h: ServiceHarness, tenant: DemoTenant) -> dict[str, str]:
    return h.mint.headers("tenant_admin", tenant_id=tenant.tenant_id)


def _url(tenant: DemoTenant, path: str) -> str:
    return f"/v1/tenants/{tenant.slug}{path}"


def _problem(response: httpx.Response, status: int, title: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["title"] == title, body
    return body


async def test_disabled_station_calls_only_emergency_and_internal(
    demo: ServiceHarness, route: Any
) -> None:
    response = await demo.client.patch(
        _url(BELLAVISTA, "/extensions/107"),
        json={"enabled": False},
        headers=_admin(demo, BELLAVISTA),
    )
    assert response.status_code == 200 and response.json()["enabled"] is False
    call = {"tenant_id": str(BELLAVISTA.tenant_id), "extension": "107", "at": WORKDAY}
    emergency = await route(demo, **call, digits="112")
    assert (emergency["action"], emergency["class"]) == ("pstn", "emergency")
    for short in ("113", "115", "118"):
        assert (await route(demo, **call, digits=short))["class"] == "emergency"
    internal = await route(demo, **call, digits="100")
    assert internal["action"] == "extension"
    barred = await route(demo, **call, digits="0612345678")
    assert barred["reject"]["status"] == 403
    assert "disabled" in barred["reject"]["reason"]
    on_net = await route(demo, **call, digits="+39062022601")
    assert on_net["reject"]["status"] == 403


async def test_forwarding_to_a_mobile_needs_the_mobile_permission(
    demo: ServiceHarness, route: Any
) -> None:
    headers = _admin(demo, BELLAVISTA)
    mobile = {"kind": "external", "e164": "+393351234567"}
    # Room 101 may call national numbers only: no forward to a mobile, and nothing saved.
    refused = await demo.client.put(
        _url(BELLAVISTA, "/extensions/101/forwarding"),
        json={"busy": {"kind": "voicemail"}, "no_answer": mobile},
        headers=headers,
    )
    _problem(refused, 403, "Forwarding not permitted")
    kept = await demo.client.get(_url(BELLAVISTA, "/extensions/101/forwarding"), headers=headers)
    assert kept.json() == {
        "unconditional": None,
        "busy": None,
        "no_answer": None,
        "unavailable": None,
    }
    # Room 106 may: its no-answer rule reaches the registrar.
    allowed = await demo.client.put(
        _url(BELLAVISTA, "/extensions/106/forwarding"), json={"no_answer": mobile}, headers=headers
    )
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["no_answer"]["after_seconds"] == 20
    call = {"tenant_id": str(BELLAVISTA.tenant_id), "at": WORKDAY}
    to_106 = await route(demo, **call, extension="100", digits="106")
    assert to_106["failure_rules"]["no_answer"] == {
        "kind": "external",
        "extension": None,
        "e164": "+393351234567",
        "after_seconds": 20,
        "tenant_id": str(BELLAVISTA.tenant_id),
    }
    # The forwarded leg is placed and paid by 106 ...
    leg = await route(demo, **call, extension="100", forwarded_from="106", digits="+393351234567")
    assert (leg["action"], leg["class"], leg["extension"]) == ("pstn", "mobile", "106")
    # ... and a leg forwarded by 101 carries 101's permissions, whoever called.
    barred = await route(
        demo, **call, extension="106", forwarded_from="101", digits="+393351234567"
    )
    assert barred["reject"]["status"] == 403
    # Permission withdrawn after the rule was set: the rule is no longer offered.
    await demo.client.put(
        _url(BELLAVISTA, "/extensions/106/permissions"),
        json={"national_fixed": True, "mobile": False},
        headers=headers,
    )
    again = await route(demo, **call, extension="100", digits="106")
    assert again["failure_rules"]["no_answer"] is None


async def test_unconditional_forwarding(demo: ServiceHarness, route: Any) -> None:
    headers = _admin(demo, ROSSI_ROMA)
    call = {"tenant_id": str(ROSSI_ROMA.tenant_id), "at": WORKDAY}
    set_402 = await demo.client.put(
        _url(ROSSI_ROMA, "/extensions/402/forwarding"),
        json={"unconditional": {"kind": "extension", "extension": "403"}},
        headers=headers,
    )
    assert set_402.status_code == 200, set_402.text
    internal = await route(demo, **call, extension="401", digits="402")
    assert internal["targets"] == [{"tenant_id": str(ROSSI_ROMA.tenant_id), "extension": "403"}]
    # From the carrier too: the DID of 402 ends at 403.
    inbound = await route(demo, inbound_did="+39062022602", at=WORKDAY)
    assert inbound["targets"][0]["extension"] == "403"
    await demo.client.put(
        _url(ROSSI_ROMA, "/extensions/403/forwarding"),
        json={"unconditional": {"kind": "external", "e164": "+390298765432"}},
        headers=headers,
    )
    outside = await route(demo, **call, extension="401", digits="402")
    # The forwarding station pays the outside leg.
    assert (outside["action"], outside["class"], outside["e164"], outside["extension"]) == (
        "pstn",
        "national_fixed",
        "+390298765432",
        "403",
    )
    await demo.client.put(
        _url(ROSSI_ROMA, "/extensions/403/forwarding"),
        json={"unconditional": {"kind": "voicemail"}},
        headers=headers,
    )
    voicemail = await route(demo, **call, extension="401", digits="402")
    assert voicemail["action"] == "voicemail"
    assert voicemail["targets"] == [{"tenant_id": str(ROSSI_ROMA.tenant_id), "extension": "403"}]


async def test_forwarding_loops_are_refused(demo: ServiceHarness) -> None:
    roma, milano = _admin(demo, ROSSI_ROMA), _admin(demo, ROSSI_MILANO)
    ok = await demo.client.put(
        _url(ROSSI_ROMA, "/extensions/401/forwarding"),
        json={"busy": {"kind": "extension", "extension": "402"}},
        headers=roma,
    )
    assert ok.status_code == 200
    loop = await demo.client.put(
        _url(ROSSI_ROMA, "/extensions/402/forwarding"),
        json={"no_answer": {"kind": "extension", "extension": "401"}},
        headers=roma,
    )
    body = _problem(loop, 409, "Forwarding loop")
    assert body["loop"] == "rossi-roma 402 -> rossi-roma 401 -> rossi-roma 402"
    self_loop = await demo.client.put(
        _url(ROSSI_ROMA, "/extensions/404/forwarding"),
        json={"busy": {"kind": "extension", "extension": "404"}},
        headers=roma,
    )
    _problem(self_loop, 409, "Forwarding loop")
    # Across an external hop that comes back into the platform (on-net), and across tenants:
    # Milan 407 -> +39062022603 (Rome 403) -> +39021234567 (Milan 407).
    out = await demo.client.put(
        _url(ROSSI_MILANO, "/extensions/407/forwarding"),
        json={"unavailable": {"kind": "external", "e164": "+39062022603"}},
        headers=milano,
    )
    assert out.status_code == 200, out.text
    back = await demo.client.put(
        _url(ROSSI_ROMA, "/extensions/403/forwarding"),
        json={"unconditional": {"kind": "external", "e164": "+39021234567"}},
        headers=roma,
    )
    body = _problem(back, 409, "Forwarding loop")
    assert "+39021234567" in body["loop"] and "rossi-milano 407" in body["loop"]
    # Nothing of the refused change was kept.
    kept = await demo.client.get(_url(ROSSI_ROMA, "/extensions/403/forwarding"), headers=roma)
    assert kept.json()["unconditional"] is None
    # A DID retargeted to close a loop is refused as well: 404 -> external DID 604 -> 404.
    await demo.client.put(
        _url(ROSSI_ROMA, "/extensions/410/forwarding"),
        json={"busy": {"kind": "external", "e164": "+39062022604"}},
        headers=roma,
    )
    retarget = await demo.client.patch(
        _url(ROSSI_ROMA, "/numbers/+39062022604"),
        json={"target": {"kind": "extension", "extension": "410"}},
        headers=roma,
    )
    _problem(retarget, 409, "Forwarding loop")


async def _night_service(h: ServiceHarness) -> tuple[str, str]:
    """Rome's switchboard number: the operator by day, an IVR at night and on holidays."""
    headers = _admin(h, ROSSI_ROMA)
    schedule = await h.client.post(
        _url(ROSSI_ROMA, "/schedules"),
        json={
            "name": "Orario ufficio",
            "opening_hours": [
                {"days": [0, 1, 2, 3, 4], "opens": "09:00", "closes": "13:00"},
                {"days": [0, 1, 2, 3, 4], "opens": "14:00", "closes": "18:00"},
            ],
        },
        headers=headers,
    )
    assert schedule.status_code == 201, schedule.text
    menu = await h.client.post(
        _url(ROSSI_ROMA, "/ivr-menus"),
        json={
            "name": "Notte",
            "prompt": "ufficio-chiuso",
            "options": {"1": {"kind": "voicemail", "extension": "400"}},
            "direct_dial": True,
            "direct_dial_allow": ["4XX"],
            "direct_dial_deny": ["400"],
            "timeout_target": {"kind": "voicemail", "extension": "400"},
        },
        headers=headers,
    )
    assert menu.status_code == 201, menu.text
    patched = await h.client.patch(
        _url(ROSSI_ROMA, "/numbers/+39062022600"),
        json={
            "night_target": {"kind": "ivr", "menu_id": menu.json()["id"]},
            "schedule_id": schedule.json()["id"],
        },
        headers=headers,
    )
    assert patched.status_code == 200, patched.text
    return schedule.json()["id"], menu.json()["id"]


async def test_night_mode_after_hours_weekends_and_christmas(
    demo: ServiceHarness, route: Any
) -> None:
    _, menu_id = await _night_service(demo)
    did = "+39062022600"
    day = await route(demo, inbound_did=did, at=WORKDAY)
    assert day["action"] == "extension" and day["targets"][0]["extension"] == "400"
    lunch = await route(demo, inbound_did=did, at="2026-11-25T13:30:00+01:00")
    assert lunch["action"] == "ivr"
    for when in (EVENING, SATURDAY, CHRISTMAS, "2026-11-25T19:30:00Z"):
        night = await route(demo, inbound_did=did, at=when)
        assert night["action"] == "ivr", when
        assert night["ivr"] == {
            "menu_id": menu_id,
            "prompt": "ufficio-chiuso",
            "timeout_seconds": 10,
        }
        assert night["tenant_id"] == str(ROSSI_ROMA.tenant_id)
    # The registrar sends the called number as digits on a carrier leg: not menu input.
    for called in ("39062022600", "+39062022600"):
        carrier_leg = await route(demo, inbound_did=did, digits=called, at=EVENING)
        assert carrier_leg["action"] == "ivr", called
    # 17:30 UTC is 18:30 in Rome: closed; 08:30 UTC is 09:30 in Rome: open.
    assert (await route(demo, inbound_did=did, at="2026-11-25T17:30:00Z"))["action"] == "ivr"
    assert (await route(demo, inbound_did=did, at="2026-11-25T08:30:00Z"))["action"] == "extension"


async def test_ivr_direct_dial_options_and_timeout(demo: ServiceHarness, route: Any) -> None:
    await _night_service(demo)
    did = "+39062022600"
    direct = await route(demo, inbound_did=did, digits="#409", at=EVENING)
    assert (direct["action"], direct["targets"]) == (
        "extension",
        [{"tenant_id": str(ROSSI_ROMA.tenant_id), "extension": "409"}],
    )
    denied = await route(demo, inbound_did=did, digits="#400", at=EVENING)
    assert denied["reject"]["status"] == 404
    unknown = await route(demo, inbound_did=did, digits="#499", at=EVENING)
    assert unknown["action"] == "reject"
    option = await route(demo, inbound_did=did, digits="1", at=EVENING)
    assert option["action"] == "voicemail" and option["targets"][0]["extension"] == "400"
    timeout = await route(demo, inbound_did=did, digits="t", at=EVENING)
    assert timeout["action"] == "voicemail"
    # Milan calling Rome's number at night: on-net, into the same menu.
    on_net = await route(
        demo, tenant_id=str(ROSSI_MILANO.tenant_id), extension="407", digits=did, at=EVENING
    )
    assert (on_net["action"], on_net["class"]) == ("ivr", "on_net")


async def test_bad_input_is_refused_whole(demo: ServiceHarness) -> None:
    roma = _admin(demo, ROSSI_ROMA)
    dup = await demo.client.post(
        _url(ROSSI_ROMA, "/extensions"), json={"number": "401", "name": "Again"}, headers=roma
    )
    _problem(dup, 409, "Extension exists")
    for bad in ("112", "0401", "4", "1234567", "4a1"):
        response = await demo.client.post(
            _url(ROSSI_ROMA, "/extensions"), json={"number": bad, "name": "x"}, headers=roma
        )
        _problem(response, 422, "Invalid request")
    # 2407 would shadow the inter-company code for Milan's 407.
    overlap = await demo.client.post(
        _url(ROSSI_ROMA, "/extensions"), json={"number": "2407", "name": "x"}, headers=roma
    )
    _problem(overlap, 409, "Extension overlaps a link")
    # A block of numbers whose last one is taken: none of them is assigned.
    milano = _admin(demo, ROSSI_MILANO)
    block = await demo.client.post(
        _url(ROSSI_MILANO, "/numbers"),
        json={
            "e164": "+39062022598",
            "count": 3,
            "target": {"kind": "extension", "extension": "407"},
        },
        headers=milano,
    )
    body = _problem(block, 409, "Number assigned")
    assert body["numbers"] == ["+39062022600"]
    numbers = await demo.client.get(_url(ROSSI_MILANO, "/numbers"), headers=milano)
    assert [n["e164"] for n in numbers.json()] == ["+39021234567"]
    wrong_target = await demo.client.post(
        _url(ROSSI_MILANO, "/numbers"),
        json={"e164": "+39021234568", "target": {"kind": "extension", "extension": "499"}},
        headers=milano,
    )
    _problem(wrong_target, 422, "Unknown target")
    not_e164 = await demo.client.post(
        _url(ROSSI_MILANO, "/numbers"),
        json={"e164": "021234568", "target": {"kind": "extension", "extension": "407"}},
        headers=milano,
    )
    _problem(not_e164, 422, "Invalid request")
    in_use = await demo.client.delete(_url(ROSSI_ROMA, "/extensions/401"), headers=roma)
    _problem(in_use, 409, "Extension in use")


async def test_dial_plan_roles_and_scoping(demo: ServiceHarness) -> None:
    user = demo.mint.headers("tenant_user", tenant_id=ROSSI_ROMA.tenant_id)
    assert (await demo.client.get(_url(ROSSI_ROMA, "/extensions"), headers=user)).status_code == 200
    write = await demo.client.post(
        _url(ROSSI_ROMA, "/extensions"), json={"number": "420", "name": "x"}, headers=user
    )
    _problem(write, 403, "Forbidden")
    stranger = _admin(demo, BELLAVISTA)
    hidden = await demo.client.get(_url(ROSSI_ROMA, "/extensions"), headers=stranger)
    _problem(hidden, 404, "Tenant not found")
    listed = await demo.client.get(
        _url(ROSSI_ROMA, "/extensions"), headers=_admin(demo, ROSSI_ROMA)
    )
    assert [e["number"] for e in listed.json()] == ["400", "401", "402", "403", "404", "409", "410"]


async def test_link_groups(demo: ServiceHarness, route: Any) -> None:
    operator = demo.mint.headers("operator")
    groups = (await demo.client.get("/v1/link-groups", headers=operator)).json()
    assert len(groups) == 1
    rossi = groups[0]
    assert [(m["slug"], m["digit"]) for m in rossi["members"]] == [
        ("rossi-roma", 1),
        ("rossi-milano", 2),
    ]
    taken = await demo.client.post(
        f"/v1/link-groups/{rossi['id']}/members",
        json={"tenant": "bellavista", "digit": 1},
        headers=operator,
    )
    _problem(taken, 409, "Link digit taken")
    twice = await demo.client.post(
        "/v1/link-groups",
        json={"name": "Altro", "members": [{"tenant": "rossi-roma", "digit": 5}]},
        headers=operator,
    )
    _problem(twice, 409, "Tenant already linked")
    # The refused group was not half-created.
    assert len((await demo.client.get("/v1/link-groups", headers=operator)).json()) == 1
    # Joining with digit 4 would make Rome's 410 ambiguous with "4" + the newcomer's 10.
    newcomer = await demo.add_tenant("filiale-nuova")
    made = await demo.client.post(
        "/v1/tenants/filiale-nuova/extensions",
        json={"number": "10", "name": "Banco"},
        headers=demo.mint.headers("tenant_admin", tenant_id=newcomer.tenant_id),
    )
    assert made.status_code == 201, made.text
    clash = await demo.client.post(
        f"/v1/link-groups/{rossi['id']}/members",
        json={"tenant": newcomer.slug, "digit": 4},
        headers=operator,
    )
    body = _problem(clash, 409, "Extension overlaps a link")
    assert "410" in body["detail"]
    # Fill the group to 10 members, then one more is refused.
    for digit in (0, 3, 4, 5, 6, 7, 8, 9):
        tenant = await demo.add_tenant(f"filiale-{digit}")
        joined = await demo.client.post(
            f"/v1/link-groups/{rossi['id']}/members",
            json={"tenant": tenant.slug, "digit": digit},
            headers=operator,
        )
        assert joined.status_code == 201, joined.text
    extra = await demo.add_tenant("filiale-extra")
    full = await demo.client.post(
        f"/v1/link-groups/{rossi['id']}/members",
        json={"tenant": extra.slug, "digit": 3},
        headers=operator,
    )
    _problem(full, 409, "Link group full")
    tenant_admin = await demo.client.post(
        "/v1/link-groups", json={"name": "Mio"}, headers=_admin(demo, BELLAVISTA)
    )
    _problem(tenant_admin, 403, "Forbidden")
    # Leaving the group ends the inter-company code.
    left = await demo.client.delete(
        f"/v1/link-groups/{rossi['id']}/members/rossi-roma", headers=operator
    )
    assert left.status_code == 204
    after = await route(
        demo, tenant_id=str(ROSSI_MILANO.tenant_id), extension="407", digits="1409", at=WORKDAY
    )
    assert after["action"] == "reject"


async def test_changes_publish_their_events(harness: ServiceHarness) -> None:
    tenant = await harness.add_tenant("eventi")
    other = await harness.add_tenant("eventi-due")
    headers = harness.mint.headers("tenant_admin", tenant_id=tenant.tenant_id)
    base = f"/v1/tenants/{tenant.slug}"
    async with harness.probe("extension.*", "number.*", "link.created") as probe:
        created = await harness.client.post(
            f"{base}/extensions",
            json={"number": "20", "name": "Banco 1", "kind": "station"},
            headers=headers,
        )
        assert created.status_code == 201, created.text
        await harness.client.patch(
            f"{base}/extensions/20", json={"name": "Banco uno"}, headers=headers
        )
        numbers = await harness.client.post(
            f"{base}/numbers",
            json={
                "e164": "+390612340000",
                "count": 3,
                "target": {"kind": "extension", "extension": "20"},
            },
            headers=headers,
        )
        assert numbers.status_code == 201, numbers.text
        assert await harness.client.delete(f"{base}/numbers/+390612340001", headers=headers)
        group = await harness.client.post(
            "/v1/link-groups",
            json={
                "name": "Eventi",
                "members": [
                    {"tenant": tenant.slug, "digit": 1},
                    {"tenant": other.slug, "digit": 2},
                ],
            },
            headers=harness.mint.headers("operator"),
        )
        assert group.status_code == 201, group.text
        assigned = await probe.wait_for("number.assigned", 3)
        assert sorted(e.data.e164 for e in assigned) == [
            "+390612340000",
            "+390612340001",
            "+390612340002",
        ]
        assert assigned[0].data.target_kind == "extension" and assigned[0].data.target == "20"
        released = await probe.wait_for("number.released")
        assert released[0].data.e164 == "+390612340001"
        ext = (await probe.wait_for("extension.created"))[0]
        assert (ext.data.number, ext.data.kind, ext.tenant_id) == (
            "20",
            "station",
            tenant.tenant_id,
        )
        assert (await probe.wait_for("extension.updated"))[0].data.name == "Banco uno"
        links = await probe.wait_for("link.created", 2)
        assert {(e.data.tenant_id, e.data.digit) for e in links} == {
            (tenant.tenant_id, 1),
            (other.tenant_id, 2),
        }
        in_use = await harness.client.delete(f"{base}/extensions/20", headers=headers)
        _problem(in_use, 409, "Extension in use")
        await harness.client.post(
            f"{base}/extensions", json={"number": "21", "name": "Banco 2"}, headers=headers
        )
        gone = await harness.client.delete(f"{base}/extensions/21", headers=headers)
        assert gone.status_code == 204
        deleted = (await probe.wait_for("extension.deleted"))[0]
        assert (deleted.data.number, deleted.tenant_id) == ("21", tenant.tenant_id)


async def test_port_completed_makes_the_numbers_dids(demo: ServiceHarness, route: Any) -> None:
    from datetime import UTC, datetime

    from centralino_proto.events import PortCompleted
    from centralino_proto.testing import until

    event = PortCompleted(
        tenant_id=ROSSI_ROMA.tenant_id,
        port_request_id=uuid.uuid4(),
        numbers=["+390645678900", "0645678901"],
        completed_at=datetime.now(UTC),
    )
    async with demo.probe("number.assigned") as probe:
        await demo.publish(event, tenant_id=ROSSI_ROMA.tenant_id)

        async def routed() -> bool:
            decision = await route(demo, inbound_did="+390645678901", at=WORKDAY)
            return decision["action"] == "extension"

        await until(routed, timeout=20, message="ported number routed")
        ported = {"+390645678900", "+390645678901"}
        # The seed's own number.assigned events may still be on their way: look at ours.
        await until(
            lambda: ported <= {e.data.e164 for e in probe.of_type("number.assigned")},
            timeout=20,
            message="number.assigned for the ported numbers",
        )
    assigned = [e for e in probe.of_type("number.assigned") if e.data.e164 in ported]
    assert len(assigned) == 2 and {e.tenant_id for e in assigned} == {ROSSI_ROMA.tenant_id}
    first = await route(demo, inbound_did="+390645678900", at=WORKDAY)
    # A ported number rings the operator until the tenant points it elsewhere.
    assert first["targets"] == [{"tenant_id": str(ROSSI_ROMA.tenant_id), "extension": "400"}]
    listed = await demo.client.get(_url(ROSSI_ROMA, "/numbers"), headers=_admin(demo, ROSSI_ROMA))
    sources = {n["e164"]: n["source"] for n in listed.json()}
    assert sources["+390645678900"] == "ported" and sources["+39062022601"] == "assigned"
    # On-net from Milan at once.
    on_net = await route(
        demo,
        tenant_id=str(ROSSI_MILANO.tenant_id),
        extension="408",
        digits="0645678900",
        at=WORKDAY,
    )
    assert on_net["class"] == "on_net"


async def test_schedules_and_menus_validate_and_stay_while_used(demo: ServiceHarness) -> None:
    headers = _admin(demo, ROSSI_ROMA)
    schedule_id, menu_id = await _night_service(demo)
    backwards = await demo.client.post(
        _url(ROSSI_ROMA, "/schedules"),
        json={"name": "x", "opening_hours": [{"days": [0], "opens": "18:00", "closes": "09:00"}]},
        headers=headers,
    )
    _problem(backwards, 422, "Invalid request")
    bad_zone = await demo.client.post(
        _url(ROSSI_ROMA, "/schedules"),
        json={
            "name": "y",
            "timezone": "Europe/Atlantis",
            "opening_hours": [{"days": [0], "opens": "09:00", "closes": "18:00"}],
        },
        headers=headers,
    )
    _problem(bad_zone, 422, "Invalid request")
    bad_key = await demo.client.post(
        _url(ROSSI_ROMA, "/ivr-menus"),
        json={"name": "z", "prompt": "p", "options": {"A": {"kind": "operator"}}},
        headers=headers,
    )
    _problem(bad_key, 422, "Invalid request")
    unknown = await demo.client.post(
        _url(ROSSI_ROMA, "/ivr-menus"),
        json={
            "name": "z",
            "prompt": "p",
            "options": {"2": {"kind": "extension", "extension": "499"}},
        },
        headers=headers,
    )
    _problem(unknown, 422, "Unknown target")
    _problem(
        await demo.client.delete(_url(ROSSI_ROMA, f"/schedules/{schedule_id}"), headers=headers),
        409,
        "Schedule in use",
    )
    _problem(
        await demo.client.delete(_url(ROSSI_ROMA, f"/ivr-menus/{menu_id}"), headers=headers),
        409,
        "IVR menu in use",
    )
    # Another tenant's menu is not a valid target.
    foreign = await demo.client.post(
        _url(ROSSI_MILANO, "/numbers"),
        json={"e164": "+39021234599", "target": {"kind": "ivr", "menu_id": menu_id}},
        headers=_admin(demo, ROSSI_MILANO),
    )
    _problem(foreign, 422, "Unknown target")
    # Once the number no longer follows them, both can go.
    cleared = await demo.client.patch(
        _url(ROSSI_ROMA, "/numbers/+39062022600"),
        json={"night_target": None, "schedule_id": None},
        headers=headers,
    )
    assert cleared.status_code == 200, cleared.text
    assert (
        await demo.client.delete(_url(ROSSI_ROMA, f"/schedules/{schedule_id}"), headers=headers)
    ).status_code == 204
    assert (
        await demo.client.delete(_url(ROSSI_ROMA, f"/ivr-menus/{menu_id}"), headers=headers)
    ).status_code == 204


async def test_seed_is_idempotent(demo: ServiceHarness) -> None:
    from centralino_routing.seed import seed

    before = (
        await demo.client.get(_url(BELLAVISTA, "/extensions"), headers=_admin(demo, BELLAVISTA))
    ).json()
    await seed(demo.runtime)
    after = (
        await demo.client.get(_url(BELLAVISTA, "/extensions"), headers=_admin(demo, BELLAVISTA))
    ).json()
    assert before == after
    assert [e["number"] for e in after] == [str(n) for n in range(100, 111)]
    rooms = {e["number"]: e["permissions"] for e in after}
    assert rooms["103"]["mobile"] is False and rooms["103"]["international"] is False
    assert rooms["108"]["mobile"] is True and rooms["108"]["international"] is True
    assert {e["kind"] for e in after if e["number"] != "100"} == {"station"}


async def test_a_suspended_tenant_keeps_only_emergency(demo: ServiceHarness, route: Any) -> None:
    from centralino_proto.demo import RESELLER_ID
    from centralino_proto.events import TenantKind, TenantUpdated
    from centralino_proto.testing import until

    await demo.publish(
        TenantUpdated(
            tenant_id=BELLAVISTA.tenant_id,
            slug=BELLAVISTA.slug,
            name=BELLAVISTA.name,
            kind=TenantKind.hotel,
            reseller_id=RESELLER_ID,
            sip_realm=BELLAVISTA.sip_realm,
            active=False,
        ),
        tenant_id=BELLAVISTA.tenant_id,
    )
    call = {"tenant_id": str(BELLAVISTA.tenant_id), "extension": "106", "at": WORKDAY}

    async def suspended() -> bool:
        return (await route(demo, **call, digits="0612345678"))["action"] == "reject"

    await until(suspended, timeout=20, message="bellavista suspended")
    assert (await route(demo, **call, digits="112"))["class"] == "emergency"


async def test_concurrent_creations_give_one_winner(harness: ServiceHarness) -> None:
    import asyncio

    tenant = await harness.add_tenant("gara")
    headers = harness.mint.headers("tenant_admin", tenant_id=tenant.tenant_id)
    responses = await asyncio.gather(
        *(
            harness.client.post(
                f"/v1/tenants/{tenant.slug}/extensions",
                json={"number": "30", "name": f"n{i}"},
                headers=headers,
            )
            for i in range(4)
        )
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    for response in responses:
        if response.status_code == 409:
            _problem(response, 409, "Extension exists")


async def test_ivr_submenus_invalid_input_and_operator(demo: ServiceHarness, route: Any) -> None:
    headers = _admin(demo, ROSSI_ROMA)
    sales = await demo.client.post(
        _url(ROSSI_ROMA, "/ivr-menus"),
        json={
            "name": "Vendite",
            "prompt": "vendite",
            "options": {"1": {"kind": "extension", "extension": "401"}},
        },
        headers=headers,
    )
    assert sales.status_code == 201, sales.text
    main = await demo.client.post(
        _url(ROSSI_ROMA, "/ivr-menus"),
        json={
            "name": "Benvenuto",
            "prompt": "benvenuto",
            "options": {
                "2": {"kind": "ivr", "menu_id": sales.json()["id"]},
                "9": {"kind": "external", "e164": "+393351234567"},
            },
            "invalid_target": {"kind": "operator"},
        },
        headers=headers,
    )
    assert main.status_code == 201, main.text
    await demo.client.patch(
        _url(ROSSI_ROMA, "/numbers/+39062022604"),
        json={"target": {"kind": "ivr", "menu_id": main.json()["id"]}},
        headers=headers,
    )
    did = "+39062022604"
    welcome = await route(demo, inbound_did=did, at=WORKDAY)
    assert welcome["ivr"]["prompt"] == "benvenuto"
    submenu = await route(demo, inbound_did=did, digits="2", at=WORKDAY)
    assert (submenu["action"], submenu["ivr"]["prompt"]) == ("ivr", "vendite")
    # Wrong key: the operator. Direct dial is off in this menu, so #409 is wrong too.
    for wrong in ("5", "#409"):
        operator = await route(demo, inbound_did=did, digits=wrong, at=WORKDAY)
        assert operator["targets"] == [{"tenant_id": str(ROSSI_ROMA.tenant_id), "extension": "400"}]
    # An outside number behind a key: the tenant pays that leg.
    outside = await route(demo, inbound_did=did, digits="9", at=WORKDAY)
    assert (outside["action"], outside["class"], outside["tenant_id"]) == (
        "pstn",
        "mobile",
        str(ROSSI_ROMA.tenant_id),
    )


async def test_failure_rules_of_a_linked_station_name_its_tenant(
    demo: ServiceHarness, route: Any
) -> None:
    busy = await demo.client.put(
        _url(ROSSI_ROMA, "/extensions/409/forwarding"),
        json={
            "busy": {"kind": "extension", "extension": "400"},
            "no_answer": {"kind": "external", "e164": "+390612345678"},
        },
        headers=_admin(demo, ROSSI_ROMA),
    )
    assert busy.status_code == 200, busy.text
    call = await route(
        demo, tenant_id=str(ROSSI_MILANO.tenant_id), extension="407", digits="1409", at=WORKDAY
    )
    rules = call["failure_rules"]
    assert rules["busy"]["extension"] == "400" and rules["busy"]["tenant_id"] == str(
        ROSSI_ROMA.tenant_id
    )
    # The forwarded leg is Rome 409's, whoever called it.
    leg = await route(
        demo,
        tenant_id=rules["no_answer"]["tenant_id"],
        extension="407",
        forwarded_from="409",
        digits="+390612345678",
        at=WORKDAY,
    )
    assert (leg["action"], leg["tenant_id"], leg["extension"]) == (
        "pstn",
        str(ROSSI_ROMA.tenant_id),
        "409",
    )


async def test_patch_changes_only_what_is_given(demo: ServiceHarness) -> None:
    headers = _admin(demo, BELLAVISTA)
    patched = await demo.client.patch(
        _url(BELLAVISTA, "/extensions/102/permissions"), json={"mobile": True}, headers=headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json() == {
        "national_fixed": True,
        "mobile": True,
        "international": False,
        "premium": False,
        "toll_free": False,
        "shared_cost": False,
    }
    first = await demo.client.patch(
        _url(BELLAVISTA, "/extensions/102/forwarding"),
        json={"busy": {"kind": "voicemail"}},
        headers=headers,
    )
    assert first.json()["busy"]["extension"] == "102"
    second = await demo.client.patch(
        _url(BELLAVISTA, "/extensions/102/forwarding"),
        json={"no_answer": {"kind": "external", "e164": "+393351234567", "after_seconds": 15}},
        headers=headers,
    )
    assert second.json()["busy"]["kind"] == "voicemail"
    assert second.json()["no_answer"]["after_seconds"] == 15
    cleared = await demo.client.patch(
        _url(BELLAVISTA, "/extensions/102/forwarding"), json={"busy": None}, headers=headers
    )
    assert cleared.json()["busy"] is None and cleared.json()["no_answer"] is not None
    gone = await demo.client.delete(_url(BELLAVISTA, "/extensions/102/forwarding"), headers=headers)
    assert gone.status_code == 204
    empty = await demo.client.get(_url(BELLAVISTA, "/extensions/102/forwarding"), headers=headers)
    assert set(empty.json().values()) == {None}
    unknown = await demo.client.patch(
        _url(BELLAVISTA, "/extensions/102/permissions"), json={"satellite": True}, headers=headers
    )
    _problem(unknown, 422, "Invalid request")
