"""Schemathesis against the service's own OpenAPI, over real HTTP: no 5xx, whatever the input."""

from pathlib import Path

from centralino_portability.config import Settings
from centralino_portability.main import create_app
from centralino_proto.testing import ServiceHarness, assert_no_server_errors, serve_http

from .conftest import FakeClock, Portal


async def test_no_5xx_for_any_generated_request(
    harness: ServiceHarness, portal: Portal, clock: FakeClock, tmp_path: Path
) -> None:
    # A real request on a real tenant, so generated calls get past the lookups.
    created = await portal.create()
    settings = Settings(**{**harness.settings.model_dump(), "migrate_on_start": False})
    app = create_app(settings, clock=clock, verifier=harness.mint.verifier())
    async with serve_http(app) as url:
        await assert_no_server_errors(
            url,
            headers=portal.operator,
            config_dir=tmp_path,
            parameters={"path.tenant": portal.slug, "path.request_id": created["id"]},
        )
