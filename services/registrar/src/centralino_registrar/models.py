"""The registrar service's tables: SIP devices (HA1 only) and bindings (the location)."""

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import field_validator
from sqlalchemy import Column, DateTime, Index, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from centralino_proto.db import service_registry


class Model(SQLModel, registry=service_registry()):
    """Base of this service's tables (its own MetaData, migrated by its own Alembic)."""


def _now() -> datetime:
    return datetime.now(UTC)


# SIP user part characters we accept for a device username (RFC 3261 "user", unescaped).
USERNAME_PATTERN = r"^[A-Za-z0-9\-_.!~*'()&=+$,;?/]{1,64}$"


class DeviceBase(Model):
    username: str = Field(max_length=64, regex=USERNAME_PATTERN)
    display_name: str | None = Field(default=None, max_length=100)


class DeviceCreate(DeviceBase):
    password: str = Field(min_length=8, max_length=128)

    @field_validator("password")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable() or '"' in value:
            raise ValueError("password must be printable and may not contain a double quote")
        return value


class DeviceUpdate(Model):
    password: str | None = Field(default=None, min_length=8, max_length=128)
    display_name: str | None = Field(default=None, max_length=100)

    @field_validator("password")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and (not value.isprintable() or '"' in value):
            raise ValueError("password must be printable and may not contain a double quote")
        return value


class Device(DeviceBase, table=True):
    """A SIP device of an extension; its password only as HA1 per digest algorithm."""

    __tablename__ = "device"
    __table_args__ = (UniqueConstraint("tenant_id", "username"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(index=True)
    extension: str = Field(max_length=32)
    realm: str = Field(max_length=255)
    ha1_md5: str = Field(max_length=32)
    ha1_sha256: str = Field(max_length=64)
    created_at: datetime = Field(
        default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class DevicePublic(DeviceBase):
    id: uuid.UUID
    tenant_id: uuid.UUID
    extension: str
    realm: str
    created_at: datetime
    updated_at: datetime


class BindingRow(Model, table=True):
    """A contact bound to an address-of-record (RFC 3261 10.3), persisted for restarts."""

    __tablename__ = "binding"
    __table_args__ = (Index("ix_binding_expires_at", "expires_at"),)

    binding_id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(index=True)
    device_id: uuid.UUID = Field(index=True)
    extension: str = Field(max_length=32)
    aor: str = Field(max_length=300)
    contact: str = Field(max_length=1024)
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    registered_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    call_id: str = Field(max_length=255)
    cseq: int
    q: float | None = None
    user_agent: str | None = Field(default=None, max_length=255)
    source_ip: str = Field(max_length=64)
    source_port: int
    transport: str = Field(max_length=8)
    instance: str | None = Field(default=None, max_length=255)


class BindingPublic(SQLModel):
    """A current binding, as line status shows it."""

    binding_id: uuid.UUID
    extension: str
    device_id: uuid.UUID
    username: str
    aor: str
    contact: str
    user_agent: str | None
    source: str
    transport: str
    expires: int
    expires_at: datetime
    registered_at: datetime


class DialogRow(Model, table=True):
    """A call in progress, so a restart of the registrar keeps its record (and its call.ended)."""

    __tablename__ = "dialog"

    call_id: str = Field(primary_key=True, max_length=255)
    tenant_id: uuid.UUID = Field(index=True)
    extension: str = Field(max_length=32)
    caller: str = Field(max_length=64)
    callee: str = Field(max_length=64)
    call_class: str = Field(max_length=20)
    direction: str = Field(max_length=10)
    forwarded_from: str | None = Field(default=None, max_length=32)
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    answered_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    max_seconds: int | None = None
    # Where each side is reached, and the messages that set the dialog up (for BYE).
    caller_at: str = Field(max_length=300)
    callee_at: str | None = Field(default=None, max_length=300)
    invite: str
    answer: str | None = None
    # A click-to-dial call: the controller's two dialogs (originate.Leg), so BYE and the
    # prepaid limit still reach both phones after a restart.
    legs: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
