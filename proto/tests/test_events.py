import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from centralino_proto import schemas
from centralino_proto.events import (
    CallClass,
    CallEnded,
    CdrRated,
    Direction,
    Disposition,
    Envelope,
    event_types,
)


def test_committed_schemas_match_the_declarations() -> None:
    rendered = schemas.render()
    committed = {p.name: p.read_text() for p in schemas.SCHEMA_DIR.glob("*.json")}
    stale = sorted(set(rendered) ^ set(committed)) + sorted(
        name for name in rendered.keys() & committed.keys() if rendered[name] != committed[name]
    )
    assert not stale, f"proto/schemas is stale for {stale}: run `make schemas`"


def test_every_event_in_the_architecture_is_declared() -> None:
    declared = set(event_types())
    for name in [
        "tenant.created",
        "user.created",
        "device.registered",
        "device.unregistered",
        "call.started",
        "call.answered",
        "call.ended",
        "extension.created",
        "extension.deleted",
        "number.assigned",
        "number.released",
        "cdr.rated",
        "credit.changed",
        "credit.low",
        "credit.exhausted",
        "port.requested",
        "port.state_changed",
        "port.completed",
        "cert.issued",
        "cert.revoked",
    ]:
        assert name in declared


def _call_ended() -> CallEnded:
    now = datetime.now(UTC)
    return CallEnded(
        call_id="a84b4c76e66710",
        tenant_id=uuid.uuid4(),
        extension="101",
        caller="101",
        callee="+5511987654321",
        call_class=CallClass.international,
        direction=Direction.outbound,
        disposition=Disposition.answered,
        started_at=now,
        answered_at=now,
        ended_at=now,
        billable_seconds=61,
    )


def test_envelope_round_trip_keeps_the_contract_field_names() -> None:
    envelope = Envelope.wrap(_call_ended(), producer="registrar", tenant_id=uuid.uuid4())
    raw = json.loads(envelope.model_dump_json())
    assert raw["type"] == "call.ended" and raw["version"] == 1 and raw["producer"] == "registrar"
    assert raw["data"]["class"] == "international", "the wire name is `class`"
    back = Envelope[CallEnded].model_validate(raw)
    assert back == envelope


def test_money_travels_as_a_decimal_string() -> None:
    cdr = CdrRated(
        call_id="x",
        tenant_id=uuid.uuid4(),
        extension="106",
        call_class=CallClass.international,
        billable_seconds=61,
        rate=Decimal("0.0128"),
        cost=Decimal("0.013013"),
        price=Decimal("0.013013"),
        station_price=Decimal("0.016917"),
    )
    data = json.loads(cdr.model_dump_json())
    assert data["cost"] == "0.013013" and data["rate"] == "0.0128"


def test_events_are_frozen_and_validated() -> None:
    event = _call_ended()
    with pytest.raises(ValidationError):
        event.billable_seconds = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        CallEnded.model_validate({**event.model_dump(), "class": "nonsense"})
