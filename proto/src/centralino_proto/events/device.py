"""SIP device and binding events, published by the registrar."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from .base import Event


class Transport(StrEnum):
    udp = "udp"
    tcp = "tcp"
    tls = "tls"


class DeviceRegistered(Event):
    """A binding appeared (not sent on refreshes)."""

    event_type = "device.registered"
    tenant_id: uuid.UUID
    device_id: uuid.UUID
    extension: str
    username: str
    aor: str
    contact: str
    source: str
    transport: Transport
    user_agent: str | None = None
    expires_at: datetime


class UnregisterReason(StrEnum):
    expired = "expired"
    removed = "removed"
    forced = "forced"
    device_deleted = "device_deleted"


class DeviceUnregistered(Event):
    """A binding went away."""

    event_type = "device.unregistered"
    tenant_id: uuid.UUID
    device_id: uuid.UUID
    extension: str
    aor: str
    contact: str
    reason: UnregisterReason


class DeviceDeleted(Event):
    event_type = "device.deleted"
    tenant_id: uuid.UUID
    device_id: uuid.UUID
    extension: str
    username: str
