from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from centralino_proto.testing import ServiceHarness, service_under_test
from centralino_routing.config import Settings
from centralino_routing.main import create_app
from centralino_routing.replica import PlanKeeper
from centralino_routing.seed import seed


@pytest.fixture
async def harness() -> AsyncIterator[ServiceHarness]:
    """The routing app on a fresh database and a private exchange."""
    async with service_under_test(create_app, Settings, db_name="test_routing") as h:
        yield h


def keeper_of(harness: ServiceHarness) -> PlanKeeper:
    plans = harness.runtime.extras["plans"]
    assert isinstance(plans, PlanKeeper)
    return plans


@pytest.fixture
async def demo(harness: ServiceHarness) -> ServiceHarness:
    """The harness with ARCHITECTURE.md's demo dial plans loaded and compiled."""
    await seed(harness.runtime)
    await keeper_of(harness).load_all()
    return harness


Route = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def keeper() -> Callable[[ServiceHarness], PlanKeeper]:
    """The compiled plans of a harness's app."""
    return keeper_of


@pytest.fixture
def route() -> Route:
    """POST /v1/route with a service token; the decision's JSON."""
    return _route


async def _route(harness: ServiceHarness, **body: Any) -> dict[str, Any]:
    response = await harness.client.post(
        "/v1/route", json=body, headers=harness.mint.headers("service", sub="registrar")
    )
    assert response.status_code == 200, response.text
    decision: dict[str, Any] = response.json()
    return decision
