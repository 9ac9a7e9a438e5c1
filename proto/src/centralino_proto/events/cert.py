"""VPN certificate events, published by vpn-ca."""

from __future__ import annotations

import uuid
from datetime import datetime

from .base import Event


class CertIssued(Event):
    event_type = "cert.issued"
    tenant_id: uuid.UUID
    certificate_id: uuid.UUID
    device_id: uuid.UUID | None = None
    serial: str
    subject: str
    not_after: datetime


class CertRevoked(Event):
    event_type = "cert.revoked"
    tenant_id: uuid.UUID
    certificate_id: uuid.UUID
    serial: str
    reason: str
    revoked_at: datetime
