"""Accounts events, published by the gateway."""

from __future__ import annotations

import uuid
from enum import StrEnum

from .base import Event


class TenantKind(StrEnum):
    company = "company"
    hotel = "hotel"
    call_shop = "call_shop"
    coworking = "coworking"


class TenantCreated(Event):
    event_type = "tenant.created"
    tenant_id: uuid.UUID
    slug: str
    name: str
    kind: TenantKind = TenantKind.company
    reseller_id: uuid.UUID | None = None
    sip_realm: str
    timezone: str = "Europe/Rome"


class TenantUpdated(Event):
    event_type = "tenant.updated"
    tenant_id: uuid.UUID
    slug: str
    name: str
    kind: TenantKind = TenantKind.company
    reseller_id: uuid.UUID | None = None
    sip_realm: str
    timezone: str = "Europe/Rome"
    active: bool = True


class TenantDeleted(Event):
    event_type = "tenant.deleted"
    tenant_id: uuid.UUID
    slug: str


class UserCreated(Event):
    event_type = "user.created"
    user_id: uuid.UUID
    tenant_id: uuid.UUID | None
    email: str
    role: str
    extension: str | None = None


class UserUpdated(Event):
    event_type = "user.updated"
    user_id: uuid.UUID
    tenant_id: uuid.UUID | None
    email: str
    role: str
    extension: str | None = None
    active: bool = True


class UserDeleted(Event):
    event_type = "user.deleted"
    user_id: uuid.UUID
    tenant_id: uuid.UUID | None
