"""Registrar behaviour that sipp cannot express, driven by a small in-test SIP client."""

import asyncio

from centralino_proto.testing import ServiceHarness, serve_app, until
from centralino_registrar.config import Settings
from centralino_registrar.main import create_app
from centralino_registrar.server import SipServer

from .conftest import Phone, Provision, SipClient, challenge_of, digest_authorization, free_port


def _sip(harness: ServiceHarness) -> SipServer:
    server = harness.runtime.extras["sip"]
    assert isinstance(server, SipServer)
    return server


def _port(harness: ServiceHarness) -> int:
    return int(harness.settings.sip_port)  # type: ignore[attr-defined]


async def _answer_challenge(
    client: SipClient, phone: Phone, *, algorithm: str = "MD5", **kwargs: object
) -> None:
    """Sends a REGISTER, takes its 401 and sends the authenticated REGISTER."""
    await client.send(client.register(user=phone.extension, realm=phone.realm, **kwargs))  # type: ignore[arg-type]
    challenge = await client.recv()
    assert challenge.status == 401, challenge.encode()
    auth = digest_authorization(
        challenge_of(challenge, algorithm),
        username=phone.username,
        password=phone.password,
        uri=f"sip:{phone.realm}",
    )
    await client.send(
        client.register(user=phone.extension, realm=phone.realm, authorization=auth, **kwargs)  # type: ignore[arg-type]
    )


async def _register(
    client: SipClient,
    phone: Phone,
    *,
    algorithm: str = "MD5",
    expect: int = 200,
    **kwargs: object,
):  # type: ignore[no-untyped-def]
    """Challenge, then answer it; returns the final response."""
    await _answer_challenge(client, phone, algorithm=algorithm, **kwargs)
    final = await client.recv()
    assert final.status == expect, final.encode()
    return final


async def test_sha256_digest_and_nonce_count_replay(
    harness: ServiceHarness, provision: Provision
) -> None:
    phone = await provision()
    harness.settings.sip_digest_algorithms = ["MD5", "SHA-256"]  # type: ignore[attr-defined]
    async with SipClient(_port(harness)) as client:
        await client.send(client.register(user="101", realm=phone.realm))
        challenge = await client.recv()
        assert [
            v.split("algorithm=")[1].split(",")[0] for v in challenge.all("www-authenticate")
        ] == ["MD5", "SHA-256"]
        auth = digest_authorization(
            challenge_of(challenge, "SHA-256"),
            username="101",
            password="secret101",
            uri=f"sip:{phone.realm}",
        )
        await client.send(client.register(user="101", realm=phone.realm, authorization=auth))
        ok = await client.recv()
        assert ok.status == 200
        assert ok.get(
            "date",
        ) and "expires=120" in ok.get("contact")
        # The same nonce count again (a replay, new transaction): challenged with stale=true.
        await client.send(client.register(user="101", realm=phone.realm, authorization=auth))
        replay = await client.recv()
        assert replay.status == 401
        assert "stale=true" in replay.get("www-authenticate")


async def test_expired_nonce_is_stale(harness: ServiceHarness, provision: Provision) -> None:
    phone = await provision()
    _sip(harness).nonces.lifetime = 1
    async with SipClient(_port(harness)) as client:
        await client.send(client.register(user="101", realm=phone.realm))
        challenge = await client.recv()
        await asyncio.sleep(2.2)
        auth = digest_authorization(
            challenge_of(challenge), username="101", password="secret101", uri=f"sip:{phone.realm}"
        )
        await client.send(client.register(user="101", realm=phone.realm, authorization=auth))
        stale = await client.recv()
        assert stale.status == 401 and "stale=true" in stale.get("www-authenticate")
        # A forged nonce is not stale: just a new challenge.
        forged = auth.replace(challenge_of(challenge).split('nonce="')[1].split('"')[0], "AAAA")
        await client.send(client.register(user="101", realm=phone.realm, authorization=forged))
        again = await client.recv()
        assert again.status == 401 and "stale" not in again.get("www-authenticate")


async def test_cseq_order_bindings_limit_and_query(
    harness: ServiceHarness, provision: Provision
) -> None:
    phone = await provision()
    harness.settings.sip_max_bindings_per_aor = 2  # type: ignore[attr-defined]
    async with SipClient(_port(harness)) as client:
        await _register(
            client,
            phone,
            cseq=10,
            contact="<sip:101@10.0.0.1:5060>, <sip:101@10.0.0.2:5060>;expires=300",
        )
        # A lower CSeq on the same Call-ID is out of order: refused, nothing changes.
        await _register(
            client, phone, cseq=5, contact="<sip:101@10.0.0.1:5060>", expires=0, expect=400
        )
        # A third contact would pass the limit of 2.
        final = await _register(
            client, phone, cseq=20, contact="<sip:101@10.0.0.3:5060>", expect=503
        )
        assert final.get("retry-after")
        # A query (no Contact) lists the bindings with their own expiries.
        query = await _register(client, phone, cseq=30, contact="<none>")
    contacts = query.all("contact")
    assert len(contacts) == 2, query.encode()
    assert any(
        "10.0.0.2" in c and ";expires=" in c and int(c.split("expires=")[1]) > 280 for c in contacts
    )


async def test_malformed_input_gets_400_or_silence_and_the_listener_survives(
    harness: ServiceHarness, provision: Provision
) -> None:
    await provision()
    async with SipClient(_port(harness)) as client:
        bad_cseq = (
            "OPTIONS sip:x@bellavista.centralino.test SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{client.local_port};branch=z9hG4bKbad1\r\n"
            "From: <sip:a@b>;tag=1\r\nTo: <sip:x@bellavista.centralino.test>\r\n"
            "Call-ID: bad1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
        await client.send(bad_cseq)
        answer = await client.recv()
        assert answer.status == 400 and "CSeq" in answer.get("warning")
        await client.send(b"\x00\xff garbage \r\n\r\n")
        await client.send(
            bad_cseq.replace("SIP/2.0\r\n", "SIP/7.0\r\n", 1).replace("INVITE", "OPTIONS")
        )
        answer = await client.recv()
        assert answer.status == 505
        await client.send(bad_cseq.replace("INVITE", "OPTIONS").replace("bad1", "good1"))
        assert (await client.recv()).status == 200


async def test_tcp_keepalive_and_framing(harness: ServiceHarness, provision: Provision) -> None:
    phone = await provision()
    async with SipClient(_port(harness), "tcp") as client:
        await client.send(b"\r\n\r\n")
        assert await client.recv_raw() == b"\r\n"
        # Two requests in one segment, framed by Content-Length.
        first = client.register(user="101", realm=phone.realm)
        second = client.register(user="101", realm=phone.realm)
        await client.send(first + second)
        data = b""
        while data.count(b"SIP/2.0 401") < 2:
            data += await client.recv_raw()


async def test_failed_authentications_ban_the_source(
    harness: ServiceHarness, provision: Provision
) -> None:
    phone = await provision()
    harness.settings.sip_ban_threshold = 3  # type: ignore[attr-defined]
    _sip(harness).guard.threshold = 3
    async with SipClient(_port(harness)) as client:
        wrong = Phone(phone.tenant_id, phone.realm, "101", "101", "wrong-password", phone.device_id)
        for _ in range(3):
            await _register(client, wrong, expect=401)
        await client.send(client.register(user="101", realm=phone.realm))
        try:
            await client.recv(timeout=1.5)
            raise AssertionError("a banned source got an answer")
        except TimeoutError:
            pass
    metrics = (await harness.client.get("/metrics")).text
    assert "centralino_sip_banned_sources 1.0" in metrics
    assert 'centralino_sip_auth_failures_total{kind="wrong_credentials"}' in metrics


async def test_expiry_sweep_announces_unregistered(
    harness: ServiceHarness, provision: Provision
) -> None:
    phone = await provision()
    harness.settings.sip_min_expires = 1  # type: ignore[attr-defined]
    async with harness.probe("device.registered", "device.unregistered") as probe:
        async with SipClient(_port(harness)) as client:
            await _register(client, phone, expires=2)
            # A refresh is not a new binding: no second device.registered.
            await _register(client, phone, expires=2)
        [gone] = await probe.wait_for("device.unregistered", 1, timeout=15)
        assert gone.data.reason == "expired"
        assert len(probe.of_type("device.registered")) == 1
    assert _sip(harness).location.count == 0


async def test_storage_failure_answers_500_and_changes_nothing(
    harness: ServiceHarness, provision: Provision
) -> None:
    phone = await provision()

    async def broken() -> None:
        raise ConnectionError("database unreachable")

    _sip(harness).location.fail_writes = broken
    async with SipClient(_port(harness)) as client:
        await _register(client, phone, expect=500)
    assert _sip(harness).location.bindings((phone.tenant_id, "101")) == []


async def test_restart_keeps_bindings_and_refreshes(
    harness: ServiceHarness, provision: Provision
) -> None:
    phone = await provision()
    async with SipClient(_port(harness)) as client:
        await _register(client, phone, expires=600)
        await _register(client, phone, expires=3000)  # a refresh: written back later
    before = _sip(harness).location.bindings((phone.tenant_id, "101"))[0]
    await until(lambda: not _sip(harness).location._dirty, timeout=5)
    settings = Settings(**{**harness.settings.model_dump(), "sip_port": free_port()})
    second = create_app(settings, verifier=harness.mint.verifier())
    async with serve_app(second) as client2:
        response = await client2.get(
            "/v1/tenants/bellavista/line-status", headers=harness.mint.headers("operator")
        )
    [binding] = response.json()
    assert binding["binding_id"] == str(before.binding_id)
    assert 2900 < binding["expires"] <= 3000


async def test_a_refresh_extends_the_same_binding(
    harness: ServiceHarness, provision: Provision
) -> None:
    phone = await provision()
    async with SipClient(_port(harness)) as client:
        first = await _register(client, phone, expires=60)
        refreshed = await _register(client, phone, expires=600)
    assert "expires=60" in (first.get("contact") or "")
    [contact] = refreshed.all("contact")
    assert 590 <= int(contact.split("expires=")[1]) <= 600
    [binding] = _sip(harness).location.bindings((phone.tenant_id, "101"))
    assert binding.expires_in() > 590
    response = await harness.client.get(
        "/v1/tenants/bellavista/line-status/101", headers=harness.mint.headers("operator")
    )
    [shown] = response.json()
    assert shown["binding_id"] == str(binding.binding_id) and shown["expires"] > 590


async def test_register_waits_for_a_commit_in_flight_on_its_aor(
    harness: ServiceHarness, provision: Provision
) -> None:
    """A second phone of the AoR registers while the first one's binding is being
    committed: it waits for that commit and its 200 lists both bindings."""
    phone = await provision()
    location = _sip(harness).location
    entered, release = asyncio.Event(), asyncio.Event()

    async def held() -> None:
        entered.set()
        await release.wait()

    location.fail_writes = held
    async with SipClient(_port(harness)) as first, SipClient(_port(harness)) as second:
        await _answer_challenge(first, phone)
        await asyncio.wait_for(entered.wait(), 5)
        # The challenge needs no lock; the authenticated REGISTER must wait for the commit.
        await _answer_challenge(second, phone)
        await asyncio.sleep(0.3)
        assert first.received.empty() and second.received.empty()
        release.set()
        first_ok, second_ok = await first.recv(), await second.recv()
    assert first_ok.status == 200 and second_ok.status == 200
    assert len(first_ok.all("contact")) == 1
    assert len(second_ok.all("contact")) == 2
    assert len(location.bindings((phone.tenant_id, "101"))) == 2
