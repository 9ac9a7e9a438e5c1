"""`make up` brings all six services to ready; `make down` stops them all."""

import subprocess
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PORTS = {
    "gateway": 8000,
    "registrar": 8001,
    "routing": 8002,
    "rating": 8003,
    "portability": 8004,
    "vpn-ca": 8005,
}


def status(port: int, path: str) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_make_up_brings_all_six_to_ready_and_make_down_stops_them() -> None:
    assert all(status(p, "/healthz") is None for p in PORTS.values()), (
        "ports 8000-8005 must be free"
    )
    up = subprocess.run(["make", "up"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        for service, port in PORTS.items():
            assert status(port, "/readyz") == 200, f"{service} not ready"
            assert status(port, "/metrics") == 200
            assert status(port, "/openapi.json") == 200
        assert (ROOT / ".run" / "gateway.log").exists()
    finally:
        down = subprocess.run(
            ["make", "down"], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
    assert down.returncode == 0, down.stderr
    for service, port in PORTS.items():
        assert status(port, "/healthz") is None, f"{service} still answers after make down"
    assert not list((ROOT / ".run").glob("*.pid"))
