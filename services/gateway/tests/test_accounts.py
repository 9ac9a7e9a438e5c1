import uuid

from sqlalchemy import text

from centralino_gateway.seed import seed
from centralino_proto.demo import BELLAVISTA, RESELLER_ID, TENANTS
from centralino_proto.testing import ServiceHarness

from .conftest import bearer, build_world, token


async def test_seed_publishes_tenant_created_once_with_demo_ids(harness: ServiceHarness) -> None:
    async with harness.probe("tenant.*") as probe:
        await seed(harness.runtime)
        await seed(harness.runtime)
        created = await probe.wait_for("tenant.created", count=3)
        by_slug = {e.data.slug: e for e in created}
        assert set(by_slug) == {t.slug for t in TENANTS}
        for demo in TENANTS:
            event = by_slug[demo.slug]
            assert event.tenant_id == demo.tenant_id == event.data.tenant_id
            assert event.data.reseller_id == RESELLER_ID
            assert event.data.sip_realm == f"{demo.slug}.centralino.test"
            assert event.producer == "gateway"
        await seed(harness.runtime)
        # The relay had every chance to publish duplicates; there are none.
        assert len(probe.of_type("tenant.created")) == 3
    reseller = bearer(await token(harness.client, "reseller@centralino.test", "reseller"))
    listed = (await harness.client.get("/v1/tenants", headers=reseller)).json()
    assert listed["total"] == 3
    one = await harness.client.get(f"/v1/tenants/{BELLAVISTA.tenant_id}", headers=reseller)
    assert one.json()["slug"] == "bellavista" and one.json()["kind"] == "hotel"


async def test_tenant_lifecycle_events_and_reseller_scoping(harness: ServiceHarness) -> None:
    async with harness.probe("tenant.*", "user.*") as probe:
        w = await build_world(harness)
        c = harness.client
        created = await probe.wait_for("tenant.created", count=5)
        acme = next(e for e in created if e.data.slug == "acme")
        assert acme.data.sip_realm == "acme.centralino.test"
        assert str(acme.data.reseller_id) == w.reseller_a_id
        users = await probe.wait_for("user.created", count=3)
        assert {e.data.email for e in users} == {
            "boss@acme.test",
            "boss@globex.test",
            "clerk@acme.test",
        }

        # A reseller sees only its own tenants; another's is 404, not 403 (no probing).
        mine = (await c.get("/v1/tenants", headers=w.reseller_a)).json()
        assert [t["slug"] for t in mine["items"]] == ["acme"]
        assert (await c.get("/v1/tenants/globex", headers=w.reseller_a)).status_code == 404
        assert (await c.get("/v1/tenants/acme", headers=w.admin_b)).status_code == 404
        # A tenant sees itself only.
        assert [
            t["slug"] for t in (await c.get("/v1/tenants", headers=w.admin_a)).json()["items"]
        ] == ["acme"]
        # A reseller cannot plant a tenant under another reseller.
        r = await c.post(
            "/v1/tenants",
            json={"slug": "sneaky", "name": "S", "reseller_id": str(RESELLER_ID)},
            headers=w.reseller_b,
        )
        assert r.status_code == 403
        # Tenants do not create tenants.
        assert (
            await c.post("/v1/tenants", json={"slug": "x1", "name": "X"}, headers=w.admin_a)
        ).status_code == 403

        r = await c.patch("/v1/tenants/acme", json={"name": "Acme S.p.A."}, headers=w.admin_a)
        assert r.status_code == 200 and r.json()["name"] == "Acme S.p.A."
        updated = await probe.wait_for("tenant.updated")
        assert updated[0].data.name == "Acme S.p.A."
        assert (
            await c.patch("/v1/tenants/acme", json={"active": False}, headers=w.admin_a)
        ).status_code == 403

        assert (await c.delete("/v1/tenants/acme", headers=w.admin_a)).status_code == 403
        assert (await c.delete("/v1/tenants/acme", headers=w.reseller_a)).status_code == 204
        deleted = await probe.wait_for("tenant.deleted")
        assert deleted[0].data.slug == "acme"
        assert (await c.get("/v1/tenants/acme", headers=w.operator)).status_code == 404
        # Its people can no longer log in.
        r = await c.post(
            "/v1/auth/token", json={"username": "boss@acme.test", "password": "boss-password"}
        )
        assert r.status_code == 401


async def test_bad_input_is_problem_json_and_nothing_half_written(harness: ServiceHarness) -> None:
    w = await build_world(harness)
    c = harness.client
    for body in (
        {"slug": "Not A Slug", "name": "x"},
        {"slug": "ok-slug", "name": ""},
        {"slug": "ok-slug", "name": "x", "timezone": "Mars/Olympus"},
        {"slug": "ok-slug", "name": "x", "kind": "castle"},
    ):
        r = await c.post("/v1/tenants", json=body, headers=w.operator)
        assert r.status_code == 422, body
        assert r.headers["content-type"] == "application/problem+json"
    r = await c.post("/v1/tenants", json={"slug": "acme", "name": "again"}, headers=w.operator)
    assert r.status_code == 409 and "acme" in r.json()["detail"]
    r = await c.post(
        "/v1/tenants",
        json={"slug": "orphan", "name": "x", "reseller_id": str(uuid.uuid4())},
        headers=w.operator,
    )
    assert r.status_code == 422
    assert (await c.get("/v1/tenants?q=orphan", headers=w.operator)).json()["total"] == 0
    r = await c.post(
        "/v1/tenants/acme/users",
        json={"email": "boss@acme.test", "password": "whatever-long"},
        headers=w.admin_a,
    )
    assert r.status_code == 409
    r = await c.post(
        "/v1/tenants/acme/users",
        json={"email": "op@acme.test", "password": "whatever-long", "role": "operator"},
        headers=w.admin_a,
    )
    assert r.status_code == 422, "no escalation to operator"


async def test_users_paging_filtering_and_roles(harness: ServiceHarness) -> None:
    w = await build_world(harness)
    c = harness.client
    for i in range(5):
        r = await c.post(
            "/v1/tenants/acme/users",
            json={
                "email": f"agent{i}@acme.test",
                "password": "agent-password",
                "name": f"Agent {i}",
            },
            headers=w.admin_a,
        )
        assert r.status_code == 201
    page = (
        await c.get("/v1/tenants/acme/users?limit=2&offset=1&q=agent", headers=w.admin_a)
    ).json()
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert [u["email"] for u in page["items"]] == ["agent1@acme.test", "agent2@acme.test"]
    assert all("password" not in str(u) for u in page["items"])
    # A tenant user cannot manage users, but may read itself.
    assert (await c.get("/v1/tenants/acme/users", headers=w.user_a)).status_code == 403
    me = (await c.get("/v1/auth/me", headers=w.user_a)).json()
    assert (await c.get(f"/v1/tenants/acme/users/{me['sub']}", headers=w.user_a)).status_code == 200
    clerk = me["sub"]
    r = await c.patch(f"/v1/tenants/acme/users/{clerk}", json={"active": False}, headers=w.admin_a)
    assert r.status_code == 200 and r.json()["active"] is False
    r = await c.post(
        "/v1/auth/token", json={"username": "clerk@acme.test", "password": "clerk-password"}
    )
    assert r.status_code == 401
    assert (await c.delete(f"/v1/tenants/acme/users/{clerk}", headers=w.admin_a)).status_code == 204
    assert (await c.get(f"/v1/tenants/acme/users/{clerk}", headers=w.admin_a)).status_code == 404
    # Resellers: the operator sees all, a reseller its own.
    assert (await c.get("/v1/resellers", headers=w.operator)).json()["total"] == 3
    assert (await c.get("/v1/resellers", headers=w.reseller_a)).json()["total"] == 1
    assert (await c.get("/v1/resellers", headers=w.admin_a)).status_code == 403


async def test_idempotency_key_creates_a_tenant_once(harness: ServiceHarness) -> None:
    await seed(harness.runtime)
    operator = bearer(await token(harness.client, "admin@centralino.test", "admin"))
    headers = {**operator, "Idempotency-Key": "create-hotel-1"}
    async with harness.probe("tenant.created") as probe:
        first = await harness.client.post(
            "/v1/tenants",
            json={"slug": "miramare", "name": "Miramare", "kind": "hotel"},
            headers=headers,
        )
        again = await harness.client.post(
            "/v1/tenants",
            json={"slug": "miramare", "name": "Miramare", "kind": "hotel"},
            headers=headers,
        )
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
        await probe.wait_for("tenant.created", count=1)
        # A plain retry without the key is a conflict, not a second tenant.
        r = await harness.client.post(
            "/v1/tenants", json={"slug": "miramare", "name": "M"}, headers=operator
        )
        assert r.status_code == 409
        assert len([e for e in probe.of_type("tenant.created") if e.data.slug == "miramare"]) == 1
    async with harness.runtime.sessionmaker() as session:
        stored = await session.scalar(
            text("SELECT password_hash FROM user_account WHERE email = 'admin@centralino.test'")
        )
    assert stored.startswith("$argon2id$")
