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
            str(free_port()),
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
