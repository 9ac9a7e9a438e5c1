import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from centralino_gateway.config import Settings
from centralino_gateway.main import create_app
from centralino_proto.events import DeviceRegistered, Transport
from centralino_proto.testing import ServiceHarness, serve_http, until

from .conftest import build_world


async def _read_events(
    client: httpx.AsyncClient,
    path: str,
    headers: dict[str, str],
    out: list[dict[str, Any]],
    ready: asyncio.Event,
) -> None:
    async with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event: dict[str, Any] = {}
        async for line in response.aiter_lines():
            if line.startswith(": subscribed"):
                ready.set()
            elif line.startswith("event:"):
                event["event"] = line.split(":", 1)[1].strip()
            elif line.startswith("id:"):
                event["id"] = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                event["data"] = json.loads(line.split(":", 1)[1])
            elif line == "" and "data" in event:
                out.append(event)
                event = {}


async def test_sse_streams_a_tenants_own_live_events(harness: ServiceHarness) -> None:
    w = await build_world(harness)
    settings = Settings(**{**harness.settings.model_dump(), "migrate_on_start": False})
    async with (
        serve_http(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        everything: list[dict[str, Any]] = []
        registrations: list[dict[str, Any]] = []
        ready_all, ready_reg = asyncio.Event(), asyncio.Event()
        readers = [
            asyncio.create_task(
                _read_events(client, "/v1/tenants/acme/events", w.admin_a, everything, ready_all)
            ),
            asyncio.create_task(
                _read_events(
                    client,
                    "/v1/tenants/acme/events?types=device.registered",
                    w.user_a,
                    registrations,
                    ready_reg,
                )
            ),
        ]
        try:
            await asyncio.wait_for(asyncio.gather(ready_all.wait(), ready_reg.wait()), 20)
            acme_id = uuid.UUID(w.tenant_a["id"])
            # Another service's event (the registrar's), as it would reach the bus.
            await harness.publish(
                DeviceRegistered(
                    tenant_id=acme_id,
                    device_id=uuid.uuid4(),
                    extension="101",
                    username="101",
                    aor="sip:101@acme.centralino.test",
                    contact="sip:101@192.0.2.10:5060",
                    source="192.0.2.10:5060",
                    transport=Transport.udp,
                    expires_at=datetime.now(UTC) + timedelta(hours=1),
                ),
                tenant_id=acme_id,
            )
            r = await client.post(
                "/v1/tenants/globex/users",
                json={"email": "other@globex.test", "password": "other-password"},
                headers=w.admin_b,
            )
            assert r.status_code == 201
            r = await client.patch(
                "/v1/tenants/acme", json={"name": "Acme Live"}, headers=w.admin_a
            )
            assert r.status_code == 200
            await until(lambda: len(everything) >= 2, timeout=20, message="two acme events")
            await until(lambda: len(registrations) >= 1, timeout=20, message="the registration")
            await asyncio.sleep(0.5)
        finally:
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    assert [e["event"] for e in everything] == ["device.registered", "tenant.updated"]
    assert all(e["data"]["tenant_id"] == w.tenant_a["id"] for e in everything), "nothing of globex"
    assert everything[0]["id"] == everything[0]["data"]["id"]
    assert [e["event"] for e in registrations] == ["device.registered"]


async def test_sse_requires_a_token_and_refuses_other_tenants(harness: ServiceHarness) -> None:
    w = await build_world(harness)
    assert (await harness.client.get("/v1/tenants/acme/events")).status_code == 401
    assert (
        await harness.client.get("/v1/tenants/acme/events", headers=w.admin_b)
    ).status_code == 404
    assert (
        await harness.client.get("/v1/tenants/acme/events", headers=w.reseller_b)
    ).status_code == 404
    r = await harness.client.get("/v1/tenants/acme/events?types=bogus.type", headers=w.admin_a)
    assert r.status_code == 422
