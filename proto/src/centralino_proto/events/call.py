"""Call events, published by the registrar's call control."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import Field

from .base import Event


class CallClass(StrEnum):
    """How routing classifies a call; rating prices by it."""

    internal = "internal"
    on_net = "on_net"
    inter_company = "inter_company"
    national_fixed = "national_fixed"
    mobile = "mobile"
    international = "international"
    toll_free = "toll_free"
    shared_cost = "shared_cost"
    premium = "premium"
    emergency = "emergency"


class Direction(StrEnum):
    inbound = "inbound"
    outbound = "outbound"
    internal = "internal"


class Disposition(StrEnum):
    answered = "answered"
    busy = "busy"
    no_answer = "no_answer"
    cancelled = "cancelled"
    rejected = "rejected"
    failed = "failed"


class CallStarted(Event):
    """A call was accepted for routing."""

    event_type = "call.started"
    call_id: str
    tenant_id: uuid.UUID
    extension: str
    caller: str
    callee: str
    call_class: CallClass = Field(alias="class")
    direction: Direction
    started_at: datetime


class CallAnswered(Event):
    event_type = "call.answered"
    call_id: str
    tenant_id: uuid.UUID
    extension: str
    answered_at: datetime


class CallEnded(Event):
    """Exactly one per call, whatever its outcome."""

    event_type = "call.ended"
    call_id: str
    tenant_id: uuid.UUID
    extension: str
    caller: str
    callee: str
    call_class: CallClass = Field(alias="class")
    direction: Direction
    disposition: Disposition
    started_at: datetime
    answered_at: datetime | None = None
    ended_at: datetime
    billable_seconds: int = 0
    forwarded_from: str | None = None
