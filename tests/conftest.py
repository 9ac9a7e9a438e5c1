"""The whole platform as `make up` starts it, shared by the end-to-end tests."""

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


@pytest.fixture(scope="session")
def platform() -> Iterator[None]:
    """Six real services on their contract ports (HTTP 8000-8005, SIP 5060), demo data loaded."""
    assert all(status(p, "/healthz") is None for p in PORTS.values()), (
        "ports 8000-8005 must be free"
    )
    up = make("up", 600)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield
    finally:
        make("down", 120)


def login(username: str, password: str) -> dict[str, str]:
    response = httpx.post(
        f"{GATEWAY}/v1/auth/token", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture(scope="session")
def operator(platform: None) -> dict[str, str]:
    return login("admin@centralino.test", "admin")


@pytest.fixture(scope="session")
def reseller(platform: None) -> dict[str, str]:
    return login("reseller@centralino.test", "reseller")
