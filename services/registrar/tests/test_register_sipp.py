"""REGISTER against the live registrar with sipp scenarios (tests/sipp/*.xml)."""

import asyncio

from centralino_proto.testing import ServiceHarness, until

from .conftest import Provision, Sipp


def _ok(result) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 0, result.errors or result.stderr[-2000:]


async def _line_status(harness: ServiceHarness, slug: str = "bellavista") -> list[dict]:
    response = await harness.client.get(
        f"/v1/tenants/{slug}/line-status", headers=harness.mint.headers("operator")
    )
    assert response.status_code == 200
    return list(response.json())


async def test_register_with_digest_over_udp_and_tcp(
    harness: ServiceHarness, provision: Provision, sipp: Sipp
) -> None:
    phone = await provision(extension="101")
    async with harness.probe("device.registered") as probe:
        _ok(await sipp("register_auth", [phone.row()], transport="udp"))
        _ok(await sipp("register_auth", [phone.row()], transport="tcp"))
        events = await probe.wait_for("device.registered", 2)
    assert {e.data.transport for e in events} == {"udp", "tcp"}
    assert all(e.data.aor == "sip:101@bellavista.centralino.test" for e in events)
    bindings = await _line_status(harness)
    assert sorted(b["transport"] for b in bindings) == ["tcp", "udp"]
    assert all(b["user_agent"] == "sipp" and 100 < b["expires"] <= 120 for b in bindings)
    assert all(b["source"].startswith("127.0.0.1:") for b in bindings)


async def test_wrong_password_is_challenged_again(
    harness: ServiceHarness, provision: Provision, sipp: Sipp
) -> None:
    phone = await provision(extension="101")
    _ok(await sipp("register_wrong_password", [phone.row(password="not-the-password")]))
    assert await _line_status(harness) == []


async def test_another_users_aor_is_forbidden(
    harness: ServiceHarness, provision: Provision, sipp: Sipp
) -> None:
    phone = await provision(extension="101")
    await provision(extension="102")
    _ok(await sipp("register_foreign_aor", [phone.row(aor="102")]))
    assert await _line_status(harness) == []


async def test_contact_star_removes_every_binding(
    harness: ServiceHarness, provision: Provision, sipp: Sipp
) -> None:
    phone = await provision(extension="101")
    _ok(await sipp("register_auth", [phone.row()]))
    assert len(await _line_status(harness)) == 1
    async with harness.probe("device.unregistered") as probe:
        _ok(await sipp("register_wildcard", [phone.row()]))
        # The wildcard scenario registers its own contact first: both bindings go.
        gone = await probe.wait_for("device.unregistered", 2)
    assert {e.data.reason for e in gone} == {"removed"}
    assert await _line_status(harness) == []
    _ok(await sipp("register_wildcard_bad", [phone.row()]))


async def test_too_brief_expiry_gets_423(
    harness: ServiceHarness, provision: Provision, sipp: Sipp
) -> None:
    phone = await provision(extension="101")
    _ok(await sipp("register_brief", [phone.row()]))
    assert await _line_status(harness) == []


async def test_retransmission_answered_from_cache(
    harness: ServiceHarness, provision: Provision, sipp: Sipp
) -> None:
    phone = await provision(extension="101")
    async with harness.probe("device.registered") as probe:
        _ok(await sipp("register_retransmit", [phone.row()]))
        await probe.wait_for("device.registered", 1)
        await harness.relayed()  # a duplicate would be published by now
        await asyncio.sleep(0.5)  # and delivered
        assert len(probe.of_type("device.registered")) == 1
    metrics = (await harness.client.get("/metrics")).text
    assert "centralino_sip_retransmissions_total 1.0" in metrics


async def test_unknown_domain_and_options(
    harness: ServiceHarness, provision: Provision, sipp: Sipp
) -> None:
    phone = await provision(extension="101")
    row = phone.row()
    row[1] = "nowhere.example.org"
    _ok(await sipp("register_unknown_domain", [row]))
    _ok(await sipp("options", [["-", "-", "-"]]))
    _ok(await sipp("options", [["-", "-", "-"]], transport="tcp"))
    await until(lambda: True)
