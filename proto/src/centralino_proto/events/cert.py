"""VPN certificate events, published by vpn-ca."""

from __future__ import annotations

import uuid
from datetime import datetime

from .base import Event


class CertIssued(Event):
    """A certificate was signed by a tenant's CA (a device's, or the VPN server's)."""

    event_type = "cert.issued"
    tenant_id: uuid.UUID
    certificate_id: uuid.UUID
    device_id: uuid.UUID | None = None
    serial: str
    subject: str
    not_after: datetime
    kind: str = "device"
    extension: str | None = None
    renewed_from: uuid.UUID | None = None


class CertRevoked(Event):
    """A certificate is on its CA's CRL from now on."""

    event_type = "cert.revoked"
    tenant_id: uuid.UUID
    certificate_id: uuid.UUID
    serial: str
    reason: str
    revoked_at: datetime
    device_id: uuid.UUID | None = None
    crl_number: int | None = None
