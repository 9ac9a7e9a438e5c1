"""Dial-plan events, published by routing."""

from __future__ import annotations

import uuid
from enum import StrEnum

from .base import Event


class ExtensionKind(StrEnum):
    user = "user"
    station = "station"
    operator = "operator"


class ExtensionCreated(Event):
    event_type = "extension.created"
    tenant_id: uuid.UUID
    extension_id: uuid.UUID
    number: str
    name: str
    kind: ExtensionKind
    enabled: bool = True


class ExtensionUpdated(Event):
    event_type = "extension.updated"
    tenant_id: uuid.UUID
    extension_id: uuid.UUID
    number: str
    name: str
    kind: ExtensionKind
    enabled: bool = True


class ExtensionDeleted(Event):
    event_type = "extension.deleted"
    tenant_id: uuid.UUID
    extension_id: uuid.UUID
    number: str


class NumberAssigned(Event):
    """A DID became the tenant's (rating charges its monthly fee)."""

    event_type = "number.assigned"
    tenant_id: uuid.UUID
    number_id: uuid.UUID
    e164: str
    target_kind: str
    target: str | None = None


class NumberReleased(Event):
    event_type = "number.released"
    tenant_id: uuid.UUID
    number_id: uuid.UUID
    e164: str


class LinkCreated(Event):
    """A tenant joined an inter-company link group (rating charges the setup fee)."""

    event_type = "link.created"
    tenant_id: uuid.UUID
    link_group_id: uuid.UUID
    digit: int


class DialplanChanged(Event):
    """Internal to routing: these tenants' dial plans changed; every replica reloads them."""

    event_type = "dialplan.changed"
    tenant_ids: list[uuid.UUID]
