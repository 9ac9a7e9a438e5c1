from centralino_proto.testing import ServiceHarness


async def test_probes_and_openapi(harness: ServiceHarness) -> None:
    assert (await harness.client.get("/healthz")).json() == {"status": "ok"}
    ready = await harness.wait_ready()
    assert ready["checks"] == {"database": "ok", "bus": "ok"}
    assert "centralino_http_request_seconds" in (await harness.client.get("/metrics")).text
    assert (await harness.client.get("/openapi.json")).json()["info"][
        "title"
    ] == "Centralino gateway"


async def test_errors_are_problem_json(harness: ServiceHarness) -> None:
    response = await harness.client.get("/v1/no-such-route")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404


async def test_migrations_match_the_models(harness: ServiceHarness) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import MetaData

    from centralino_gateway.models import Model
    from centralino_proto.db import plumbing_metadata

    metadata = MetaData()
    for source in (Model.metadata, plumbing_metadata):
        for table in source.tables.values():
            table.to_metadata(metadata)

    def diff(connection):  # type: ignore[no-untyped-def]
        return compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), metadata
        )

    async with harness.runtime.engine.connect() as connection:
        assert await connection.run_sync(diff) == []
