"""Schemathesis against the gateway's own OpenAPI, over real HTTP: no 5xx, whatever the input."""

import asyncio
import sys
from pathlib import Path

from centralino_gateway.config import Settings
from centralino_gateway.main import create_app
from centralino_proto.testing import ServiceHarness

from .conftest import Upstream, build_world, serve

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


async def test_no_5xx_for_any_generated_request(
    proxied: tuple[ServiceHarness, Upstream], tmp_path: Path
) -> None:
    h, _ = proxied
    w = await build_world(h)
    # On a real tenant, so generated data gets past the tenant lookup (kept alive: no DELETE).
    config = tmp_path / "schemathesis.toml"
    config.write_text('[parameters]\n"path.tenant" = "acme"\n')
    settings = Settings(**{**h.settings.model_dump(), "migrate_on_start": False})
    async with serve(create_app(settings)) as url:
        proc = await asyncio.create_subprocess_exec(
            SCHEMATHESIS,
            "--config-file",
            str(config),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--phases",
            "examples,fuzzing",
            "--max-examples",
            "3",
            "--seed",
            "20261125",
            "--no-shrink",
            "--workers",
            "2",
            "--request-timeout",
            "20",
            # The live stream never ends by design; it has its own test.
            "--exclude-path",
            "/v1/tenants/{tenant}/events",
            "--exclude-operation-id",
            "delete_tenant_v1_tenants__tenant__delete",
            "-H",
            f"Authorization: {w.operator['Authorization']}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 240)
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report[-6000:]
    assert " passed" in report and "failed" not in report.split("Test cases:")[-1], report[-3000:]
