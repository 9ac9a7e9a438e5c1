"""Schemathesis against the service's own OpenAPI, over real HTTP: no 5xx, whatever the input."""

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from centralino_proto.demo import ROSSI_ROMA
from centralino_proto.testing import ServiceHarness, until
from centralino_routing.config import Settings
from centralino_routing.main import create_app

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Runs an app with uvicorn on 127.0.0.1 and a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await until(lambda: server.started, timeout=60, message="uvicorn started")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


async def test_no_5xx_for_any_generated_request(demo: ServiceHarness, tmp_path: Path) -> None:
    operator = demo.mint.headers("operator")
    groups = (await demo.client.get("/v1/link-groups", headers=operator)).json()
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        "[parameters]\n"
        f'"path.tenant" = "{ROSSI_ROMA.slug}"\n'
        '"path.number" = "401"\n'
        '"path.e164" = "+39062022601"\n'
        f'"path.group_id" = "{groups[0]["id"]}"\n'
    )
    settings = Settings(**{**demo.settings.model_dump(), "migrate_on_start": False})
    app = create_app(settings, verifier=demo.mint.verifier())
    async with serve(app) as url:
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
            "6",
            "--seed",
            "20261125",
            "--no-shrink",
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "-H",
            f"Authorization: {operator['Authorization']}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 240)
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report[-6000:]
    assert " passed" in report and "failed" not in report.split("Test cases:")[-1], report[-3000:]
