"""Schemathesis against the service's own OpenAPI, over real HTTP: no 5xx, whatever the input."""

from pathlib import Path

from centralino_proto.demo import ROSSI_ROMA
from centralino_proto.testing import ServiceHarness, assert_no_server_errors, serve_http
from centralino_routing.config import Settings
from centralino_routing.main import create_app


async def test_no_5xx_for_any_generated_request(demo: ServiceHarness, tmp_path: Path) -> None:
    operator = demo.mint.headers("operator")
    groups = (await demo.client.get("/v1/link-groups", headers=operator)).json()
    settings = Settings(**{**demo.settings.model_dump(), "migrate_on_start": False})
    app = create_app(settings, verifier=demo.mint.verifier())
    async with serve_http(app) as url:
        await assert_no_server_errors(
            url,
            headers=operator,
            config_dir=tmp_path,
            parameters={
                "path.tenant": ROSSI_ROMA.slug,
                "path.number": "401",
                "path.e164": "+39062022601",
                "path.group_id": groups[0]["id"],
            },
        )
