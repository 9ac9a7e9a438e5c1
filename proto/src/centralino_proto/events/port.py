"""Number portability events, published by portability."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from .base import Event


class PortRequested(Event):
    """A tenant opened a port request (a draft until its signed consent arrives)."""

    event_type = "port.requested"
    tenant_id: uuid.UUID
    port_request_id: uuid.UUID
    # E.164, a GNR range expanded.
    numbers: list[str]


class PortStateChanged(Event):
    """A port request moved along the procedure (draft, submitted, ... closed)."""

    event_type = "port.state_changed"
    tenant_id: uuid.UUID
    port_request_id: uuid.UUID
    from_state: str
    to_state: str
    actor: str
    # Only public comments travel; private ones stay in the timeline.
    comment: str | None = None
    # The donor's reason code when to_state is "rejected".
    reason: str | None = None
    expected_completion: date | None = None
    # When the procedure is expected to be closed (the day after completion, by default).
    expected_closure: date | None = None
    at: datetime


class PortCompleted(Event):
    """The numbers now belong to the tenant (routing makes them DIDs)."""

    event_type = "port.completed"
    tenant_id: uuid.UUID
    port_request_id: uuid.UUID
    # E.164 numbers ported in, a GNR range expanded one by one.
    numbers: list[str]
    completed_at: datetime
    # The geographic number the tenant used meanwhile (same district), if any:
    # where the ported numbers may ring until the tenant says otherwise.
    temporary_number: str | None = None
