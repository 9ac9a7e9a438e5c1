import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from standardwebhooks import Webhook

from centralino_gateway.config import Settings
from centralino_gateway.webhooks import check_url
from centralino_proto.testing import ServiceHarness, serve_http, until
from centralino_proto.web import Problem

from .conftest import build_world, free_port


@dataclass
class Receiver:
    """A CRM's webhook endpoint: records what arrives, answers `status`."""

    status: int = 204
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            self.received.append((dict(request.headers), await request.body()))
            return Response(status_code=self.status)

        return app

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every delivery checked by the independent Standard Webhooks implementation."""
        verifier = Webhook(secret)
        out = []
        for headers, body in self.received:
            payload = verifier.verify(body, headers)
            assert headers["webhook-id"] == payload["id"]
            out.append(payload)
        return out


async def _subscribe(
    h: ServiceHarness, tenant: str, url: str, headers: dict[str, str], **extra: Any
) -> dict[str, Any]:
    r = await h.client.post(
        f"/v1/tenants/{tenant}/webhooks", json={"url": url, **extra}, headers=headers
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    assert body["secret"].startswith("whsec_")
    return body


async def test_signed_deliveries_reach_a_receiver_that_was_down(harness: ServiceHarness) -> None:
    w = await build_world(harness)
    c = harness.client
    acme_port = free_port()
    acme_rx, globex_rx = Receiver(), Receiver()
    async with serve_http(globex_rx.app(), lifespan="off") as globex_url:
        acme_hook = await _subscribe(
            harness,
            "acme",
            f"http://127.0.0.1:{acme_port}/hook",
            w.admin_a,
            event_types=["user.created", "tenant.updated"],
        )
        globex_hook = await _subscribe(harness, "globex", f"{globex_url}/hook", w.admin_b)
        assert (
            "secret"
            not in (
                await c.get(f"/v1/tenants/acme/webhooks/{acme_hook['id']}", headers=w.admin_a)
            ).json()
        )

        # Events while acme's receiver is down.
        for i in range(3):
            r = await c.post(
                "/v1/tenants/acme/users",
                json={"email": f"new{i}@acme.test", "password": "new-password"},
                headers=w.admin_a,
            )
            assert r.status_code == 201
        assert (
            await c.patch("/v1/tenants/acme", json={"name": "Acme 2"}, headers=w.admin_a)
        ).status_code == 200
        r = await c.post(
            "/v1/tenants/globex/users",
            json={"email": "x@globex.test", "password": "new-password"},
            headers=w.admin_b,
        )
        assert r.status_code == 201

        async def retried_while_down() -> bool:
            r = await c.get(
                f"/v1/tenants/acme/webhooks/{acme_hook['id']}/attempts?success=false&limit=500",
                headers=w.admin_a,
            )
            failed = r.json()["items"]
            # Every event tried, and at least one retried after a backoff.
            return len({a["event_id"] for a in failed}) >= 4 and any(
                a["attempt"] >= 2 for a in failed
            )

        await until(
            retried_while_down, timeout=30, message="failed attempts and retries while down"
        )

        async with serve_http(acme_rx.app(), port=acme_port, lifespan="off"):
            await until(
                lambda: len(acme_rx.received) >= 4,
                timeout=30,
                message="4 deliveries after recovery",
            )
            await until(lambda: len(globex_rx.received) >= 1, timeout=30, message="globex delivery")

        acme_events = acme_rx.verified(acme_hook["secret"])
        assert sorted(e["type"] for e in acme_events) == [
            "tenant.updated",
            "user.created",
            "user.created",
            "user.created",
        ]
        assert {e["tenant_id"] for e in acme_events} == {w.tenant_a["id"]}
        assert len({e["id"] for e in acme_events}) == 4, "each event once"
        emails = {e["data"]["email"] for e in acme_events if e["type"] == "user.created"}
        assert emails == {"new0@acme.test", "new1@acme.test", "new2@acme.test"}

        globex_events = globex_rx.verified(globex_hook["secret"])
        assert {e["tenant_id"] for e in globex_events} == {w.tenant_b["id"]}, "only its own events"
        with pytest.raises(Exception, match="signature"):
            Webhook(acme_hook["secret"]).verify(globex_rx.received[0][1], globex_rx.received[0][0])

    attempts = (
        await c.get(
            f"/v1/tenants/acme/webhooks/{acme_hook['id']}/attempts?limit=500", headers=w.admin_a
        )
    ).json()
    ok = [a for a in attempts["items"] if a["success"]]
    assert len(ok) == 4 and all(a["status_code"] == 204 for a in ok)
    assert any(a["error"] and a["attempt"] >= 2 for a in attempts["items"] if not a["success"])
    # Another tenant cannot read this log.
    r = await c.get(f"/v1/tenants/acme/webhooks/{acme_hook['id']}/attempts", headers=w.admin_b)
    assert r.status_code == 404


async def test_failing_endpoint_is_disabled_then_reenabled_and_catches_up(
    harness: ServiceHarness,
) -> None:
    harness.runtime.settings.webhook_disable_after_failures = 3  # type: ignore[attr-defined]
    w = await build_world(harness)
    c = harness.client
    rx = Receiver(status=500)
    async with serve_http(rx.app(), lifespan="off") as url:
        hook = await _subscribe(
            harness, "acme", f"{url}/hook", w.admin_a, event_types=["user.created"]
        )
        r = await c.post(
            "/v1/tenants/acme/users",
            json={"email": "a@acme.test", "password": "a-password"},
            headers=w.admin_a,
        )
        assert r.status_code == 201

        async def disabled() -> dict[str, Any] | None:
            got = (await c.get(f"/v1/tenants/acme/webhooks/{hook['id']}", headers=w.admin_a)).json()
            return got if not got["active"] else None

        state = await until(disabled, timeout=30, message="subscription disabled")
        assert "3 failed deliveries" in state["disabled_reason"]
        # While disabled, events still queue.
        r = await c.post(
            "/v1/tenants/acme/users",
            json={"email": "b@acme.test", "password": "b-password"},
            headers=w.admin_a,
        )
        assert r.status_code == 201
        tried = len(rx.received)
        rx.status = 200
        r = await c.patch(
            f"/v1/tenants/acme/webhooks/{hook['id']}", json={"active": True}, headers=w.admin_a
        )
        assert (
            r.status_code == 200
            and r.json()["active"] is True
            and r.json()["disabled_reason"] is None
        )

        def both_delivered() -> bool:
            ok = [json.loads(b)["data"]["email"] for h, b in rx.received[tried:]]
            return {"a@acme.test", "b@acme.test"} <= set(ok)

        await until(both_delivered, timeout=30, message="caught up after re-enabling")
        rx.verified(hook["secret"])

        # Secret rotation: for a while each delivery is signed with the new and the old secret.
        r = await c.post(f"/v1/tenants/acme/webhooks/{hook['id']}/rotate-secret", headers=w.admin_a)
        assert r.status_code == 200, r.text
        new_secret = r.json()["secret"]
        assert new_secret != hook["secret"]
        seen = len(rx.received)
        r = await c.post(
            "/v1/tenants/acme/users",
            json={"email": "c@acme.test", "password": "c-password"},
            headers=w.admin_a,
        )
        assert r.status_code == 201
        await until(lambda: len(rx.received) > seen, timeout=30, message="delivery after rotation")
        headers, body = rx.received[-1]
        assert len(headers["webhook-signature"].split(" ")) == 2
        for secret in (new_secret, hook["secret"]):
            assert Webhook(secret).verify(body, headers)["data"]["email"] == "c@acme.test"


async def test_webhook_urls_and_event_types_are_validated(harness: ServiceHarness) -> None:
    w = await build_world(harness)
    for url in (
        "ftp://127.0.0.1/x",
        "http://user:pw@127.0.0.1/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://192.168.1.10:8080/hook",
        "not a url",
    ):
        r = await harness.client.post(
            "/v1/tenants/acme/webhooks", json={"url": url}, headers=w.admin_a
        )
        assert r.status_code == 422, url
        assert r.headers["content-type"] == "application/problem+json"
    r = await harness.client.post(
        "/v1/tenants/acme/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "event_types": ["call.nonexistent"]},
        headers=w.admin_a,
    )
    assert r.status_code == 422 and "call.nonexistent" in r.json()["detail"]
    # Tenant users do not manage webhooks.
    r = await harness.client.post(
        "/v1/tenants/acme/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=w.user_a
    )
    assert r.status_code == 403
    # Production allows no loopback unless the operator lists it.
    production = Settings(
        environment="production", key_encryption_key="k" * 40, service_client_secret="s" * 40
    )
    with pytest.raises(Problem):
        await check_url("http://127.0.0.1:8080/hook", production)
    with pytest.raises(Problem):
        await check_url("http://localhost:8080/hook", production)
    listed = production.model_copy(update={"webhook_allowed_hosts": ["127.0.0.1"]})
    await check_url("http://127.0.0.1:8080/hook", listed)
    await check_url("https://93.184.215.14/hook", production)
