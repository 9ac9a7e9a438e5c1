import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from centralino_proto.testing import ServiceHarness, service_under_test
from centralino_registrar.config import Settings
from centralino_registrar.main import create_app

SIPP_DIR = Path(__file__).parent / "sipp"


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return int(port)
    raise RuntimeError("no free port")


@pytest.fixture
async def harness() -> AsyncIterator[ServiceHarness]:
    """The registrar app on a fresh database and a private exchange, SIP on a free port."""
    async with service_under_test(
        create_app,
        Settings,
        db_name="test_registrar",
        sip_host="127.0.0.1",
        sip_port=free_port(),
        sip_writeback_interval=0.5,
        sip_sweep_interval=0.2,
    ) as h:
        yield h


@dataclass
class Phone:
    tenant_id: uuid.UUID
    realm: str
    extension: str
    username: str
    password: str
    device_id: uuid.UUID

    def row(self, password: str | None = None, aor: str | None = None) -> list[str]:
        """A sipp CSV row: user (AoR); realm; the authentication keyword."""
        auth = f"[authentication username={self.username} password={password or self.password}]"
        return [aor or self.extension, self.realm, auth]


Provision = Callable[..., Awaitable[Phone]]


@pytest.fixture
async def provision(harness: ServiceHarness) -> Provision:
    """Creates a tenant (once per slug) and a device through the API."""
    tenants: dict[str, uuid.UUID] = {}

    async def make(
        slug: str = "bellavista", extension: str = "101", password: str | None = None
    ) -> Phone:
        if slug not in tenants:
            tenants[slug] = (await harness.add_tenant(slug)).tenant_id
        tenant_id = tenants[slug]
        password = password or f"secret{extension}"
        response = await harness.client.post(
            f"/v1/tenants/{slug}/extensions/{extension}/devices",
            json={"username": extension, "password": password},
            headers=harness.mint.headers("tenant_admin", tenant_id=tenant_id),
        )
        assert response.status_code == 201, response.text
        return Phone(
            tenant_id,
            f"{slug}.centralino.test",
            extension,
            extension,
            password,
            uuid.UUID(response.json()["id"]),
        )

    return make


@dataclass
class SippResult:
    returncode: int
    stdout: str
    stderr: str
    errors: str


Sipp = Callable[..., Awaitable[SippResult]]


@pytest.fixture
def sipp(harness: ServiceHarness, tmp_path: Path) -> Sipp:
    """Runs a committed sipp scenario against the live registrar; 0 = every call passed."""

    async def run(
        scenario: str,
        rows: list[list[str]],
        *,
        transport: str = "udp",
        calls: int | None = None,
        extra: list[str] | None = None,
        local_port: int | None = None,
    ) -> SippResult:
        csv = tmp_path / f"{scenario}-{uuid.uuid4().hex[:6]}.csv"
        csv.write_text("SEQUENTIAL\n" + "".join(";".join(r) + "\n" for r in rows))
        errors = tmp_path / f"{csv.stem}-errors.log"
        args = [
            "sipp",
            f"127.0.0.1:{harness.settings.sip_port}",  # type: ignore[attr-defined]
            "-sf",
            str(SIPP_DIR / f"{scenario}.xml"),
            "-inf",
            str(csv),
            "-i",
            "127.0.0.1",
            "-p",
            str(local_port or free_port()),
            "-m",
            str(calls or len(rows)),
            "-r",
            "20",
            "-t",
            "u1" if transport == "udp" else "t1",
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
            "-error_file",
            str(errors),
            *(extra or []),
        ]
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=tmp_path,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return SippResult(
            proc.returncode or 0,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
            errors.read_text() if errors.exists() else "",
        )

    return run


class SipClient:
    """A small UDP (or TCP) SIP client for what sipp cannot express; runs on the test's loop."""

    def __init__(self, port: int, transport: str = "udp") -> None:
        self.server = ("127.0.0.1", port)
        self.transport = transport
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.local_port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.cseq = 0
        self.call_id = uuid.uuid4().hex

    async def __aenter__(self) -> "SipClient":
        loop = asyncio.get_running_loop()
        if self.transport == "udp":
            queue = self.received

            class Proto(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: object) -> None:
                    queue.put_nowait(data)

            transport, _ = await loop.create_datagram_endpoint(
                Proto, local_addr=("127.0.0.1", 0), remote_addr=self.server
            )
            self._udp = transport  # type: ignore[assignment]
            self.local_port = transport.get_extra_info("sockname")[1]
        else:
            self._reader, self._writer = await asyncio.open_connection(*self.server)
            self.local_port = self._writer.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._udp:
            self._udp.close()
        if self._writer:
            self._writer.close()

    async def send(self, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        if self._udp:
            self._udp.sendto(raw)
        else:
            assert self._writer
            self._writer.write(raw)
            await self._writer.drain()

    async def recv_raw(self, timeout: float = 5.0) -> bytes:
        if self._udp:
            return await asyncio.wait_for(self.received.get(), timeout)
        assert self._reader
        return await asyncio.wait_for(self._reader.read(65536), timeout)

    async def recv(self, timeout: float = 5.0):  # type: ignore[no-untyped-def]
        from centralino_registrar.sip.message import SipMessage, parse

        msg = parse(await self.recv_raw(timeout))
        assert isinstance(msg, SipMessage), msg
        return msg

    async def register_with_digest(
        self, *, user: str, realm: str, password: str, contact: str | None = None
    ) -> None:
        """REGISTER, answer the 401's challenge, and insist on the 200."""
        await self.send(self.register(user=user, realm=realm, contact=contact))
        auth = digest_authorization(
            challenge_of(await self.recv()), username=user, password=password, uri=f"sip:{realm}"
        )
        await self.send(self.register(user=user, realm=realm, contact=contact, authorization=auth))
        assert (await self.recv()).status == 200

    def register(
        self,
        *,
        user: str,
        realm: str,
        expires: int | None = 120,
        contact: str | None = None,
        authorization: str | None = None,
        branch: str | None = None,
        cseq: int | None = None,
        ruri: str | None = None,
        extra: str = "",
    ) -> str:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        t = self.transport.upper()
        contact = contact or f"<sip:{user}@127.0.0.1:{self.local_port};transport={t.lower()}>"
        lines = [
            f"REGISTER {ruri or 'sip:' + realm} SIP/2.0",
            f"Via: SIP/2.0/{t} 127.0.0.1:{self.local_port};branch={branch or 'z9hG4bK' + uuid.uuid4().hex};rport",
            "Max-Forwards: 70",
            f"From: <sip:{user}@{realm}>;tag={self.call_id[:8]}",
            f"To: <sip:{user}@{realm}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} REGISTER",
        ]
        if contact != "<none>":
            lines.append(f"Contact: {contact}")
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if authorization:
            lines.append(f"Authorization: {authorization}")
        if extra:
            lines.append(extra)
        lines += ["User-Agent: pytest", "Content-Length: 0", "", ""]
        return "\r\n".join(lines)


def digest_authorization(
    challenge: str,
    *,
    username: str,
    password: str,
    uri: str,
    method: str = "REGISTER",
    nc: int = 1,
    cnonce: str = "0a4f113b",
) -> str:
    """An Authorization value computed independently of the registrar's own code."""
    import hashlib
    import re

    params = dict(re.findall(r'(\w+)="?([^",]+)"?', challenge))
    algorithm = params.get("algorithm", "MD5")
    h = hashlib.sha256 if algorithm == "SHA-256" else hashlib.md5

    def H(text: str) -> str:
        return h(text.encode()).hexdigest()

    ha1 = H(f"{username}:{params['realm']}:{password}")
    ha2 = H(f"{method}:{uri}")
    ncs = f"{nc:08x}"
    response = H(f"{ha1}:{params['nonce']}:{ncs}:{cnonce}:auth:{ha2}")
    return (
        f'Digest username="{username}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
        f'uri="{uri}", response="{response}", algorithm={algorithm}, qop=auth, nc={ncs}, '
        f'cnonce="{cnonce}"'
    )


def challenge_of(msg, algorithm: str = "MD5") -> str:  # type: ignore[no-untyped-def]
    for value in msg.all("www-authenticate"):
        if f"algorithm={algorithm}" in value:
            return str(value)
    raise AssertionError(f"no {algorithm} challenge in {msg.headers}")
