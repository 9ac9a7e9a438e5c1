"""Through the gateway to a real owner: the routing service, provisioned from tenant.created."""

from typing import Any

from centralino_proto.auth import JWKSVerifier
from centralino_proto.testing import (
    ServiceHarness,
    drop_database,
    fresh_database,
    serve_http,
    until,
)
from centralino_routing.config import Settings as RoutingSettings
from centralino_routing.main import create_app as create_routing

from .conftest import build_world


async def test_extensions_through_the_gateway_to_routing(harness: ServiceHarness) -> None:
    jwks = (await harness.client.get("/.well-known/jwks.json")).json()
    db = "test_gateway_with_routing"
    settings = RoutingSettings(
        environment="test",
        database_url=await fresh_database(db),
        bus_exchange=harness.settings.bus_exchange,
        bus_queue_prefix=f"{harness.settings.bus_queue_prefix}.routing",
    )
    # Routing verifies the gateway's own tokens with the gateway's published keys.
    routing = create_routing(settings, verifier=JWKSVerifier(jwks=jwks))
    try:
        async with serve_http(routing) as url:
            harness.runtime.settings.routing_url = url  # type: ignore[attr-defined]
            w = await build_world(harness)
            c = harness.client

            async def provisioned() -> Any:
                r = await c.get("/v1/tenants/acme/extensions", headers=w.admin_a)
                return r if r.status_code == 200 else None

            # tenant.created went gateway outbox -> RabbitMQ -> routing's directory.
            await until(provisioned, timeout=30, message="routing knows acme")
            r = await c.post(
                "/v1/tenants/acme/extensions",
                json={"number": "101", "name": "Reception"},
                headers={**w.admin_a, "Idempotency-Key": "ext-101"},
            )
            assert r.status_code == 201, r.text
            assert r.json()["number"] == "101"
            listed = (await c.get("/v1/tenants/acme/extensions", headers=w.reseller_a)).json()
            assert [e["number"] for e in listed] == ["101"]
            one = await c.get("/v1/tenants/acme/extensions/101", headers=w.user_a)
            assert one.status_code == 200 and one.json()["name"] == "Reception"
            # Routing's own rules answer through the gateway, as problem+json.
            r = await c.post(
                "/v1/tenants/acme/extensions",
                json={"number": "101", "name": "Again"},
                headers=w.admin_a,
            )
            assert r.status_code == 409
            assert r.headers["content-type"] == "application/problem+json"
            r = await c.post(
                "/v1/tenants/acme/extensions",
                json={"number": "102", "name": "Clerk"},
                headers=w.user_a,
            )
            assert r.status_code == 403, "routing refuses a tenant user's write"
            # The other tenant sees nothing of acme's.
            assert (
                await c.get("/v1/tenants/acme/extensions", headers=w.admin_b)
            ).status_code == 404

            async def globex_list() -> Any:
                r = await c.get("/v1/tenants/globex/extensions", headers=w.admin_b)
                return (r.json(),) if r.status_code == 200 else None

            assert await until(globex_list, timeout=30, message="routing knows globex") == ([],)
    finally:
        await drop_database(db)
