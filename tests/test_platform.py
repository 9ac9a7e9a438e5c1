"""The whole platform as `make up` starts it: six real services on their contract
ports, seeded with the demo data, checked end to end; then `make down`."""

import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PORTS = {
    "gateway": 8000,
    "registrar": 8001,
    "routing": 8002,
    "rating": 8003,
    "portability": 8004,
    "vpn-ca": 8005,
}
GATEWAY = "http://127.0.0.1:8000"


def status(port: int, path: str) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def make(target: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", target], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def platform() -> Iterator[None]:
    assert all(status(p, "/healthz") is None for p in PORTS.values()), (
        "ports 8000-8005 must be free"
    )
    up = make("up", 600)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield
    finally:
        make("down", 120)


@pytest.fixture(scope="module")
def reseller(platform: None) -> dict[str, str]:
    response = httpx.post(
        f"{GATEWAY}/v1/auth/token",
        json={"username": "reseller@centralino.test", "password": "reseller"},
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


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


def test_make_down_stops_them_all(platform: None) -> None:
    down = make("down", 120)
    assert down.returncode == 0, down.stderr
    for service, port in PORTS.items():
        assert status(port, "/healthz") is None, f"{service} still answers after make down"
    assert not list((ROOT / ".run").glob("*.pid"))
