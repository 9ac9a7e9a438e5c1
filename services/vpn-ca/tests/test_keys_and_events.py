"""Keys at rest are unreadable without the KEK; device.deleted revokes a device's certificates."""

import subprocess
import uuid
from pathlib import Path

import asyncpg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError

from centralino_proto.events import DeviceDeleted
from centralino_proto.settings import libpq_url
from centralino_proto.testing import ServiceHarness, until
from centralino_vpn_ca import pki
from centralino_vpn_ca.config import DEV_KEK, Settings
from centralino_vpn_ca.vault import KeyVault, SealError


async def test_keys_at_rest_need_the_kek(harness: ServiceHarness) -> None:
    tenant = await harness.add_tenant("rossi-roma")
    headers = harness.mint.headers("operator")
    ca = (await harness.client.post("/v1/tenants/rossi-roma/ca", json={}, headers=headers)).json()
    device = (
        await harness.client.post(
            "/v1/tenants/rossi-roma/certificates", json={"extension": "401"}, headers=headers
        )
    ).json()
    conn = await asyncpg.connect(libpq_url(harness.settings.database_url))
    try:
        row = await conn.fetchrow(
            "SELECT id, sealed_key, tls_crypt_sealed FROM certificate_authority WHERE tenant_id = $1",
            tenant.tenant_id,
        )
        device_row = await conn.fetchrow(
            "SELECT sealed_key FROM certificate WHERE id = $1", uuid.UUID(device["id"])
        )
    finally:
        await conn.close()
    sealed = bytes(row["sealed_key"])
    # Not a key as stored: neither DER nor PEM, encrypted or not.
    for loader in (serialization.load_der_private_key, serialization.load_pem_private_key):
        with pytest.raises((ValueError, TypeError)):
            loader(sealed, password=None)
    assert b"PRIVATE KEY" not in sealed and b"OpenVPN Static key" not in bytes(
        row["tls_crypt_sealed"]
    )
    with pytest.raises(SealError):
        KeyVault("a-different-key-encryption-key-0123456789").open(
            sealed, context=f"ca:{row['id']}"
        )
    with pytest.raises(SealError):
        # The right KEK, but the blob moved to another row.
        KeyVault(DEV_KEK).open(sealed, context=f"ca:{uuid.uuid4()}")
    with pytest.raises(SealError):
        KeyVault(DEV_KEK).open(sealed[:-1] + bytes([sealed[-1] ^ 1]), context=f"ca:{row['id']}")
    key = pki.key_from_der(KeyVault(DEV_KEK).open(sealed, context=f"ca:{row['id']}"))
    certificate = x509.load_pem_x509_certificate(ca["certificate_pem"].encode())
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ) == certificate.public_key().public_bytes(serialization.Encoding.DER, spki)
    with pytest.raises(SealError):
        KeyVault("another-kek-another-kek-another-kek").open(
            bytes(device_row["sealed_key"]), context=f"cert:{device['id']}"
        )


def test_production_refuses_the_placeholder_kek() -> None:
    with pytest.raises(ValidationError, match="CA_KEK"):
        Settings(environment="production", service_client_secret="s3rv1ce-secret-for-prod")
    with pytest.raises(ValidationError, match="CA_KEK"):
        Settings(
            environment="production",
            service_client_secret="s3rv1ce-secret-for-prod",
            ca_kek="short",
        )
    ok = Settings(
        environment="production", service_client_secret="s3rv1ce-secret-for-prod", ca_kek="k" * 40
    )
    assert ok.ca_kek.get_secret_value() == "k" * 40
    assert "k" * 40 not in repr(ok)


async def test_device_deleted_revokes_its_certificates(
    harness: ServiceHarness, tmp_path: Path
) -> None:
    tenant = await harness.add_tenant("bellavista")
    headers = harness.mint.headers("tenant_admin", tenant_id=tenant.tenant_id)
    base = "/v1/tenants/bellavista"
    await harness.client.post(f"{base}/ca", json={}, headers=headers)
    device_id = uuid.uuid4()
    first = (
        await harness.client.post(
            f"{base}/certificates",
            json={"device_id": str(device_id), "extension": "106"},
            headers=headers,
        )
    ).json()
    renewed = (
        await harness.client.post(
            f"{base}/certificates/{first['id']}/renew", json={}, headers=headers
        )
    ).json()
    bystander = (
        await harness.client.post(
            f"{base}/certificates",
            json={"device_id": str(uuid.uuid4()), "extension": "107"},
            headers=headers,
        )
    ).json()

    async with harness.probe("cert.revoked") as probe:
        event = DeviceDeleted(
            tenant_id=tenant.tenant_id, device_id=device_id, extension="106", username="106"
        )
        await harness.publish(event, tenant_id=tenant.tenant_id)
        revoked = await probe.wait_for("cert.revoked", count=2, timeout=30)
    assert {e.data.certificate_id for e in revoked} == {
        uuid.UUID(first["id"]),
        uuid.UUID(renewed["id"]),
    }
    assert all(
        e.data.reason == "cessation_of_operation" and e.data.device_id == device_id for e in revoked
    )

    async def statuses() -> dict[str, str] | None:
        listed = (
            await harness.client.get(f"{base}/certificates?device_id={device_id}", headers=headers)
        ).json()
        found = {c["id"]: c["status"] for c in listed}
        return found if set(found.values()) == {"revoked"} else None

    assert len(await until(statuses, timeout=10)) == 2
    still = (
        await harness.client.get(f"{base}/certificates/{bystander['id']}", headers=headers)
    ).json()
    assert still["status"] == "valid"
    (tmp_path / "ca.pem").write_text(
        (await harness.client.get(f"{base}/ca/certificate.pem", headers=headers)).text
    )
    (tmp_path / "crl.pem").write_text(
        (await harness.client.get(f"{base}/ca/crl", headers=headers)).text
    )
    (tmp_path / "dev.pem").write_text(renewed["certificate_pem"])
    result = subprocess.run(
        ["openssl", "verify", "-crl_check", "-CAfile", "ca.pem", "-CRLfile", "crl.pem", "dev.pem"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0 and "certificate revoked" in result.stdout + result.stderr


async def test_kek_rotation_reseals_every_key(harness: ServiceHarness) -> None:
    from centralino_vpn_ca.ca import load_context, reseal_all

    await harness.add_tenant("bellavista")
    headers = harness.mint.headers("operator")
    await harness.client.post("/v1/tenants/bellavista/ca", json={}, headers=headers)
    device = (
        await harness.client.post(
            "/v1/tenants/bellavista/certificates", json={"extension": "108"}, headers=headers
        )
    ).json()
    new_kek = "rotated-kek-rotated-kek-rotated-kek-0042"
    rotating = load_context(harness.settings.override(ca_kek=new_kek, ca_kek_previous=DEV_KEK))
    async with harness.runtime.sessionmaker() as session, session.begin():
        # CA key, tls-crypt key, VPN server key, the device's key.
        assert await reseal_all(session=session, ctx=rotating) == 4
    async with harness.runtime.sessionmaker() as session, session.begin():
        assert await reseal_all(session=session, ctx=rotating) == 0
    # Only the new KEK from now on: everything still opens, the old KEK opens nothing.
    harness.runtime.extras["vpn_ca"] = load_context(harness.settings.override(ca_kek=new_kek))
    conf = await harness.client.get(
        "/v1/tenants/bellavista/ca/openvpn-server.conf", headers=headers
    )
    assert conf.status_code == 200 and "PRIVATE KEY" in conf.text
    bundle = await harness.client.get(
        f"/v1/tenants/bellavista/certificates/{device['id']}/bundle", headers=headers
    )
    assert bundle.status_code == 200
    issued = await harness.client.post(
        "/v1/tenants/bellavista/certificates", json={"extension": "109"}, headers=headers
    )
    assert issued.status_code == 201
    conn = await asyncpg.connect(libpq_url(harness.settings.database_url))
    try:
        row = await conn.fetchrow("SELECT id, sealed_key, kek_id FROM certificate_authority")
    finally:
        await conn.close()
    assert row["kek_id"] == KeyVault(new_kek).kek_id.hex()
    with pytest.raises(SealError):
        KeyVault(DEV_KEK).open(bytes(row["sealed_key"]), context=f"ca:{row['id']}")
