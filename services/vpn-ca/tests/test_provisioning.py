"""Remote provisioning: one-time expiring URLs, phone-model bundles, the fetch log."""

import io
import tarfile
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlmodel import col

from centralino_proto.testing import ServiceHarness
from centralino_vpn_ca.bundles import phone_models
from centralino_vpn_ca.models import ProvisioningToken

BASE = "/v1/tenants/bellavista"


async def setup(harness: ServiceHarness) -> tuple[dict[str, str], dict[str, object]]:
    tenant = await harness.add_tenant("bellavista")
    headers = harness.mint.headers("tenant_admin", tenant_id=tenant.tenant_id)
    assert (await harness.client.post(f"{BASE}/ca", json={}, headers=headers)).status_code == 201
    cert = await harness.client.post(
        f"{BASE}/certificates",
        json={"extension": "105", "device_id": str(uuid.uuid4())},
        headers=headers,
    )
    return headers, cert.json()


async def token_for(
    harness: ServiceHarness, headers: dict[str, str], cert_id: object, model: str
) -> dict[str, str]:
    response = await harness.client.post(
        f"{BASE}/provisioning-tokens",
        json={"certificate_id": cert_id, "model": model},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


async def test_a_token_serves_once_then_410_and_every_fetch_is_logged(
    harness: ServiceHarness,
) -> None:
    headers, cert = await setup(harness)
    issued = await token_for(harness, headers, cert["id"], "generic")
    assert issued["url"].endswith(f"/v1/provisioning/{issued['token']}")
    first = await harness.client.get(
        f"/v1/provisioning/{issued['token']}",
        headers={"User-Agent": "Yealink SIP-T46U", "X-Forwarded-For": "203.0.113.7"},
    )
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/x-openvpn-profile"
    profile = first.text
    for block in ("<ca>", "<cert>", "<key>", "<tls-crypt>", "remote-cert-tls server", "client"):
        assert block in profile
    assert "PRIVATE KEY" in profile
    second = await harness.client.get(f"/v1/provisioning/{issued['token']}")
    assert second.status_code == 410
    assert second.headers["content-type"] == "application/problem+json"
    assert second.json()["title"] == "Token used"
    unknown = await harness.client.get("/v1/provisioning/" + "x" * 43)
    assert unknown.status_code == 404
    detail = (
        await harness.client.get(f"{BASE}/provisioning-tokens/{issued['id']}", headers=headers)
    ).json()
    assert [(f["outcome"], f["status"]) for f in detail["fetches"]] == [
        ("served", 200),
        ("used", 410),
    ]
    assert detail["fetches"][0]["user_agent"] == "Yealink SIP-T46U"
    assert detail["fetches"][0]["forwarded_for"] == "203.0.113.7"
    assert detail["used_at"] is not None
    listed = (await harness.client.get(f"{BASE}/provisioning-tokens", headers=headers)).json()
    assert "token" not in listed[0] and "token_hash" not in listed[0]


async def test_expired_withdrawn_and_revoked_tokens_get_410(harness: ServiceHarness) -> None:
    headers, cert = await setup(harness)
    expired = await token_for(harness, headers, cert["id"], "generic")
    async with harness.runtime.sessionmaker() as session, session.begin():
        await session.execute(
            update(ProvisioningToken)
            .where(col(ProvisioningToken.id) == uuid.UUID(expired["id"]))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    response = await harness.client.get(f"/v1/provisioning/{expired['token']}")
    assert response.status_code == 410
    assert response.json()["title"] == "Token expired"

    withdrawn = await token_for(harness, headers, cert["id"], "generic")
    assert (
        await harness.client.delete(
            f"{BASE}/provisioning-tokens/{withdrawn['id']}", headers=headers
        )
    ).status_code == 204
    assert (await harness.client.get(f"/v1/provisioning/{withdrawn['token']}")).status_code == 410

    pending = await token_for(harness, headers, cert["id"], "yealink")
    await harness.client.post(f"{BASE}/certificates/{cert['id']}/revoke", json={}, headers=headers)
    refused = await harness.client.get(f"/v1/provisioning/{pending['token']}")
    assert refused.status_code == 410
    assert refused.json()["title"] == "Certificate withdrawn"
    # No new token for a revoked certificate.
    again = await harness.client.post(
        f"{BASE}/provisioning-tokens", json={"certificate_id": cert["id"]}, headers=headers
    )
    assert again.status_code == 409


async def test_bad_token_requests(harness: ServiceHarness) -> None:
    headers, cert = await setup(harness)
    unknown_model = await harness.client.post(
        f"{BASE}/provisioning-tokens",
        json={"certificate_id": cert["id"], "model": "nokia-3310"},
        headers=headers,
    )
    assert unknown_model.status_code == 422
    assert "yealink" in unknown_model.json()["detail"]
    missing = await harness.client.post(
        f"{BASE}/provisioning-tokens", json={"certificate_id": str(uuid.uuid4())}, headers=headers
    )
    assert missing.status_code == 404
    too_long = await harness.client.post(
        f"{BASE}/provisioning-tokens",
        json={"certificate_id": cert["id"], "ttl_seconds": 10**9},
        headers=headers,
    )
    assert too_long.status_code == 422


async def test_phone_model_bundles(harness: ServiceHarness) -> None:
    headers, cert = await setup(harness)
    models = (await harness.client.get(f"{BASE}/ca/phone-models", headers=headers)).json()
    assert {m["model"] for m in models} >= {"generic", "yealink", "snom", "grandstream"}

    yealink = await harness.client.get(
        f"/v1/provisioning/{(await token_for(harness, headers, cert['id'], 'yealink'))['token']}"
    )
    assert yealink.status_code == 200
    assert 'filename="client.tar"' in yealink.headers["content-disposition"]
    with tarfile.open(fileobj=io.BytesIO(yealink.content)) as archive:
        names = set(archive.getnames())
        assert {
            "vpn.cnf",
            "keys/ca.crt",
            "keys/client.crt",
            "keys/client.key",
            "keys/ta.key",
        } <= names
        cnf = archive.extractfile("vpn.cnf").read().decode()  # type: ignore[union-attr]
        key = archive.getmember("keys/client.key")
        assert key.mode == 0o600
        assert b"PRIVATE KEY" in archive.extractfile(key).read()  # type: ignore[union-attr]
        assert archive.extractfile("keys/client.crt").read().decode() == cert["certificate_pem"]  # type: ignore[union-attr]
    assert "ca /config/openvpn/keys/ca.crt" in cnf
    assert "tls-crypt /config/openvpn/keys/ta.key" in cnf
    assert "<key>" not in cnf

    snom = await harness.client.get(
        f"{BASE}/certificates/{cert['id']}/bundle?model=snom", headers=headers
    )
    with tarfile.open(fileobj=io.BytesIO(snom.content)) as archive:
        assert {"vpn.cnf", "ca.crt", "client.crt", "client.key", "ta.key"} <= set(
            archive.getnames()
        )

    # Grandstream phones load no TLS static key: not for a tls-crypt endpoint...
    refused = await harness.client.get(
        f"{BASE}/certificates/{cert['id']}/bundle?model=grandstream", headers=headers
    )
    assert refused.status_code == 409
    assert refused.json()["title"] == "Phone model cannot join"
    no_token = await harness.client.post(
        f"{BASE}/provisioning-tokens",
        json={"certificate_id": cert["id"], "model": "grandstream"},
        headers=headers,
    )
    assert no_token.status_code == 409
    # ...but for one without TLS wrapping.
    operator = harness.mint.headers("operator")
    unwrapped = await harness.client.patch(
        f"{BASE}/ca", json={"endpoint": {"tls_wrap": "none"}}, headers=operator
    )
    assert unwrapped.json()["endpoint"]["tls_wrap"] == "none"
    conf = (await harness.client.get(f"{BASE}/ca/openvpn-server.conf", headers=operator)).text
    assert "tls-crypt" not in conf and "tls-auth" not in conf
    grandstream = await harness.client.get(
        f"{BASE}/certificates/{cert['id']}/bundle?model=grandstream", headers=headers
    )
    assert grandstream.status_code == 200, grandstream.text
    root = ET.fromstring(grandstream.content)  # noqa: S314 (our own output)
    config = {child.tag: child.text for child in root.find("config")}  # type: ignore[union-attr]
    assert config["P7050"] == "1"
    assert config["P9903"] == cert["certificate_pem"]
    assert "PRIVATE KEY" in (config["P9904"] or "")

    snom_bare = await harness.client.get(
        f"{BASE}/certificates/{cert['id']}/bundle?model=snom", headers=headers
    )
    with tarfile.open(fileobj=io.BytesIO(snom_bare.content)) as archive:
        assert "ta.key" not in archive.getnames()

    # tls-auth for firmwares without tls-crypt: opposite key directions on each end.
    await harness.client.patch(
        f"{BASE}/ca", json={"endpoint": {"tls_wrap": "tls-auth"}}, headers=operator
    )
    conf = (await harness.client.get(f"{BASE}/ca/openvpn-server.conf", headers=operator)).text
    assert "key-direction 0\n<tls-auth>" in conf and "<tls-crypt>" not in conf
    profile = (
        await harness.client.get(f"{BASE}/certificates/{cert['id']}/bundle", headers=headers)
    ).text
    assert "key-direction 1\n<tls-auth>" in profile
    yealink_auth = await harness.client.get(
        f"{BASE}/certificates/{cert['id']}/bundle?model=yealink", headers=headers
    )
    with tarfile.open(fileobj=io.BytesIO(yealink_auth.content)) as archive:
        cnf = archive.extractfile("vpn.cnf").read().decode()  # type: ignore[union-attr]
    assert "tls-auth /config/openvpn/keys/ta.key 1" in cnf

    assert (
        await harness.client.get(
            f"{BASE}/certificates/{cert['id']}/bundle?model=nope", headers=headers
        )
    ).status_code == 422
    user = harness.mint.headers("tenant_user", tenant_id=uuid.UUID(str(cert["tenant_id"])))
    assert (
        await harness.client.get(f"{BASE}/certificates/{cert['id']}/bundle", headers=user)
    ).status_code == 403


def test_the_model_table_is_data() -> None:
    models = phone_models()
    assert models["yealink"].files["keys/client.key"] == "key"
    assert models["grandstream"].format == "grandstream-xml"
    assert all(m.filename and m.media_type for m in models.values())
