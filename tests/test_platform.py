"""The whole platform as `make up` starts it: six real services on their contract
ports, seeded with the demo data, checked end to end; then `make down`."""

import random
import time

import httpx

from .conftest import GATEWAY, PORTS, ROOT, make, status


def test_make_up_brings_all_six_to_ready(platform: None) -> None:
    for service, port in PORTS.items():
        assert status(port, "/readyz") == 200, f"{service} not ready"
        assert status(port, "/metrics") == 200
        assert status(port, "/openapi.json") == 200
    assert (ROOT / ".run" / "gateway.log").exists()


def test_the_api_refuses_a_call_without_a_token(platform: None) -> None:
    response = httpx.get(f"{GATEWAY}/v1/tenants")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


def test_the_reseller_sees_its_three_demo_tenants(reseller: dict[str, str]) -> None:
    response = httpx.get(f"{GATEWAY}/v1/tenants", headers=reseller)
    assert response.status_code == 200, response.text
    body = response.json()
    items = body["items"] if isinstance(body, dict) else body
    assert {t["slug"] for t in items} == {"bellavista", "rossi-roma", "rossi-milano"}


def test_a_ported_number_becomes_a_did_of_the_tenant_and_routes(operator: dict[str, str]) -> None:
    # Portability -> port.completed on the bus -> routing makes it a DID: three real services.
    national = "06" + "".join(random.choices("0123456789", k=8))  # a new Rome number each run
    code = f"TLC{national}001"
    check = httpx.post(
        f"{GATEWAY}/v1/migration-codes/validate", json={"code": code}, headers=operator
    )
    assert check.status_code == 200, check.text
    code += check.json()["parts"]["expected_check_character"]
    requests = f"{GATEWAY}/v1/tenants/rossi-roma/port-requests"
    created = httpx.post(
        requests,
        headers=operator,
        json={
            "line_type": "analog",
            "customer": {"name": "Rossi S.r.l.", "vat_number": "07643520567"},
            "numbers": [{"kind": "single", "number": f"+39{national}", "migration_code": code}],
            "temporary_number": "+39062022600",
        },
    )
    assert created.status_code == 201, created.text
    port = f"{requests}/{created.json()['id']}"
    consent = httpx.get(f"{port}/consent", headers=operator)
    assert consent.status_code == 200 and consent.content.startswith(b"%PDF")
    signed = httpx.post(
        f"{port}/signed-consent",
        headers=operator,
        files={"file": ("signed.pdf", consent.content, "application/pdf")},
    )
    assert signed.status_code in (200, 201), signed.text
    for step in ("taken_in_charge", "unlocked", "scheduled", "completed"):
        moved = httpx.post(f"{port}/transitions", headers=operator, json={"to": step})
        assert moved.status_code == 200, f"{step}: {moved.text}"

    def route() -> httpx.Response:
        return httpx.post(
            "http://127.0.0.1:8002/v1/route",
            headers=operator,
            json={
                "tenant_id": None,
                "extension": None,
                "digits": f"+39{national}",
                "inbound_did": f"+39{national}",
            },
        )

    deadline = time.monotonic() + 20
    while (decision := route()).json().get("action") == "reject" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert decision.status_code == 200, decision.text
    body = decision.json()
    assert body["action"] == "extension", body
    assert body["targets"][0]["extension"] == "400", "a ported number rings the operator"


def test_make_down_stops_them_all(platform: None) -> None:
    down = make("down", 120)
    assert down.returncode == 0, down.stderr
    for service, port in PORTS.items():
        assert status(port, "/healthz") is None, f"{service} still answers after make down"
    assert not list((ROOT / ".run").glob("*.pid"))
