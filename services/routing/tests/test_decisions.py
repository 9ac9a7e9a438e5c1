"""POST /v1/route on the demo dial plans of ARCHITECTURE.md, case by case."""

from __future__ import annotations

from typing import Any

import pytest

from centralino_proto.demo import BELLAVISTA, ROSSI_MILANO, ROSSI_ROMA, DemoTenant
from centralino_proto.testing import ServiceHarness

# A Wednesday, mid-morning in Rome.
WORKDAY = "2026-11-25T10:00:00+01:00"

HOTEL, ROMA, MILANO = BELLAVISTA, ROSSI_ROMA, ROSSI_MILANO


def _call(
    tenant: DemoTenant | None, extension: str | None, digits: str | None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"extension": extension, "digits": digits, "at": WORKDAY, **extra}
    body["tenant_id"] = str(tenant.tenant_id) if tenant else None
    return body


def _target(tenant: DemoTenant, extension: str) -> dict[str, str]:
    return {"tenant_id": str(tenant.tenant_id), "extension": extension}


# (what, request, expected subset of the decision)
CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "Milan 407 dials 1409: Rome's 409 (inter-company digit 1)",
        _call(MILANO, "407", "1409"),
        {
            "action": "inter_company",
            "class": "inter_company",
            "tenant_id": str(MILANO.tenant_id),
            "extension": "407",
            "targets": [_target(ROMA, "409")],
        },
    ),
    (
        "Rome 410 dials 2407: Milan's 407",
        _call(ROMA, "410", "2407"),
        {"action": "inter_company", "targets": [_target(MILANO, "407")]},
    ),
    (
        "Milan 407 dials 409: stays in Milan, which has no 409",
        _call(MILANO, "407", "409"),
        {
            "action": "reject",
            "reject": {"status": 404, "reason": "no extension 409 in rossi-milano"},
        },
    ),
    (
        "Rome 401 dials 1409: its own digit, not a link to itself",
        _call(ROMA, "401", "1409"),
        {
            "action": "reject",
            "reject": {"status": 404, "reason": "no extension 1409 in rossi-roma"},
        },
    ),
    (
        "carrier calls +39062022601: Rome 401",
        {"inbound_did": "+39062022601", "at": WORKDAY},
        {
            "action": "extension",
            "class": "internal",
            "e164": "+39062022601",
            "tenant_id": str(ROMA.tenant_id),
            "extension": "401",
            "targets": [_target(ROMA, "401")],
        },
    ),
    (
        "carrier calls +39062022600 in national form: Rome's operator 400",
        {"inbound_did": "062022600", "at": WORKDAY},
        {"action": "extension", "targets": [_target(ROMA, "400")]},
    ),
    (
        "carrier sends 39062022602 without the plus: Rome 402",
        {"inbound_did": "39062022602", "at": WORKDAY},
        {"action": "extension", "e164": "+39062022602", "targets": [_target(ROMA, "402")]},
    ),
    (
        "carrier calls +39021234567 naming the wrong tenant: not found",
        {"inbound_did": "+39021234567", "tenant_id": str(ROMA.tenant_id), "at": WORKDAY},
        {"action": "reject", "reject": {"status": 404, "reason": "+39021234567 is not assigned"}},
    ),
    (
        "carrier calls a number nobody has",
        {"inbound_did": "+390699999999", "at": WORKDAY},
        {"action": "reject", "reject": {"status": 404, "reason": "+390699999999 is not assigned"}},
    ),
    (
        "room 101 (national only) dials a Rome landline",
        _call(HOTEL, "101", "06 1234 5678"),
        {"action": "pstn", "class": "national_fixed", "e164": "+390612345678", "extension": "101"},
    ),
    (
        "room 101 (national only) dials a mobile: 403",
        _call(HOTEL, "101", "3351234567"),
        {
            "action": "reject",
            "class": "mobile",
            "reject": {"status": 403, "reason": "mobile calls not permitted from extension 101"},
        },
    ),
    (
        "room 103 (national only) dials London with 00: 403",
        _call(HOTEL, "103", "00442071234567"),
        {
            "action": "reject",
            "class": "international",
            "reject": {
                "status": 403,
                "reason": "international calls not permitted from extension 103",
            },
        },
    ),
    (
        "room 105 (national only) dials +1: 403",
        _call(HOTEL, "105", "+12125550100"),
        {"action": "reject", "class": "international"},
    ),
    (
        "room 106 dials London: international",
        _call(HOTEL, "106", "00442071234567"),
        {"action": "pstn", "class": "international", "e164": "+442071234567"},
    ),
    (
        "room 110 dials a mobile",
        _call(HOTEL, "110", "347 123 4567"),
        {"action": "pstn", "class": "mobile", "e164": "+393471234567"},
    ),
    (
        "room 106 dials 0039 06...: national, not international",
        _call(HOTEL, "106", "00390612345678"),
        {"action": "pstn", "class": "national_fixed", "e164": "+390612345678"},
    ),
    (
        "room 101 dials 112: emergency, always",
        _call(HOTEL, "101", "112"),
        {"action": "pstn", "class": "emergency", "e164": "+39112"},
    ),
    (
        "reception dials a premium 899: not permitted",
        _call(HOTEL, "100", "899123456"),
        {"action": "reject", "class": "premium", "reject": {"status": 403}},
    ),
    (
        "reception dials 0878: premium",
        _call(HOTEL, "100", "0878123456"),
        {"action": "reject", "class": "premium"},
    ),
    (
        "Rome 401 dials 800 (toll free)",
        _call(ROMA, "401", "800123456"),
        {"action": "pstn", "class": "toll_free", "e164": "+39800123456"},
    ),
    (
        "Rome 401 dials 848 (shared cost)",
        _call(ROMA, "401", "848123456"),
        {"action": "pstn", "class": "shared_cost", "e164": "+39848123456"},
    ),
    (
        "room 102 calls room 104: internal",
        _call(HOTEL, "102", "104"),
        {
            "action": "extension",
            "class": "internal",
            "targets": [_target(HOTEL, "104")],
            "extension": "102",
        },
    ),
    (
        "Milan 407 dials Rome's DID: on-net to 401, free",
        _call(MILANO, "407", "+39062022601"),
        {
            "action": "on_net",
            "class": "on_net",
            "e164": "+39062022601",
            "tenant_id": str(MILANO.tenant_id),
            "extension": "407",
            "targets": [_target(ROMA, "401")],
        },
    ),
    (
        "Rome 402 dials Milan's DID nationally: on-net to 407",
        _call(ROMA, "402", "02 1234567"),
        {"action": "on_net", "class": "on_net", "targets": [_target(MILANO, "407")]},
    ),
    (
        "room 101 (national only) dials Rome's DID: on-net is the platform's own network",
        _call(HOTEL, "101", "062022603"),
        {"action": "on_net", "targets": [_target(ROMA, "403")]},
    ),
    (
        "an incomplete number: 484",
        _call(HOTEL, "106", "33"),
        {"action": "reject", "reject": {"status": 484}},
    ),
    (
        "a number too short for the national plan: 484",
        _call(HOTEL, "106", "06123"),
        {"action": "reject", "reject": {"status": 484}},
    ),
    (
        "an international number too long: 404",
        _call(HOTEL, "106", "+4420712345678901"),
        {"action": "reject", "reject": {"status": 404}},
    ),
    (
        "letters are not dialable: 404",
        _call(HOTEL, "106", "alice"),
        {"action": "reject", "reject": {"status": 404}},
    ),
    (
        "no digits at all: 484",
        _call(HOTEL, "106", ""),
        {"action": "reject", "reject": {"status": 484}},
    ),
    (
        "an unknown calling extension: 404",
        _call(HOTEL, "199", "101"),
        {"action": "reject", "reject": {"status": 404, "reason": "no extension 199 in bellavista"}},
    ),
]


def _subset(expected: dict[str, Any], actual: dict[str, Any]) -> None:
    for key, value in expected.items():
        if isinstance(value, dict) and isinstance(actual.get(key), dict):
            _subset(value, actual[key])
        else:
            assert actual.get(key) == value, f"{key}: {actual.get(key)!r} != {value!r} in {actual}"


async def test_demo_decisions(demo: ServiceHarness, route: Any) -> None:
    failures = []
    for what, body, expected in CASES:
        decision = await route(demo, **body)
        try:
            _subset(expected, decision)
        except AssertionError as exc:
            failures.append(f"{what}: {exc}")
        # The contract: reject only on reject, always a failure_rules object.
        assert ("reject" in decision) == (decision["action"] == "reject"), what
        assert set(decision["failure_rules"]) == {"busy", "no_answer", "unavailable"}, what
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("role", ["tenant_admin", "reseller", "tenant_user"])
async def test_route_is_for_services_and_the_operator(demo: ServiceHarness, role: str) -> None:
    body = _call(HOTEL, "101", "102")
    response = await demo.client.post(
        "/v1/route", json=body, headers=demo.mint.headers(role, tenant_id=HOTEL.tenant_id)
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert (await demo.client.post("/v1/route", json=body)).status_code == 401
    ok = await demo.client.post("/v1/route", json=body, headers=demo.mint.headers("operator"))
    assert ok.status_code == 200 and ok.json()["action"] == "extension"


async def test_route_request_needs_a_caller_or_a_did(demo: ServiceHarness) -> None:
    headers = demo.mint.headers("service")
    for body in ({"digits": "101"}, {"extension": "101", "digits": "102"}):
        response = await demo.client.post("/v1/route", json=body, headers=headers)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"


async def test_any_dial_string_gets_an_answer(demo: ServiceHarness, keeper: Any) -> None:
    """Random dial strings never raise: each is routed or rejected with a SIP status."""
    import random

    from centralino_routing.decide import RouteRequest

    router = keeper(demo).router
    rng = random.Random(4242)
    alphabet = "0123456789" * 4 + "+#*- ()abc"
    tenants = [HOTEL, ROMA, MILANO]
    extensions = {
        HOTEL: ["100", "101", "106", "999"],
        ROMA: ["400", "409", "410"],
        MILANO: ["407", "408"],
    }
    for _ in range(3000):
        length = rng.randrange(0, 18)
        dialled = "".join(rng.choice(alphabet) for _ in range(length))
        if rng.random() < 0.2:
            body: dict[str, Any] = {
                "inbound_did": dialled or "+",
                "digits": rng.choice(["", "1", "#409", "t", dialled]),
            }
        else:
            tenant = rng.choice(tenants)
            body = {
                "tenant_id": str(tenant.tenant_id),
                "extension": rng.choice(extensions[tenant]),
                "digits": dialled,
            }
            if rng.random() < 0.1:
                body["forwarded_from"] = rng.choice(extensions[tenant])
        decision = router.decide(RouteRequest.model_validate(body)).body()
        assert decision["action"] in {
            "extension",
            "inter_company",
            "on_net",
            "pstn",
            "ivr",
            "voicemail",
            "reject",
        }
        if decision["action"] == "reject":
            assert decision["reject"]["status"] in {403, 404, 480, 482, 484}, (body, decision)
        if decision["action"] == "pstn":
            assert decision["e164"].startswith("+"), (body, decision)
