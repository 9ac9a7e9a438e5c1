"""The device API, line status and force-unregister, extension.deleted, the demo seed."""

import hashlib
import uuid

from sqlmodel import select

from centralino_proto.demo import BELLAVISTA, ROSSI_MILANO
from centralino_proto.events import ExtensionDeleted
from centralino_proto.testing import ServiceHarness, until
from centralino_registrar.models import Device
from centralino_registrar.seed import seed

from .conftest import Provision, SipClient, challenge_of, digest_authorization
from .test_sip_behaviour import _port, _register, _sip


async def test_device_crud_keeps_only_ha1(harness: ServiceHarness) -> None:
    tenant = await harness.add_tenant("bellavista")
    headers = harness.mint.headers("tenant_admin", tenant_id=tenant.tenant_id)
    base = "/v1/tenants/bellavista"
    created = await harness.client.post(
        f"{base}/extensions/101/devices",
        json={"username": "101", "password": "secret101", "display_name": "Room 101"},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    device = created.json()
    assert "password" not in device and "ha1_md5" not in device
    assert device["extension"] == "101" and device["realm"] == "bellavista.centralino.test"
    async with harness.runtime.sessionmaker() as session:
        row = (await session.execute(select(Device))).scalar_one()
    realm = "bellavista.centralino.test"
    assert row.ha1_md5 == hashlib.md5(f"101:{realm}:secret101".encode()).hexdigest()  # noqa: S324
    assert row.ha1_sha256 == hashlib.sha256(f"101:{realm}:secret101".encode()).hexdigest()

    duplicate = await harness.client.post(
        f"{base}/extensions/102/devices",
        json={"username": "101", "password": "another-one"},
        headers=headers,
    )
    assert duplicate.status_code == 409
    assert duplicate.headers["content-type"] == "application/problem+json"
    short = await harness.client.post(
        f"{base}/extensions/102/devices", json={"username": "102", "password": "x"}, headers=headers
    )
    assert short.status_code == 422
    bad_ext = await harness.client.post(
        f"{base}/extensions/abc/devices",
        json={"username": "x1", "password": "long-enough"},
        headers=headers,
    )
    assert bad_ext.status_code == 422

    listed = await harness.client.get(f"{base}/extensions/101/devices", headers=headers)
    assert [d["username"] for d in listed.json()] == ["101"]
    assert len((await harness.client.get(f"{base}/devices", headers=headers)).json()) == 1

    changed = await harness.client.patch(
        f"{base}/devices/{device['id']}", json={"password": "new-secret-1"}, headers=headers
    )
    assert changed.status_code == 200
    async with harness.runtime.sessionmaker() as session:
        row2 = await session.get(Device, uuid.UUID(device["id"]))
    assert row2 is not None and row2.ha1_md5 != row.ha1_md5

    # Tenant users read but do not write; other tenants do not see it at all.
    user = harness.mint.headers("tenant_user", tenant_id=tenant.tenant_id)
    assert (await harness.client.get(f"{base}/devices", headers=user)).status_code == 200
    assert (
        await harness.client.delete(f"{base}/devices/{device['id']}", headers=user)
    ).status_code == 403
    other = harness.mint.headers("tenant_admin", tenant_id=uuid.uuid4())
    assert (await harness.client.get(f"{base}/devices", headers=other)).status_code == 404

    async with harness.probe("device.deleted") as probe:
        gone = await harness.client.delete(
            f"{base}/extensions/101/devices/{device['id']}", headers=headers
        )
        assert gone.status_code == 204
        [event] = await probe.wait_for("device.deleted")
    assert event.data.username == "101"
    assert (
        await harness.client.get(f"{base}/devices/{device['id']}", headers=headers)
    ).status_code == 404


async def test_password_change_applies_to_the_next_register(
    harness: ServiceHarness, provision: Provision
) -> None:
    phone = await provision()
    headers = harness.mint.headers("operator")
    await harness.client.patch(
        f"/v1/tenants/bellavista/devices/{phone.device_id}",
        json={"password": "changed-pw-1"},
        headers=headers,
    )
    async with SipClient(_port(harness)) as client:
        await _register(client, phone, expect=401)
        phone.password = "changed-pw-1"
        await _register(client, phone, expect=200)


async def test_line_status_and_force_unregister(
    harness: ServiceHarness, provision: Provision
) -> None:
    phone = await provision()
    headers = harness.mint.headers("operator")
    async with SipClient(_port(harness)) as client:
        await _register(client, phone)
    status = await harness.client.get("/v1/tenants/bellavista/line-status/101", headers=headers)
    [binding] = status.json()
    assert binding["contact"].startswith("sip:101@127.0.0.1:")
    assert binding["user_agent"] == "pytest" and binding["transport"] == "udp"
    async with harness.probe("device.unregistered") as probe:
        removed = await harness.client.delete(
            "/v1/tenants/bellavista/line-status/101", headers=headers
        )
        assert removed.status_code == 204
        [event] = await probe.wait_for("device.unregistered")
    assert event.data.reason == "forced"
    assert (
        await harness.client.get("/v1/tenants/bellavista/line-status", headers=headers)
    ).json() == []


async def test_extension_deleted_removes_devices_and_bindings(
    harness: ServiceHarness, provision: Provision
) -> None:
    phone = await provision()
    async with SipClient(_port(harness)) as client:
        await _register(client, phone)
    async with harness.probe("device.deleted", "device.unregistered") as probe:
        await harness.publish(
            ExtensionDeleted(tenant_id=phone.tenant_id, extension_id=uuid.uuid4(), number="101"),
            tenant_id=phone.tenant_id,
        )
        await probe.wait_for("device.deleted", timeout=20)
        [unregistered] = await probe.wait_for("device.unregistered")
    assert unregistered.data.reason == "device_deleted"
    assert _sip(harness).location.bindings((phone.tenant_id, "101")) == []
    # The credentials are gone from the hot path too.
    async with SipClient(_port(harness)) as client:
        await _register(client, phone, expect=401)


async def test_demo_seed_is_idempotent_and_registers(harness: ServiceHarness) -> None:
    await seed(harness.runtime)
    await seed(harness.runtime)
    async with harness.runtime.sessionmaker() as session:
        devices = (await session.execute(select(Device))).scalars().all()
    assert len(devices) == 20
    assert {d.username for d in devices if d.tenant_id == ROSSI_MILANO.tenant_id} == {"407", "408"}
    async with SipClient(_port(harness)) as client:
        await client.send(client.register(user="105", realm=BELLAVISTA.sip_realm))
        challenge = await client.recv()
        auth = digest_authorization(
            challenge_of(challenge),
            username="105",
            password="secret105",
            uri=f"sip:{BELLAVISTA.sip_realm}",
        )
        await client.send(
            client.register(user="105", realm=BELLAVISTA.sip_realm, authorization=auth)
        )
        assert (await client.recv()).status == 200
    await until(lambda: _sip(harness).location.count == 1)
