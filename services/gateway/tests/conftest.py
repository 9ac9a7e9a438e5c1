import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from centralino_gateway.config import Settings
from centralino_gateway.main import create_app
from centralino_proto.testing import ServiceHarness, serve_http, service_under_test

# Fast retries so a test sees backoff and recovery in seconds, not minutes.
FAST = {
    "webhook_backoff_base_seconds": 0.2,
    "webhook_backoff_max_seconds": 1.0,
    "webhook_poll_seconds": 0.1,
    "webhook_timeout_seconds": 3.0,
    "login_max_failures": 3,
    # Cheap hashes: the tests exercise the logic, not the cost.
    "password_hash_time_cost": 1,
    "password_hash_memory_kib": 1024,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def harness() -> AsyncIterator[ServiceHarness]:
    """The gateway app on a fresh database and a private exchange."""
    async with service_under_test(create_app, Settings, db_name="test_gateway", **FAST) as h:
        yield h


@dataclass
class Upstream:
    """A real HTTP service standing in for an owner (registrar, routing...): it echoes."""

    url: str
    seen: list[dict[str, Any]] = field(default_factory=list)


def echo_app(seen: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def echo(path: str, request: Request) -> JSONResponse:
        body = await request.body()
        record = {
            "method": request.method,
            "path": "/" + path,
            "query": request.url.query,
            "authorization": request.headers.get("authorization"),
            "idempotency_key": request.headers.get("idempotency-key"),
            "body": body.decode(errors="replace"),
        }
        seen.append(record)
        if path.endswith("/calls") and request.method == "POST":
            return JSONResponse({"call_id": uuid.uuid4().hex}, status_code=202)
        return JSONResponse(record, headers={"x-total-count": "1"})

    return app


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    seen: list[dict[str, Any]] = []
    async with serve_http(echo_app(seen), lifespan="off") as url:
        yield Upstream(url=url, seen=seen)


@pytest.fixture
async def proxied(upstream: Upstream) -> AsyncIterator[tuple[ServiceHarness, Upstream]]:
    """The gateway with every owner pointed at the echo upstream."""
    owners = {
        f"{name}_url": upstream.url
        for name in ("registrar", "routing", "rating", "portability", "vpn_ca")
    }
    async with service_under_test(
        create_app, Settings, db_name="test_gateway_proxy", **FAST, **owners
    ) as h:
        yield h, upstream


async def token(client: httpx.AsyncClient, email: str, password: str) -> dict[str, Any]:
    response = await client.post("/v1/auth/token", json={"username": email, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@dataclass
class World:
    """Accounts made through the API: the operator, two resellers, their tenants and admins."""

    operator: dict[str, str]
    reseller_a: dict[str, str]
    reseller_b: dict[str, str]
    reseller_a_id: str
    tenant_a: dict[str, Any]
    tenant_b: dict[str, Any]
    admin_a: dict[str, str]
    admin_b: dict[str, str]
    user_a: dict[str, str]


async def build_world(h: ServiceHarness) -> World:
    from centralino_gateway.seed import seed

    await seed(h.runtime)
    c = h.client
    operator = bearer(await token(c, "admin@centralino.test", "admin"))
    resellers = []
    for name in ("alpha", "beta"):
        r = await c.post(
            "/v1/resellers",
            json={
                "name": name,
                "admin_email": f"{name}@resellers.test",
                "admin_password": f"{name}-password",
            },
            headers=operator,
        )
        assert r.status_code == 201, r.text
        resellers.append(
            (r.json()["id"], bearer(await token(c, f"{name}@resellers.test", f"{name}-password")))
        )
    tenants, admins = [], []
    for (_, reseller), slug in zip(resellers, ("acme", "globex"), strict=True):
        r = await c.post("/v1/tenants", json={"slug": slug, "name": slug.title()}, headers=reseller)
        assert r.status_code == 201, r.text
        tenants.append(r.json())
        r = await c.post(
            f"/v1/tenants/{slug}/users",
            json={
                "email": f"boss@{slug}.test",
                "password": "boss-password",
                "role": "tenant_admin",
            },
            headers=reseller,
        )
        assert r.status_code == 201, r.text
        admins.append(bearer(await token(c, f"boss@{slug}.test", "boss-password")))
    r = await c.post(
        "/v1/tenants/acme/users",
        json={"email": "clerk@acme.test", "password": "clerk-password", "extension": "101"},
        headers=admins[0],
    )
    assert r.status_code == 201, r.text
    return World(
        operator=operator,
        reseller_a=resellers[0][1],
        reseller_b=resellers[1][1],
        reseller_a_id=resellers[0][0],
        tenant_a=tenants[0],
        tenant_b=tenants[1],
        admin_a=admins[0],
        admin_b=admins[1],
        user_a=bearer(await token(c, "clerk@acme.test", "clerk-password")),
    )
