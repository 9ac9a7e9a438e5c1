import json

from sqlalchemy import text

from centralino_proto.auth import JWKSVerifier, Role
from centralino_proto.testing import ServiceHarness, until

from .conftest import Upstream, build_world


async def _verify(h: ServiceHarness, authorization: str) -> object:
    jwks = (await h.client.get("/.well-known/jwks.json")).json()
    return await JWKSVerifier(jwks=jwks).verify(authorization.removeprefix("Bearer "))


async def test_facade_forwards_method_path_query_body_and_callers_token(
    proxied: tuple[ServiceHarness, Upstream],
) -> None:
    h, up = proxied
    w = await build_world(h)
    c = h.client
    r = await c.get("/v1/tenants/acme/extensions?limit=5&q=10", headers=w.admin_a)
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["method"] == "GET" and seen["path"] == "/v1/tenants/acme/extensions"
    assert seen["query"] == "limit=5&q=10"
    assert seen["authorization"] == w.admin_a["Authorization"], "the caller's own token"
    assert r.headers["x-total-count"] == "1"

    body = {"number": "+39062022600", "target": {"extension": "400"}}
    r = await c.post(
        "/v1/tenants/acme/numbers", json=body, headers={**w.admin_a, "Idempotency-Key": "k-1"}
    )
    assert r.status_code == 200
    assert json.loads(r.json()["body"]) == body
    assert r.json()["idempotency_key"] == "k-1"
    # The same key again: replayed by the gateway, the owner is not asked twice.
    before = len(up.seen)
    again = await c.post(
        "/v1/tenants/acme/numbers", json=body, headers={**w.admin_a, "Idempotency-Key": "k-1"}
    )
    assert again.status_code == 200 and again.json() == r.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(up.seen) == before
    other = await c.post(
        "/v1/tenants/acme/numbers",
        json={"number": "+39000"},
        headers={**w.admin_a, "Idempotency-Key": "k-1"},
    )
    assert other.status_code == 422

    # Each owner gets its own paths (registrar's devices under routing's extension path).
    r = await c.delete("/v1/tenants/acme/extensions/101/devices/d1", headers=w.admin_a)
    assert r.json()["path"] == "/v1/tenants/acme/extensions/101/devices/d1"
    r = await c.get("/v1/tenants/acme/cdrs?from=2026-11-01", headers=w.reseller_a)
    assert r.status_code == 200


async def test_facade_refuses_other_tenants_before_reaching_the_owner(
    proxied: tuple[ServiceHarness, Upstream],
) -> None:
    h, up = proxied
    w = await build_world(h)
    c = h.client
    before = len(up.seen)
    for headers in (w.admin_b, w.reseller_b):
        for path in (
            "/v1/tenants/acme/extensions",
            "/v1/tenants/acme/balance",
            "/v1/tenants/acme/cdrs",
        ):
            r = await c.get(path, headers=headers)
            assert r.status_code == 404, (path, r.text)
    assert (await c.get("/v1/tenants/acme/extensions")).status_code == 401
    # Per-call APIs are for services and the operator only.
    assert (await c.post("/v1/route", json={}, headers=w.admin_a)).status_code == 403
    assert (await c.post("/v1/authorize", json={}, headers=w.reseller_a)).status_code == 403
    assert len(up.seen) == before, "nothing reached the owner"
    r = await c.post("/v1/route", json={"digits": "100"}, headers=w.operator)
    assert r.status_code == 200 and r.json()["path"] == "/v1/route"


async def test_owner_down_is_503_problem(harness: ServiceHarness) -> None:
    from .conftest import free_port

    w = await build_world(harness)
    harness.runtime.settings.routing_url = f"http://127.0.0.1:{free_port()}"  # type: ignore[attr-defined]
    r = await harness.client.get("/v1/tenants/acme/extensions", headers=w.admin_a)
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert "routing" in r.json()["detail"]


async def test_api_key_click_to_dial_shown_once_hashed_scoped_revocable(
    proxied: tuple[ServiceHarness, Upstream],
) -> None:
    h, up = proxied
    w = await build_world(h)
    c = h.client
    r = await c.post(
        "/v1/tenants/acme/api-keys",
        json={"name": "CRM", "scopes": ["calls:write", "cdrs:read"]},
        headers=w.admin_a,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    key = created["key"]
    assert key.startswith("ck_") and created["prefix"] in key
    listed = (await c.get("/v1/tenants/acme/api-keys", headers=w.admin_a)).json()
    assert listed["total"] == 1 and "key" not in listed["items"][0]
    async with h.runtime.sessionmaker() as session:
        stored = (await session.execute(text("SELECT * FROM api_key"))).mappings().one()
    assert key.split("_", 2)[2] not in json.dumps({k: str(v) for k, v in stored.items()})

    api = {"Authorization": f"Bearer {key}"}
    r = await c.post(
        "/v1/tenants/acme/calls",
        json={"extension": "101", "destination": "0612345678"},
        headers=api,
    )
    assert r.status_code == 202, r.text
    assert r.json()["call_id"]
    call = up.seen[-1]
    assert call["path"] == "/v1/tenants/acme/calls"
    assert json.loads(call["body"]) == {"extension": "101", "destination": "0612345678"}
    # The owner receives a short-lived tenant-scoped token minted by the gateway, not the key.
    claims = await _verify(h, call["authorization"])
    assert claims.role is Role.tenant_user  # type: ignore[attr-defined]
    assert str(claims.tenant_id) == w.tenant_a["id"]  # type: ignore[attr-defined]
    assert claims.exp - claims.iat <= 120  # type: ignore[attr-defined]
    assert "calls:write" in claims.scopes  # type: ignore[attr-defined]

    # X-API-Key works too; scopes hold; another tenant is out of reach.
    xkey = {"X-API-Key": key}
    assert (await c.get("/v1/tenants/acme/cdrs", headers=xkey)).status_code == 200
    assert (await c.get("/v1/tenants/acme/balance", headers=xkey)).status_code == 403
    assert (await c.get("/v1/tenants/globex/cdrs", headers=xkey)).status_code == 404
    assert (await c.get("/v1/tenants/acme/api-keys", headers=xkey)).status_code == 403
    assert (await c.get("/v1/tenants/acme/users", headers=xkey)).status_code == 403
    reader = await c.post(
        "/v1/tenants/acme/api-keys",
        json={"name": "HR", "scopes": ["users:read"], "role": "tenant_admin"},
        headers=w.admin_a,
    )
    rkey = {"X-API-Key": reader.json()["key"]}
    assert (await c.get("/v1/tenants/acme/users", headers=rkey)).status_code == 200
    r = await c.post(
        "/v1/tenants/acme/users",
        json={"email": "k@acme.test", "password": "k-password"},
        headers=rkey,
    )
    assert r.status_code == 403
    bad = await c.post("/v1/tenants/acme/calls", json={"extension": "1x"}, headers=api)
    assert bad.status_code == 422

    assert (
        await c.delete(f"/v1/tenants/acme/api-keys/{created['id']}", headers=w.admin_a)
    ).status_code == 204
    assert (await c.get("/v1/tenants/acme/cdrs", headers=xkey)).status_code == 401
    assert (
        await c.get("/v1/tenants/acme/cdrs", headers={"X-API-Key": "ck_nonsense"})
    ).status_code == 401


async def test_changes_made_by_another_replica_reach_the_proxy_within_seconds(
    proxied: tuple[ServiceHarness, Upstream],
) -> None:
    h, _ = proxied
    w = await build_world(h)
    c = h.client
    assert (await c.get("/v1/tenants/acme/extensions", headers=w.admin_a)).status_code == 200
    me = (await c.get("/v1/auth/me", headers=w.reseller_a)).json()
    # Another replica revokes a token and closes a tenant: straight in the shared database.
    async with h.runtime.sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO revoked_access_token (jti, expires_at) "
                "VALUES (:jti, now() + interval '1 hour')"
            ),
            {"jti": me["jti"]},
        )
        await session.execute(text("UPDATE tenant SET deleted_at = now() WHERE slug = 'acme'"))

    async def settled() -> bool:
        revoked = await c.get("/v1/tenants/globex/extensions", headers=w.reseller_a)
        closed = await c.get("/v1/tenants/acme/extensions", headers=w.admin_a)
        return revoked.status_code == 401 and closed.status_code == 404

    await until(settled, timeout=5, message="revocation and closure seen by this replica")


async def test_a_tenant_user_clicks_to_dial_only_from_its_own_extension(
    proxied: tuple[ServiceHarness, Upstream],
) -> None:
    h, up = proxied
    w = await build_world(h)
    c = h.client
    call = {"extension": "101", "destination": "+390612345678"}
    r = await c.post("/v1/tenants/acme/calls", json=call, headers=w.user_a)
    assert r.status_code == 202, r.text
    before = len(up.seen)
    r = await c.post("/v1/tenants/acme/calls", json={**call, "extension": "100"}, headers=w.user_a)
    assert r.status_code == 403
    assert len(up.seen) == before
    # The tenant's admin (a receptionist) may ring any of its extensions.
    r = await c.post("/v1/tenants/acme/calls", json={**call, "extension": "100"}, headers=w.admin_a)
    assert r.status_code == 202
    assert (await c.post("/v1/tenants/acme/calls", json=call, headers=w.admin_b)).status_code == 404
