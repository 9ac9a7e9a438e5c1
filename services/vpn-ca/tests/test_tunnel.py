"""The real thing: OpenVPN server and phones in network namespaces, SIP REGISTER through the tunnel.

Two namespaces joined by a veth pair stand in for the platform's VPN host and a
phone behind an access provider. Every address (10.199.x.x) exists only inside
them. The client namespace has no route to the SIP edge except the one the
server pushes, so a REGISTER that gets answered went through the tunnel.

What answers at the SIP edge is one of two `Edge`s (the test runs with both):
sipp as a UAS answering REGISTER over UDP inside the server namespace, and the
real registrar (its app in process, SIP on 127.0.0.1) reached from the SIP
edge address over TCP through a socat bridge on a Unix socket, so no address
is added outside the namespaces.
"""

import asyncio
import contextlib
import io
import os
import socket
import subprocess
import tarfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from centralino_proto.testing import ServiceHarness, service_under_test

UNDERLAY_SERVER = "10.199.1.1"
UNDERLAY_CLIENT = "10.199.1.2"
TUNNEL_SUBNET = "10.199.2.0/24"
TUNNEL_SERVER = "10.199.2.1"
SIP_EDGE = "10.199.3.1"
SIP_PORT = 5060
VPN_PORT = 1194

UAS_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="REGISTER answered at the SIP edge">
  <recv request="REGISTER" crlf="true"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]edge[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Contact:];expires=300
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""

# Answers a digest challenge when the edge sends one, so the real registrar drops in.
UAC_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="REGISTER through the VPN">
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[field0] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Max-Forwards: 70
      From: <sip:[service]@[field0]>;tag=[pid]ua[call_number]
      To: <sip:[service]@[field0]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
      Expires: 300
      User-Agent: centralino-vpn-test
      Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true" optional="true" next="auth"/>
  <recv response="200" next="done"/>
  <label id="auth"/>
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[field0] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Max-Forwards: 70
      From: <sip:[service]@[field0]>;tag=[pid]ua[call_number]
      To: <sip:[service]@[field0]>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
      [authentication]
      Expires: 300
      User-Agent: centralino-vpn-test
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <label id="done"/>
</scenario>
"""


def sh(line: str, *more: str) -> list[str]:
    """A command from a line of space-separated words, plus words that may hold anything."""
    return [*line.split(), *more]


def in_ns(ns: str, line: str, *more: str) -> list[str]:
    return sh(f"ip netns exec {ns} {line}", *more)


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)


def must(*args: str) -> None:
    result = run(*args)
    assert result.returncode == 0, f"{' '.join(args)}: {result.stderr}"


@contextlib.contextmanager
def namespaces() -> Iterator[tuple[str, str]]:
    """A server and a client namespace joined by a veth pair; removed whatever happens."""
    tag = f"{os.getpid() % 100000}{uuid.uuid4().hex[:4]}"
    server, client = f"cvpn-s-{tag}", f"cvpn-c-{tag}"
    veth_s, veth_c = f"vs{tag}"[:15], f"vc{tag}"[:15]
    try:
        must("ip", "netns", "add", server)
        must("ip", "netns", "add", client)
        must(
            *sh(f"ip link add {veth_s} netns {server} type veth peer name {veth_c} netns {client}")
        )
        for ns, dev, addr in ((server, veth_s, UNDERLAY_SERVER), (client, veth_c, UNDERLAY_CLIENT)):
            must(*sh(f"ip -n {ns} link set lo up"))
            must(*sh(f"ip -n {ns} addr add {addr}/24 dev {dev}"))
            must(*sh(f"ip -n {ns} link set {dev} up"))
        # The SIP edge: an address of the VPN host that phones reach only through the tunnel.
        must(*sh(f"ip -n {server} addr add {SIP_EDGE}/32 dev lo"))
        yield server, client
    finally:
        for ns in (client, server):
            run(*sh(f"ip netns del {ns}"))


class Processes:
    """The processes a test starts, each stopped by its own handle at the end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        handle = log.open("wb")
        proc = subprocess.Popen(
            list(args), stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT
        )
        handle.close()
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


async def wait_for_text(
    path: Path, text: str, *, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text(errors="replace") if path.exists() else ""
        if text in content:
            return content
        if proc is not None and proc.poll() is not None:
            break
        await asyncio.sleep(0.2)
    content = path.read_text(errors="replace") if path.exists() else ""
    raise AssertionError(f"{text!r} not in {path.name} within {timeout}s:\n{content[-3000:]}")


def tunnel_address(ns: str) -> str:
    out = run(*sh(f"ip -n {ns} -4 -o addr show dev tun0")).stdout
    return out.split("inet ")[1].split("/")[0]


@dataclass
class Edge:
    """What answers REGISTER at SIP_EDGE:SIP_PORT in the server namespace."""

    transport: str  # sipp's -t: u1 (UDP) or t1 (TCP)
    # Checks, from the edge's side, that the phone registered from its tunnel address.
    confirm: Callable[[str], Awaitable[None]]


@contextlib.asynccontextmanager
async def sipp_edge(procs: Processes, server_ns: str, workdir: Path) -> AsyncIterator[Edge]:
    """sipp as a UAS on UDP, answering one REGISTER with 200."""
    (workdir / "uas.xml").write_text(UAS_SCENARIO)
    messages = workdir / "uas-messages.log"
    uas = procs.start(
        *in_ns(server_ns, f"sipp -i {SIP_EDGE} -p {SIP_PORT} -t u1 -m 1 -timeout 60s -nostdin"),
        *("-sf", str(workdir / "uas.xml"), "-trace_msg", "-message_file", str(messages)),
        log=workdir / "uas.out",
    )

    async def confirm(phone_address: str) -> None:
        await asyncio.to_thread(uas.wait, 30)
        assert uas.returncode == 0, (workdir / "uas.out").read_text()[-2000:]
        seen = messages.read_text()
        assert f"Via: SIP/2.0/UDP {phone_address}:" in seen, seen[-2000:]

    await asyncio.sleep(0.5)
    yield Edge(transport="u1", confirm=confirm)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def registrar_edge(procs: Processes, server_ns: str, workdir: Path) -> AsyncIterator[Edge]:
    """The registrar, with device 101 (password secret101), bridged to SIP_EDGE over TCP."""
    from centralino_registrar.config import Settings as RegistrarSettings
    from centralino_registrar.main import create_app as create_registrar

    port = free_port()
    async with service_under_test(
        create_registrar,
        RegistrarSettings,
        db_name="test_vpn_ca_registrar",
        sip_host="127.0.0.1",
        sip_port=port,
    ) as registrar:
        tenant = await registrar.add_tenant("bellavista")
        admin = registrar.mint.headers("tenant_admin", tenant_id=tenant.tenant_id)
        device = await registrar.client.post(
            "/v1/tenants/bellavista/extensions/101/devices",
            json={"username": "101", "password": "secret101"},
            headers=admin,
        )
        assert device.status_code == 201, device.text
        bridge = workdir / "edge.sock"
        procs.start(
            "socat",
            f"UNIX-LISTEN:{bridge},fork",
            f"TCP4:127.0.0.1:{port}",
            log=workdir / "socat-host.log",
        )
        for _ in range(50):
            if bridge.exists():
                break
            await asyncio.sleep(0.1)
        procs.start(
            *in_ns(server_ns, f"socat TCP4-LISTEN:{SIP_PORT},bind={SIP_EDGE},fork,reuseaddr"),
            f"UNIX-CONNECT:{bridge}",
            log=workdir / "socat-edge.log",
        )
        await asyncio.sleep(0.5)

        async def confirm(phone_address: str) -> None:
            status = await registrar.client.get(
                "/v1/tenants/bellavista/line-status/101", headers=admin
            )
            assert status.status_code == 200, status.text
            contacts = [b["contact"] for b in status.json()]
            assert any(phone_address in c for c in contacts), contacts

        yield Edge(transport="t1", confirm=confirm)


EDGES = {"sipp-uas": sipp_edge, "registrar": registrar_edge}


def register(
    client_ns: str,
    source: str,
    workdir: Path,
    *,
    transport: str,
    user: str,
    password: str,
    domain: str,
) -> subprocess.CompletedProcess[str]:
    """One REGISTER from the phone's namespace to the SIP edge, answering a challenge if any."""
    (workdir / "uac.xml").write_text(UAC_SCENARIO)
    (workdir / "uac.csv").write_text(f"SEQUENTIAL\n{domain}\n")
    return run(
        *in_ns(client_ns, f"sipp {SIP_EDGE}:{SIP_PORT} -i {source} -t {transport} -m 1"),
        *sh("-timeout 30s -recv_timeout 10s -nostdin"),
        *("-sf", str(workdir / "uac.xml"), "-inf", str(workdir / "uac.csv")),
        *("-s", user, "-au", user, "-ap", password),
        timeout=60,
    )


# Each run also covers one TLS wrapping of the control channel.
@pytest.mark.parametrize(
    ("edge_kind", "tls_wrap"), [("sipp-uas", "tls-crypt"), ("registrar", "tls-auth")]
)
async def test_tunnel_up_sip_register_through_it_and_a_revoked_phone_refused(
    harness: ServiceHarness, tmp_path: Path, edge_kind: str, tls_wrap: str
) -> None:
    tenant = await harness.add_tenant("bellavista")
    admin = harness.mint.headers("tenant_admin", tenant_id=tenant.tenant_id)
    operator = harness.mint.headers("operator")
    base = "/v1/tenants/bellavista"
    created = await harness.client.post(
        f"{base}/ca",
        json={
            "endpoint": {
                "remote_host": UNDERLAY_SERVER,
                "port": VPN_PORT,
                "subnet": TUNNEL_SUBNET,
                "sip_edge": SIP_EDGE,
                "tls_wrap": tls_wrap,
            }
        },
        headers=operator,
    )
    assert created.status_code == 201, created.text
    room_101 = (
        await harness.client.post(
            f"{base}/certificates",
            json={"extension": "101", "device_id": str(uuid.uuid4())},
            headers=admin,
        )
    ).json()
    room_102 = (
        await harness.client.post(
            f"{base}/certificates",
            json={"extension": "102", "device_id": str(uuid.uuid4())},
            headers=admin,
        )
    ).json()

    # Phone 101 is provisioned remotely through a one-time URL.
    token = (
        await harness.client.post(
            f"{base}/provisioning-tokens",
            json={"certificate_id": room_101["id"], "model": "generic"},
            headers=admin,
        )
    ).json()
    fetched = await harness.client.get(f"/v1/provisioning/{token['token']}")
    assert fetched.status_code == 200, fetched.text
    (tmp_path / "room-101.ovpn").write_bytes(fetched.content)
    # Phone 102 gets its profile by an admin download.
    bundle = await harness.client.get(
        f"{base}/certificates/{room_102['id']}/bundle?model=generic", headers=admin
    )
    assert bundle.status_code == 200
    (tmp_path / "room-102.ovpn").write_bytes(bundle.content)

    # Phone 103 is a Yealink: its client.tar comes through a one-time URL too.
    room_103 = (
        await harness.client.post(f"{base}/certificates", json={"extension": "103"}, headers=admin)
    ).json()
    yealink_token = (
        await harness.client.post(
            f"{base}/provisioning-tokens",
            json={"certificate_id": room_103["id"], "model": "yealink"},
            headers=admin,
        )
    ).json()
    yealink_tar = (await harness.client.get(f"/v1/provisioning/{yealink_token['token']}")).content
    yealink_dir = tmp_path / "yealink"
    with tarfile.open(fileobj=io.BytesIO(yealink_tar)) as archive:
        archive.extractall(yealink_dir, filter="data")
    # Where the phone unpacks keys/ (/config/openvpn/keys) is this directory here.
    cnf = (yealink_dir / "vpn.cnf").read_text()
    (yealink_dir / "vpn.cnf").write_text(
        cnf.replace("/config/openvpn/keys/", f"{yealink_dir}/keys/")
    )

    crl_path = tmp_path / "crl.pem"
    crl_path.write_text((await harness.client.get(f"{base}/ca/crl", headers=admin)).text)
    conf = await harness.client.get(
        f"{base}/ca/openvpn-server.conf", params={"crl_path": str(crl_path)}, headers=operator
    )
    assert conf.status_code == 200, conf.text
    (tmp_path / "server.conf").write_text(conf.text)
    assert f"<{tls_wrap}>" in conf.text

    procs = Processes()
    with namespaces() as (server_ns, client_ns):
        try:
            server = procs.start(
                *in_ns(server_ns, "openvpn --config", str(tmp_path / "server.conf")),
                log=tmp_path / "server.log",
            )
            await wait_for_text(
                tmp_path / "server.log",
                "Initialization Sequence Completed",
                timeout=60,
                proc=server,
            )

            phone = procs.start(
                *in_ns(client_ns, "openvpn --config", str(tmp_path / "room-101.ovpn")),
                log=tmp_path / "room-101.log",
            )
            await wait_for_text(
                tmp_path / "room-101.log",
                "Initialization Sequence Completed",
                timeout=60,
                proc=phone,
            )
            ping = run(*in_ns(client_ns, f"ping -c 3 -i 0.3 -W 3 {TUNNEL_SERVER}"))
            assert ping.returncode == 0, ping.stdout + ping.stderr
            # The SIP edge is reachable only by the route the server pushed.
            route = run(*sh(f"ip -n {client_ns} route get {SIP_EDGE}")).stdout
            assert "dev tun0" in route, route
            phone_address = tunnel_address(client_ns)
            assert phone_address.startswith("10.199.2.")

            async with EDGES[edge_kind](procs, server_ns, tmp_path) as edge:
                # Off the event loop: the registrar in process answers on this loop.
                registered = await asyncio.to_thread(
                    register,
                    client_ns,
                    phone_address,
                    tmp_path,
                    transport=edge.transport,
                    user="101",
                    password="secret101",
                    domain="bellavista.centralino.test",
                )
                assert registered.returncode == 0, (
                    registered.stdout[-3000:] + registered.stderr[-2000:]
                )
                await edge.confirm(phone_address)

            yealink = procs.start(
                *in_ns(
                    client_ns, "openvpn --config", str(yealink_dir / "vpn.cnf"), "--dev", "tun2"
                ),
                log=tmp_path / "room-103.log",
            )
            await wait_for_text(
                tmp_path / "room-103.log",
                "Initialization Sequence Completed",
                timeout=60,
                proc=yealink,
            )

            # Room 102 is revoked; the server reads the new CRL on the next handshake.
            revoked = await harness.client.post(
                f"{base}/certificates/{room_102['id']}/revoke",
                json={"reason": "key_compromise"},
                headers=admin,
            )
            assert revoked.status_code == 200
            fresh = (await harness.client.get(f"{base}/ca/crl", headers=admin)).text
            (tmp_path / "crl.new").write_text(fresh)
            os.replace(tmp_path / "crl.new", crl_path)
            procs.start(
                *in_ns(client_ns, "openvpn --config", str(tmp_path / "room-102.ovpn")),
                *sh("--dev tun1 --connect-retry-max 1 --hand-window 20"),
                log=tmp_path / "room-102.log",
            )
            log = await wait_for_text(tmp_path / "server.log", "certificate revoked", timeout=60)
            assert room_102["common_name"] in log
            await asyncio.sleep(2)
            assert (
                "Initialization Sequence Completed" not in (tmp_path / "room-102.log").read_text()
            )
            # Phone 101 is unaffected.
            again = run(*in_ns(client_ns, f"ping -c 1 -W 3 {TUNNEL_SERVER}"))
            assert again.returncode == 0
        finally:
            procs.stop_all()
