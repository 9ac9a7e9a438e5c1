"""Billing events, published by rating."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import Field

from .base import Event, Money
from .call import CallClass


class CdrRated(Event):
    event_type = "cdr.rated"
    call_id: str
    tenant_id: uuid.UUID
    extension: str
    call_class: CallClass = Field(alias="class")
    e164: str | None = None
    billable_seconds: int
    bundle_seconds: int = 0
    prefix: str | None = None
    destination: str | None = None
    rate: Money
    cost: Money
    price: Money
    station_price: Money
    currency: str = "EUR"
    # Added later, optional so older consumers and producers keep validating.
    charged_seconds: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None


class LedgerEntryKind(StrEnum):
    top_up = "top_up"
    call = "call"
    fee = "fee"
    refund = "refund"
    adjustment = "adjustment"


class CreditChanged(Event):
    event_type = "credit.changed"
    tenant_id: uuid.UUID
    entry_id: uuid.UUID
    kind: LedgerEntryKind
    amount: Money
    balance: Money
    currency: str = "EUR"


class CreditLow(Event):
    event_type = "credit.low"
    tenant_id: uuid.UUID
    balance: Money
    threshold: Money
    currency: str = "EUR"


class CreditExhausted(Event):
    event_type = "credit.exhausted"
    tenant_id: uuid.UUID
    balance: Money
    currency: str = "EUR"
