from centralino_proto.testing import ServiceHarness


async def test_probes_and_openapi(harness: ServiceHarness) -> None:
    assert (await harness.client.get("/healthz")).json() == {"status": "ok"}
    ready = await harness.wait_ready()
    assert ready["checks"] == {"database": "ok", "bus": "ok", "dialplan": "ok"}
    assert "centralino_http_request_seconds" in (await harness.client.get("/metrics")).text
    assert (await harness.client.get("/openapi.json")).json()["info"][
        "title"
    ] == "Centralino routing"


async def test_errors_are_problem_json(harness: ServiceHarness) -> None:
    response = await harness.client.get("/v1/no-such-route")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404
