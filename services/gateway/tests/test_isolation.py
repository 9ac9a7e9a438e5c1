"""For every route in the gateway's OpenAPI: another tenant and a foreign reseller get 403/404."""

import re

from centralino_proto.testing import ServiceHarness

from .conftest import Upstream, build_world

# Routes that name no tenant and hold no tenant's data.
PUBLIC = {
    "/healthz",
    "/readyz",
    "/.well-known/jwks.json",
    "/v1/auth/token",
    "/v1/auth/revoke",
    "/v1/event-types",
}


async def test_every_route_refuses_other_tenants_and_foreign_resellers(
    proxied: tuple[ServiceHarness, Upstream],
) -> None:
    h, upstream = proxied
    w = await build_world(h)
    c = h.client
    victim_id = w.tenant_a["id"]
    # Real objects of the victim, so a leak would show.
    hook = await c.post(
        "/v1/tenants/acme/webhooks", json={"url": "http://127.0.0.1:9/h"}, headers=w.admin_a
    )
    key = await c.post("/v1/tenants/acme/api-keys", json={"name": "crm"}, headers=w.admin_a)
    clerk = (await c.get("/v1/auth/me", headers=w.user_a)).json()["sub"]
    globex_key = (
        await c.post("/v1/tenants/globex/api-keys", json={"name": "crm"}, headers=w.admin_b)
    ).json()["key"]
    params = {
        "ext": "101",
        "rest": "item-1",
        "user_id": clerk,
        "webhook_id": hook.json()["id"],
        "key_id": key.json()["id"],
        "reseller_id": w.reseller_a_id,
    }
    attackers = {
        "other tenant admin": w.admin_b,
        "foreign reseller": w.reseller_b,
        "other tenant API key": {"X-API-Key": globex_key},
    }

    spec = (await c.get("/openapi.json")).json()
    checked = 0
    for template, operations in spec["paths"].items():
        if template in PUBLIC:
            continue
        scoped = "{tenant}" in template or "{reseller_id}" in template
        for method, operation in operations.items():
            body = {} if "requestBody" in operation else None
            # Slug and id both for one attacker, the slug for the others (time).
            tries = [("acme", who) for who in attackers] + [(victim_id, "other tenant admin")]
            for ref, who in tries:
                path = template.replace("{tenant}", ref)
                path = re.sub(r"\{(\w+)\}", lambda m: params[m.group(1)], path)
                before = len(upstream.seen)
                r = await c.request(method.upper(), path, headers=attackers[who], json=body)
                if scoped:
                    assert r.status_code in (403, 404), (who, method, path, r.status_code, r.text)
                    assert len(upstream.seen) == before, (who, method, path, "reached the owner")
                else:
                    assert r.status_code < 500, (who, method, path, r.status_code)
                    assert victim_id not in r.text and "acme" not in r.text, (who, method, path)
                checked += 1
    # Every tenant route of the table was walked (gateway's own and proxied ones).
    assert checked > 500
    assert not [s for s in upstream.seen if "/tenants/acme" in s["path"] or victim_id in s["path"]]
    # Sanity: the same routes do answer their own tenant.
    assert (await c.get("/v1/tenants/acme/users", headers=w.admin_a)).status_code == 200
    assert (await c.get("/v1/tenants/acme/extensions", headers=w.reseller_a)).status_code == 200
