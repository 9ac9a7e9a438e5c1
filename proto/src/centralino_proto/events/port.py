"""Number portability events, published by portability."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from .base import Event


class PortRequested(Event):
    event_type = "port.requested"
    tenant_id: uuid.UUID
    port_request_id: uuid.UUID
    numbers: list[str]


class PortStateChanged(Event):
    event_type = "port.state_changed"
    tenant_id: uuid.UUID
    port_request_id: uuid.UUID
    from_state: str
    to_state: str
    actor: str
    comment: str | None = None
    expected_completion: date | None = None
    at: datetime


class PortCompleted(Event):
    """The numbers now belong to the tenant (routing makes them DIDs)."""

    event_type = "port.completed"
    tenant_id: uuid.UUID
    port_request_id: uuid.UUID
    numbers: list[str]
    completed_at: datetime
