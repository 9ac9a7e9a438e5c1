"""Shared steps for the rating tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from centralino_proto.bus import EVENTS_HANDLED
from centralino_proto.events import CallClass, CallEnded, Direction, Disposition
from centralino_proto.testing import ServiceHarness
from centralino_rating.seed import DEMO_DECK


def call_ended(
    tenant_id: uuid.UUID,
    callee: str,
    seconds: int,
    *,
    call_id: str | None = None,
    extension: str = "101",
    call_class: CallClass = CallClass.international,
    direction: Direction = Direction.outbound,
) -> CallEnded:
    ended = datetime.now(UTC)
    started = ended - timedelta(seconds=seconds + 5)
    return CallEnded(
        call_id=call_id or uuid.uuid4().hex,
        tenant_id=tenant_id,
        extension=extension,
        caller=extension,
        callee=callee,
        call_class=call_class,
        direction=direction,
        disposition=Disposition.answered if seconds else Disposition.no_answer,
        started_at=started,
        answered_at=started + timedelta(seconds=5) if seconds else None,
        ended_at=ended,
        billable_seconds=seconds,
    )


async def top_up(harness: ServiceHarness, tenant: str, amount: str) -> None:
    response = await harness.client.post(
        f"/v1/tenants/{tenant}/top-ups",
        json={"amount": amount},
        headers=harness.mint.headers("operator"),
    )
    assert response.status_code == 201, response.text


async def balance(harness: ServiceHarness, tenant: str) -> dict[str, Any]:
    response = await harness.client.get(
        f"/v1/tenants/{tenant}/balance", headers=harness.mint.headers("operator")
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def authorize(
    harness: ServiceHarness,
    tenant_id: uuid.UUID,
    e164: str,
    call_class: str,
    call_id: str | None = None,
) -> dict[str, Any]:
    response = await harness.client.post(
        "/v1/authorize",
        json={
            "tenant_id": str(tenant_id),
            "call_id": call_id or uuid.uuid4().hex,
            "extension": "101",
            "e164": e164,
            "class": call_class,
        },
        headers=harness.mint.headers("service"),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def handled(harness: ServiceHarness, event_type: str, outcome: str) -> float:
    queue = f"{harness.settings.bus_queue_prefix}.{event_type}"
    value: float = EVENTS_HANDLED.labels(queue, outcome)._value.get()
    return value


def d(value: str) -> Decimal:
    return Decimal(value)


async def import_deck(
    harness: ServiceHarness, path: Path = DEMO_DECK, **params: str
) -> dict[str, object]:
    """Imports a deck file through the API as the operator."""
    response = await harness.client.post(
        "/v1/rate-decks",
        content=path.read_bytes(),
        params={"name": "demo", "effective_from": "2026-01-01", **params},
        headers={**harness.mint.headers("operator"), "Content-Type": "text/csv"},
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body
