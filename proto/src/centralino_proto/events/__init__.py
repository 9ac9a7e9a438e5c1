"""Every event of the platform, declared once. Import from here."""

from .base import Envelope, Event, Money, event_class, event_types
from .call import CallAnswered, CallClass, CallEnded, CallStarted, Direction, Disposition
from .cert import CertIssued, CertRevoked
from .device import (
    DeviceDeleted,
    DeviceRegistered,
    DeviceUnregistered,
    Transport,
    UnregisterReason,
)
from .port import PortCompleted, PortRequested, PortStateChanged
from .rating import CdrRated, CreditChanged, CreditExhausted, CreditLow, LedgerEntryKind
from .routing import (
    ExtensionCreated,
    ExtensionDeleted,
    ExtensionKind,
    ExtensionUpdated,
    LinkCreated,
    NumberAssigned,
    NumberReleased,
)
from .tenant import (
    TenantCreated,
    TenantDeleted,
    TenantKind,
    TenantUpdated,
    UserCreated,
    UserDeleted,
    UserUpdated,
)

__all__ = [
    "CallAnswered",
    "CallClass",
    "CallEnded",
    "CallStarted",
    "CdrRated",
    "CertIssued",
    "CertRevoked",
    "CreditChanged",
    "CreditExhausted",
    "CreditLow",
    "DeviceDeleted",
    "DeviceRegistered",
    "DeviceUnregistered",
    "Direction",
    "Disposition",
    "Envelope",
    "Event",
    "ExtensionCreated",
    "ExtensionDeleted",
    "ExtensionKind",
    "ExtensionUpdated",
    "LedgerEntryKind",
    "LinkCreated",
    "Money",
    "NumberAssigned",
    "NumberReleased",
    "PortCompleted",
    "PortRequested",
    "PortStateChanged",
    "TenantCreated",
    "TenantDeleted",
    "TenantKind",
    "TenantUpdated",
    "Transport",
    "UnregisterReason",
    "UserCreated",
    "UserDeleted",
    "UserUpdated",
    "event_class",
    "event_types",
]
