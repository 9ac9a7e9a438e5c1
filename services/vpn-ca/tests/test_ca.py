"""The tenant CA over HTTP: creation, issuing, revocation, CRLs checked by openssl itself."""

import subprocess
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from centralino_proto.events import TenantCreated
from centralino_proto.testing import ServiceHarness, until


def openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


async def make_ca(
    harness: ServiceHarness, slug: str, **body: object
) -> tuple[uuid.UUID, dict[str, str]]:
    tenant = await harness.add_tenant(slug)
    headers = harness.mint.headers("tenant_admin", tenant_id=tenant.tenant_id)
    response = await harness.client.post(f"/v1/tenants/{slug}/ca", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return tenant.tenant_id, headers


async def test_tenant_created_event_gives_the_tenant_a_ca(harness: ServiceHarness) -> None:
    event = TenantCreated(
        tenant_id=uuid.uuid4(),
        slug="hotel-sole",
        name="Hotel Sole",
        sip_realm="hotel-sole.centralino.test",
    )
    headers = harness.mint.headers("operator")
    async with harness.probe("cert.issued") as probe:
        await harness.publish(event, tenant_id=event.tenant_id)

        async def ca_ready() -> dict[str, object] | None:
            response = await harness.client.get("/v1/tenants/hotel-sole/ca", headers=headers)
            return response.json() if response.status_code == 200 else None

        ca = await until(ca_ready, timeout=30, message="CA created from tenant.created")
        issued = await probe.wait_for("cert.issued", timeout=20)
    assert ca["tenant_id"] == str(event.tenant_id)
    assert ca["key_algorithm"] == "ecdsa-p256"
    assert ca["endpoint"]["subnet"] == "10.8.0.0/24"
    assert issued[0].data.kind == "server"
    certificate = x509.load_pem_x509_certificate(ca["certificate_pem"].encode())
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # Redelivery of the same tenant must not make a second CA.
    await harness.publish(event, tenant_id=event.tenant_id)
    second = await harness.client.get("/v1/tenants/hotel-sole/ca", headers=headers)
    assert second.json()["id"] == ca["id"]


async def test_ca_api_scoping_conflicts_and_no_key(harness: ServiceHarness) -> None:
    tenant_id, headers = await make_ca(harness, "rossi-roma", key_algorithm="rsa-2048")
    other = await harness.add_tenant("rossi-milano")
    again = await harness.client.post("/v1/tenants/rossi-roma/ca", json={}, headers=headers)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    stranger = harness.mint.headers("tenant_admin", tenant_id=other.tenant_id)
    assert (
        await harness.client.get("/v1/tenants/rossi-roma/ca", headers=stranger)
    ).status_code == 404
    user = harness.mint.headers("tenant_user", tenant_id=tenant_id)
    assert (await harness.client.get("/v1/tenants/rossi-roma/ca", headers=user)).status_code == 200
    forbidden = await harness.client.post(
        "/v1/tenants/rossi-roma/certificates", json={"extension": "401"}, headers=user
    )
    assert forbidden.status_code == 403
    # The server config holds the server's key: the operator's, not the tenant's.
    conf = await harness.client.get(
        "/v1/tenants/rossi-roma/ca/openvpn-server.conf", headers=headers
    )
    assert conf.status_code == 403
    # Second tenant gets the next subnet and port.
    ca2 = await harness.client.post(
        "/v1/tenants/rossi-milano/ca", json={}, headers=harness.mint.headers("operator")
    )
    assert ca2.json()["endpoint"]["subnet"] == "10.8.1.0/24"
    assert ca2.json()["endpoint"]["port"] == 1195
    for path in ("/ca", "/ca/certificate.pem", "/ca/crl", "/certificates"):
        body = (await harness.client.get(f"/v1/tenants/rossi-roma{path}", headers=headers)).text
        assert "PRIVATE KEY" not in body
    ca = (await harness.client.get("/v1/tenants/rossi-roma/ca", headers=headers)).json()
    assert ca["key_algorithm"] == "rsa-2048"
    assert "sealed_key" not in ca
    no_ca = await harness.add_tenant("senza-ca")
    missing = await harness.client.get(
        "/v1/tenants/senza-ca/ca",
        headers=harness.mint.headers("tenant_admin", tenant_id=no_ca.tenant_id),
    )
    assert missing.status_code == 404
    assert missing.json()["title"] == "No CA"


BAD_ENDPOINTS = [
    {"subnet": "8.8.8.0/24"},
    {"subnet": "10.9.0.1/24"},
    {"subnet": "10.9.0.0/30"},
    {"sip_edge": "not-an-ip"},
    {"port": 70000},
]


async def test_bad_endpoints_are_refused(harness: ServiceHarness) -> None:
    await harness.add_tenant("bellavista")
    headers = harness.mint.headers("operator")
    for endpoint in BAD_ENDPOINTS:
        response = await harness.client.post(
            "/v1/tenants/bellavista/ca", json={"endpoint": endpoint}, headers=headers
        )
        assert response.status_code == 422, (endpoint, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        # Nothing half-written: the tenant still has no CA.
        missing = await harness.client.get("/v1/tenants/bellavista/ca", headers=headers)
        assert missing.status_code == 404
    ok = await harness.client.post("/v1/tenants/bellavista/ca", json={}, headers=headers)
    assert ok.status_code == 201


async def test_openssl_verifies_chains_and_the_crl_rejects_the_revoked(
    harness: ServiceHarness, tmp_path: Path
) -> None:
    tenant_id, headers = await make_ca(harness, "bellavista")
    base = "/v1/tenants/bellavista"
    # One key made here, one from a CSR the phone made (openssl standing in for the phone).
    generated = await harness.client.post(
        f"{base}/certificates",
        json={"extension": "101", "device_id": str(uuid.uuid4())},
        headers=headers,
    )
    assert generated.status_code == 201, generated.text
    assert (
        openssl(
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "phone.key",
            "-subj",
            "/CN=room-102",
            "-out",
            "phone.csr",
            cwd=tmp_path,
        ).returncode
        == 0
    )
    from_csr = await harness.client.post(
        f"{base}/certificates",
        json={"extension": "102", "csr": (tmp_path / "phone.csr").read_text()},
        headers=headers,
    )
    assert from_csr.status_code == 201, from_csr.text
    assert from_csr.json()["common_name"] == "room-102"
    assert from_csr.json()["key_origin"] == "csr"
    assert from_csr.json()["key_algorithm"] == "rsa-2048"
    (tmp_path / "ca.pem").write_text(
        (await harness.client.get(f"{base}/ca/certificate.pem", headers=headers)).text
    )
    (tmp_path / "a.pem").write_text(generated.json()["certificate_pem"])
    (tmp_path / "b.pem").write_text(from_csr.json()["certificate_pem"])
    (tmp_path / "crl0.pem").write_text(
        (await harness.client.get(f"{base}/ca/crl", headers=headers)).text
    )
    for name in ("a.pem", "b.pem"):
        result = openssl("verify", "-purpose", "sslclient", "-CAfile", "ca.pem", name, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        checked = openssl(
            "verify", "-crl_check", "-CAfile", "ca.pem", "-CRLfile", "crl0.pem", name, cwd=tmp_path
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    # The key in the CSR is the key in the certificate.
    assert (
        openssl("x509", "-in", "b.pem", "-noout", "-pubkey", cwd=tmp_path).stdout
        == openssl("pkey", "-in", "phone.key", "-pubout", cwd=tmp_path).stdout
    )

    async with harness.probe("cert.revoked") as probe:
        revoked = await harness.client.post(
            f"{base}/certificates/{generated.json()['id']}/revoke",
            json={"reason": "key_compromise"},
            headers=headers,
        )
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["status"] == "revoked"
        event = (await probe.wait_for("cert.revoked"))[0]
    assert event.data.serial == generated.json()["serial"]
    assert event.data.reason == "key_compromise"
    assert event.tenant_id == tenant_id
    crl_response = await harness.client.get(f"{base}/ca/crl", headers=headers)
    (tmp_path / "crl1.pem").write_text(crl_response.text)
    assert int(crl_response.headers["x-crl-number"]) == event.data.crl_number
    rejected = openssl(
        "verify", "-crl_check", "-CAfile", "ca.pem", "-CRLfile", "crl1.pem", "a.pem", cwd=tmp_path
    )
    assert rejected.returncode != 0
    assert "certificate revoked" in rejected.stdout + rejected.stderr
    still_good = openssl(
        "verify", "-crl_check", "-CAfile", "ca.pem", "-CRLfile", "crl1.pem", "b.pem", cwd=tmp_path
    )
    assert still_good.returncode == 0, still_good.stdout + still_good.stderr
    crl_text = openssl("crl", "-in", "crl1.pem", "-noout", "-text", cwd=tmp_path).stdout
    assert generated.json()["serial"] in crl_text
    assert "Key Compromise" in crl_text
    again = await harness.client.post(
        f"{base}/certificates/{generated.json()['id']}/revoke", json={}, headers=headers
    )
    assert again.status_code == 409
    listed = await harness.client.get(f"{base}/certificates?status=revoked", headers=headers)
    assert [c["id"] for c in listed.json()] == [generated.json()["id"]]


async def test_operator_root_chain(rooted_harness: ServiceHarness, tmp_path: Path) -> None:
    harness = rooted_harness
    _, headers = await make_ca(harness, "rossi-roma")
    base = "/v1/tenants/rossi-roma"
    cert = await harness.client.post(
        f"{base}/certificates", json={"extension": "401"}, headers=headers
    )
    chain = (await harness.client.get(f"{base}/ca/certificate.pem", headers=headers)).text
    ca = (await harness.client.get(f"{base}/ca", headers=headers)).json()
    (tmp_path / "root.pem").write_text(ca["chain_pem"])
    (tmp_path / "tenant-ca.pem").write_text(ca["certificate_pem"])
    (tmp_path / "device.pem").write_text(cert.json()["certificate_pem"])
    assert chain == ca["certificate_pem"] + ca["chain_pem"]
    ok = openssl(
        "verify", "-CAfile", "root.pem", "-untrusted", "tenant-ca.pem", "device.pem", cwd=tmp_path
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # Without the tenant CA the device does not chain to the root: it is not signed by it.
    alone = openssl("verify", "-CAfile", "root.pem", "device.pem", cwd=tmp_path)
    assert alone.returncode != 0


async def test_csr_input_is_checked(harness: ServiceHarness, tmp_path: Path) -> None:
    _, headers = await make_ca(harness, "bellavista")
    url = "/v1/tenants/bellavista/certificates"
    garbage = await harness.client.post(
        url, json={"csr": "-----BEGIN CERTIFICATE REQUEST-----\nxx"}, headers=headers
    )
    assert garbage.status_code == 422
    assert garbage.json()["title"] == "Invalid CSR"
    openssl(
        "req",
        "-new",
        "-newkey",
        "rsa:1024",
        "-nodes",
        "-keyout",
        "weak.key",
        "-subj",
        "/CN=weak",
        "-out",
        "weak.csr",
        cwd=tmp_path,
    )
    weak = await harness.client.post(
        url, json={"csr": (tmp_path / "weak.csr").read_text()}, headers=headers
    )
    assert weak.status_code == 422
    assert "2048" in weak.json()["detail"]
    openssl(
        "req", "-new", "-newkey", "ed25519", "-nodes", "-keyout", "ed.key",
        "-subj", "/CN=ed", "-out", "ed.csr", cwd=tmp_path,
    )  # fmt: skip
    ed = await harness.client.post(
        url, json={"csr": (tmp_path / "ed.csr").read_text()}, headers=headers
    )
    assert ed.status_code == 422, ed.text
    bad_cn = await harness.client.post(url, json={"common_name": "a b"}, headers=headers)
    assert bad_cn.status_code == 422
    first = await harness.client.post(url, json={"common_name": "reception"}, headers=headers)
    assert first.status_code == 201
    clash = await harness.client.post(url, json={"common_name": "reception"}, headers=headers)
    assert clash.status_code == 409
    assert (await harness.client.get(f"{url}/{uuid.uuid4()}", headers=headers)).status_code == 404


async def test_renewal(harness: ServiceHarness, tmp_path: Path) -> None:
    _, headers = await make_ca(harness, "bellavista")
    url = "/v1/tenants/bellavista/certificates"
    device = str(uuid.uuid4())
    old = (
        await harness.client.post(
            url, json={"device_id": device, "extension": "103"}, headers=headers
        )
    ).json()
    renewed = await harness.client.post(
        f"{url}/{old['id']}/renew", json={"revoke_previous": True}, headers=headers
    )
    assert renewed.status_code == 201, renewed.text
    new = renewed.json()
    assert new["renewed_from_id"] == old["id"]
    assert new["device_id"] == device and new["common_name"] == old["common_name"]
    assert new["serial"] != old["serial"]
    assert (await harness.client.get(f"{url}/{old['id']}", headers=headers)).json()[
        "status"
    ] == "revoked"
    # A CSR-born certificate renews on the same public key (the key never left the phone).
    openssl(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "p.key",
        "-subj",
        "/CN=room-104",
        "-out",
        "p.csr",
        cwd=tmp_path,
    )
    csr_cert = (
        await harness.client.post(
            url, json={"csr": (tmp_path / "p.csr").read_text()}, headers=headers
        )
    ).json()
    again = (
        await harness.client.post(f"{url}/{csr_cert['id']}/renew", json={}, headers=headers)
    ).json()

    def spki(pem: str) -> bytes:
        return (
            x509.load_pem_x509_certificate(pem.encode())
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    assert spki(again["certificate_pem"]) == spki(csr_cert["certificate_pem"])
    assert again["serial"] != csr_cert["serial"]
    revoked_renew = await harness.client.post(f"{url}/{old['id']}/renew", json={}, headers=headers)
    assert revoked_renew.status_code == 409


async def test_seed_gives_each_demo_tenant_a_ca_once(harness: ServiceHarness) -> None:
    from centralino_proto.demo import TENANTS
    from centralino_vpn_ca.seed import seed

    await seed(harness.runtime)
    await seed(harness.runtime)
    headers = harness.mint.headers("operator")
    subnets = set()
    for tenant in TENANTS:
        response = await harness.client.get(f"/v1/tenants/{tenant.slug}/ca", headers=headers)
        assert response.status_code == 200, response.text
        subnets.add(response.json()["endpoint"]["subnet"])
    assert len(subnets) == len(TENANTS)


async def test_concurrent_creation_makes_one_ca(harness: ServiceHarness) -> None:
    import asyncio

    tenant = await harness.add_tenant("bellavista")
    headers = harness.mint.headers("tenant_admin", tenant_id=tenant.tenant_id)
    responses = await asyncio.gather(
        *(
            harness.client.post("/v1/tenants/bellavista/ca", json={}, headers=headers)
            for _ in range(3)
        )
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409], [r.text for r in responses]


async def test_crls_are_re_signed_before_they_expire(harness: ServiceHarness) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update
    from sqlmodel import col

    from centralino_vpn_ca.main import refresh_crls
    from centralino_vpn_ca.models import CertificateAuthority

    tenant_id, headers = await make_ca(harness, "bellavista")
    before = (await harness.client.get("/v1/tenants/bellavista/ca", headers=headers)).json()
    ctx = harness.runtime.extras["vpn_ca"]
    assert await refresh_crls(harness.runtime, ctx) == 1
    same = (await harness.client.get("/v1/tenants/bellavista/ca", headers=headers)).json()
    assert same["crl_number"] == before["crl_number"]
    async with harness.runtime.sessionmaker() as session, session.begin():
        await session.execute(
            update(CertificateAuthority)
            .where(col(CertificateAuthority.tenant_id) == tenant_id)
            .values(crl_next_update=datetime.now(UTC) + timedelta(hours=1))
        )
    await refresh_crls(harness.runtime, ctx)
    after = (await harness.client.get("/v1/tenants/bellavista/ca", headers=headers)).json()
    assert after["crl_number"] == before["crl_number"] + 1
    assert datetime.fromisoformat(after["crl_next_update"]) > datetime.now(UTC) + timedelta(days=6)


async def test_endpoint_host_cannot_inject_config(harness: ServiceHarness) -> None:
    await harness.add_tenant("bellavista")
    response = await harness.client.post(
        "/v1/tenants/bellavista/ca",
        json={"endpoint": {"remote_host": "vpn.example.com\nscript-security 2"}},
        headers=harness.mint.headers("operator"),
    )
    assert response.status_code == 422


BAD_INPUT = [
    ("post", "/ca", {"key_algorithm": "dsa-1024"}),
    ("post", "/ca", {"endpoint": {"protocol": "sctp"}}),
    ("post", "/ca", {"endpoint": {"subnet": "fd00::/64"}}),
    ("post", "/ca", {"endpoint": {"subnet": "10.0.0.0/8"}}),
    ("post", "/certificates", {"device_id": "not-a-uuid"}),
    ("post", "/certificates", {"validity_days": 0}),
    ("post", "/certificates", {"extension": "10 1"}),
    ("post", "/certificates", {"csr": 42}),
    ("post", "/certificates", "not json"),
    ("post", "/provisioning-tokens", {"model": "generic"}),
    ("post", "/provisioning-tokens", {"certificate_id": "x"}),
    ("get", "/certificates?status=lost", None),
    ("get", "/ca/crl?format=xml", None),
    ("get", "/ca/openvpn-server.conf?crl_path=relative/crl.pem", None),
    ("get", "/ca/openvpn-server.conf?crl_path=/tmp/a%0Aplugin%20x", None),
]


async def test_bad_input_is_a_4xx_problem(harness: ServiceHarness) -> None:
    await make_ca(harness, "bellavista")
    headers = harness.mint.headers("operator")
    for method, path, body in BAD_INPUT:
        url = f"/v1/tenants/bellavista{path}"
        if method == "get":
            response = await harness.client.get(url, headers=headers)
        elif isinstance(body, str):
            response = await harness.client.post(
                url, content=body, headers={**headers, "content-type": "application/json"}
            )
        else:
            response = await harness.client.post(url, json=body, headers=headers)
        assert 400 <= response.status_code < 500, (path, body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["title"]


async def test_a_deleted_tenant_gets_no_new_certificates(harness: ServiceHarness) -> None:
    from centralino_proto.events import TenantDeleted

    tenant_id, headers = await make_ca(harness, "bellavista")
    await harness.publish(
        TenantDeleted(tenant_id=tenant_id, slug="bellavista"), tenant_id=tenant_id
    )

    async def refused() -> bool:
        response = await harness.client.post(
            "/v1/tenants/bellavista/certificates", json={"extension": "100"}, headers=headers
        )
        return response.status_code == 409 and response.json()["title"] == "Tenant inactive"

    await until(refused, timeout=20, message="issuing refused for a deleted tenant")
    # What exists stays readable.
    assert (
        await harness.client.get("/v1/tenants/bellavista/ca", headers=headers)
    ).status_code == 200


async def test_the_operator_moves_the_endpoint(harness: ServiceHarness) -> None:
    tenant_id, admin = await make_ca(harness, "bellavista")
    await make_ca(harness, "rossi-roma")
    operator = harness.mint.headers("operator")
    url = "/v1/tenants/bellavista/ca"
    assert (
        await harness.client.patch(url, json={"endpoint": {"port": 1300}}, headers=admin)
    ).status_code == 403
    clash = await harness.client.patch(
        url, json={"endpoint": {"subnet": "10.8.1.0/24"}}, headers=operator
    )
    assert clash.status_code == 409, clash.text
    moved = await harness.client.patch(
        url,
        json={
            "endpoint": {
                "remote_host": "vpn1.example.net",
                "port": 1300,
                "protocol": "tcp",
                "subnet": "172.20.0.0/24",
            }
        },
        headers=operator,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["endpoint"] == {
        "remote_host": "vpn1.example.net",
        "port": 1300,
        "protocol": "tcp",
        "subnet": "172.20.0.0/24",
        "sip_edge": "172.20.0.1",
        "tls_wrap": "tls-crypt",
    }
    conf = (await harness.client.get(f"{url}/openvpn-server.conf", headers=operator)).text
    assert "port 1300\nproto tcp\n" in conf and "server 172.20.0.0 255.255.255.0" in conf
    device = (
        await harness.client.post("/v1/tenants/bellavista/certificates", json={}, headers=admin)
    ).json()
    profile = (
        await harness.client.get(
            f"/v1/tenants/bellavista/certificates/{device['id']}/bundle", headers=admin
        )
    ).text
    assert "remote vpn1.example.net 1300" in profile and "proto tcp" in profile
    assert tenant_id


async def test_the_vpn_server_certificate_is_renewed(harness: ServiceHarness) -> None:
    _, admin = await make_ca(harness, "bellavista")
    operator = harness.mint.headers("operator")
    url = "/v1/tenants/bellavista/ca/server-certificate"
    assert (await harness.client.post(url, headers=admin)).status_code == 403
    before = (
        await harness.client.get("/v1/tenants/bellavista/ca/openvpn-server.conf", headers=operator)
    ).text
    renewed = await harness.client.post(url, headers=operator)
    assert renewed.status_code == 201, renewed.text
    assert renewed.json()["kind"] == "server" and renewed.json()["renewed_from_id"]
    after = (
        await harness.client.get("/v1/tenants/bellavista/ca/openvpn-server.conf", headers=operator)
    ).text
    assert renewed.json()["certificate_pem"].strip() in after
    assert before != after
    servers = (
        await harness.client.get("/v1/tenants/bellavista/certificates?kind=server", headers=admin)
    ).json()
    assert len(servers) == 2 and all(s["status"] == "valid" for s in servers)


async def test_listing_pages_and_filters(harness: ServiceHarness) -> None:
    _, headers = await make_ca(harness, "bellavista")
    url = "/v1/tenants/bellavista/certificates"
    ids = [
        (await harness.client.post(url, json={"extension": f"10{i}"}, headers=headers)).json()["id"]
        for i in range(3)
    ]
    await harness.client.post(f"{url}/{ids[0]}/revoke", json={}, headers=headers)
    first = (await harness.client.get(f"{url}?kind=device&limit=2", headers=headers)).json()
    rest = (await harness.client.get(f"{url}?kind=device&limit=2&offset=2", headers=headers)).json()
    assert [c["id"] for c in first + rest] == ids[::-1]
    valid = (await harness.client.get(f"{url}?kind=device&status=valid", headers=headers)).json()
    assert {c["id"] for c in valid} == set(ids[1:])
    assert (await harness.client.get(f"{url}?limit=0", headers=headers)).status_code == 422
