"""The routing service's tables and the shapes its API speaks."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from centralino_proto.db import service_registry
from centralino_proto.events import CallClass, ExtensionKind

from .numbering import E164


class Model(SQLModel, registry=service_registry()):
    """Base of this service's tables (its own MetaData, migrated by its own Alembic)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _created_at() -> Any:
    return SQLField(
        default_factory=_now,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


EXTENSION_NUMBER = re.compile(r"[1-9][0-9]{1,5}")
# Service short codes an extension may never shadow.
RESERVED_EXTENSIONS = frozenset({"112", "113", "115", "118", "144", "166"})

# The classes a station may be allowed or denied (emergency is always allowed,
# internal, on-net and inter-company are the tenant's own network).
PERMISSION_CLASSES = (
    CallClass.national_fixed,
    CallClass.mobile,
    CallClass.international,
    CallClass.premium,
    CallClass.toll_free,
    CallClass.shared_cost,
)


def _check_e164(value: str) -> str:
    if not E164.fullmatch(value):
        raise ValueError(f"{value!r} is not an E.164 number (+ and 7-15 digits)")
    return value


E164Str = Annotated[str, AfterValidator(_check_e164)]


# -- permissions ------------------------------------------------------------


class Permissions(BaseModel):
    """Which outside call classes an extension may dial (Kazoo's call restrictions)."""

    model_config = ConfigDict(extra="forbid")

    national_fixed: bool = True
    mobile: bool = True
    international: bool = False
    premium: bool = False
    toll_free: bool = True
    shared_cost: bool = True

    def allowed(self) -> frozenset[CallClass]:
        return frozenset(c for c in PERMISSION_CLASSES if getattr(self, c.value))


class PermissionsUpdate(BaseModel):
    """Some classes changed, the rest kept (PATCH)."""

    model_config = ConfigDict(extra="forbid")

    national_fixed: bool | None = None
    mobile: bool | None = None
    international: bool | None = None
    premium: bool | None = None
    toll_free: bool | None = None
    shared_cost: bool | None = None


# -- extensions -------------------------------------------------------------


class ExtensionBase(SQLModel):
    number: str = SQLField(max_length=6)
    name: str = SQLField(max_length=100)
    kind: ExtensionKind = SQLField(default=ExtensionKind.user, max_length=20)
    enabled: bool = True

    @field_validator("number")
    @classmethod
    def _number(cls, value: str) -> str:
        if not EXTENSION_NUMBER.fullmatch(value):
            raise ValueError("an extension is 2-6 digits and does not start with 0")
        if value in RESERVED_EXTENSIONS:
            raise ValueError(f"{value} is a reserved service number")
        return value


class ExtensionCreate(ExtensionBase):
    permissions: Permissions = Field(default_factory=Permissions)


class ExtensionUpdate(SQLModel):
    name: str | None = SQLField(default=None, max_length=100)
    kind: ExtensionKind | None = None
    enabled: bool | None = None


class Extension(Model, table=True):
    __tablename__ = "extension"
    __table_args__ = (UniqueConstraint("tenant_id", "number"),)

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = SQLField(index=True)
    number: str = SQLField(max_length=6)
    name: str = SQLField(max_length=100)
    kind: str = SQLField(max_length=20)
    enabled: bool = True
    allow_national_fixed: bool = True
    allow_mobile: bool = True
    allow_international: bool = False
    allow_premium: bool = False
    allow_toll_free: bool = True
    allow_shared_cost: bool = True
    created_at: datetime = _created_at()

    def permissions(self) -> Permissions:
        return Permissions(
            **{c.value: getattr(self, f"allow_{c.value}") for c in PERMISSION_CLASSES}
        )

    def set_permissions(self, permissions: Permissions) -> None:
        for c in PERMISSION_CLASSES:
            setattr(self, f"allow_{c.value}", getattr(permissions, c.value))


class ExtensionPublic(ExtensionBase):
    id: uuid.UUID
    tenant_id: uuid.UUID
    permissions: Permissions


# -- targets (where a number, an IVR key or a forward leads) ---------------


class TargetKind(StrEnum):
    extension = "extension"
    operator = "operator"
    ivr = "ivr"
    external = "external"
    voicemail = "voicemail"


class Target(BaseModel):
    """Where a call goes: an extension, the operator, an IVR menu, an outside number, voicemail."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: TargetKind
    extension: str | None = None
    e164: E164Str | None = None
    menu_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _complete(self) -> Target:
        needs = {
            TargetKind.extension: "extension",
            TargetKind.voicemail: "extension",
            TargetKind.external: "e164",
            TargetKind.ivr: "menu_id",
        }.get(self.kind)
        if needs and getattr(self, needs) is None:
            raise ValueError(f"a {self.kind} target needs {needs}")
        return self

    def label(self) -> str:
        return str(self.extension or self.e164 or self.menu_id or self.kind)


# -- forwarding -------------------------------------------------------------


class ForwardCondition(StrEnum):
    unconditional = "unconditional"
    busy = "busy"
    no_answer = "no_answer"
    unavailable = "unavailable"


class ForwardKind(StrEnum):
    extension = "extension"
    external = "external"
    voicemail = "voicemail"


class Forward(BaseModel):
    """One forwarding rule's target (Wazo's forwards: busy, no answer, unconditional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ForwardKind
    extension: str | None = None
    e164: E164Str | None = None
    # Only for no_answer: how long the extension rings first.
    after_seconds: int | None = Field(default=None, ge=5, le=300)

    @model_validator(mode="after")
    def _complete(self) -> Forward:
        if self.kind is ForwardKind.extension and not self.extension:
            raise ValueError("an extension forward needs extension")
        if self.kind is ForwardKind.external and not self.e164:
            raise ValueError("an external forward needs e164")
        return self


class Forwarding(BaseModel):
    """An extension's forwarding rules; null means not set."""

    model_config = ConfigDict(extra="forbid")

    unconditional: Forward | None = None
    busy: Forward | None = None
    no_answer: Forward | None = None
    unavailable: Forward | None = None


class ForwardingRule(Model, table=True):
    __tablename__ = "forwarding_rule"
    __table_args__ = (UniqueConstraint("extension_id", "condition"),)

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = SQLField(index=True)
    extension_id: uuid.UUID = SQLField(
        sa_column=Column(ForeignKey("extension.id", ondelete="CASCADE"), nullable=False)
    )
    condition: str = SQLField(max_length=20)
    kind: str = SQLField(max_length=20)
    target_extension: str | None = SQLField(default=None, max_length=6)
    target_e164: str | None = SQLField(default=None, max_length=16)
    after_seconds: int | None = None


# -- schedules --------------------------------------------------------------


class OpeningHours(BaseModel):
    """Open from `opens` to `closes` on these weekdays (0 = Monday)."""

    model_config = ConfigDict(extra="forbid")

    days: list[int] = Field(min_length=1)
    opens: time
    closes: time

    @model_validator(mode="after")
    def _valid(self) -> OpeningHours:
        if any(d < 0 or d > 6 for d in self.days):
            raise ValueError("days are 0 (Monday) to 6 (Sunday)")
        if self.closes <= self.opens:
            raise ValueError("closes must be after opens")
        return self


class ScheduleBase(SQLModel):
    name: str = SQLField(max_length=100)
    # None: the tenant's timezone (Europe/Rome unless the gateway says otherwise).
    timezone: str | None = SQLField(default=None, max_length=64)
    closed_on_holidays: bool = True


class ScheduleCreate(ScheduleBase):
    opening_hours: list[OpeningHours] = Field(min_length=1)
    closed_dates: list[date] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        if value is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown timezone {value!r}") from exc
        return value


class Schedule(Model, table=True):
    __tablename__ = "schedule"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = SQLField(index=True)
    name: str = SQLField(max_length=100)
    timezone: str | None = SQLField(default=None, max_length=64)
    closed_on_holidays: bool = True
    opening_hours: list[dict[str, Any]] = SQLField(sa_column=Column(JSONB, nullable=False))
    closed_dates: list[str] = SQLField(sa_column=Column(JSONB, nullable=False))


class SchedulePublic(ScheduleCreate):
    id: uuid.UUID


# -- IVR menus --------------------------------------------------------------

DIGIT_KEY = re.compile(r"[0-9*]")
DIAL_PATTERN = re.compile(r"[0-9XNZ]{1,6}")


class IvrMenuBase(SQLModel):
    name: str = SQLField(max_length=100)
    prompt: str = SQLField(max_length=100)
    timeout_seconds: int = SQLField(default=10, ge=1, le=60)


class IvrMenuCreate(IvrMenuBase):
    options: dict[str, Target] = Field(default_factory=dict)
    # "#" + extension: direct dial, limited by these patterns (X any digit, N 2-9, Z 1-9).
    direct_dial: bool = False
    direct_dial_allow: list[str] = Field(default_factory=lambda: ["XX", "XXX", "XXXX"])
    direct_dial_deny: list[str] = Field(default_factory=list)
    timeout_target: Target | None = None
    invalid_target: Target | None = None

    @field_validator("options")
    @classmethod
    def _keys(cls, value: dict[str, Target]) -> dict[str, Target]:
        for key in value:
            if not DIGIT_KEY.fullmatch(key):
                raise ValueError(f"option key {key!r} must be one digit 0-9 or *")
        return value

    @field_validator("direct_dial_allow", "direct_dial_deny")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not DIAL_PATTERN.fullmatch(pattern):
                raise ValueError(f"pattern {pattern!r}: 1-6 of 0-9, X, N, Z")
        return value


class IvrMenu(Model, table=True):
    __tablename__ = "ivr_menu"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = SQLField(index=True)
    name: str = SQLField(max_length=100)
    prompt: str = SQLField(max_length=100)
    timeout_seconds: int = 10
    options: dict[str, Any] = SQLField(sa_column=Column(JSONB, nullable=False))
    direct_dial: bool = False
    direct_dial_allow: list[str] = SQLField(sa_column=Column(JSONB, nullable=False))
    direct_dial_deny: list[str] = SQLField(sa_column=Column(JSONB, nullable=False))
    timeout_target: dict[str, Any] | None = SQLField(default=None, sa_column=Column(JSONB))
    invalid_target: dict[str, Any] | None = SQLField(default=None, sa_column=Column(JSONB))


class IvrMenuPublic(IvrMenuCreate):
    id: uuid.UUID


# -- numbers (DIDs) ---------------------------------------------------------


class NumberSource(StrEnum):
    assigned = "assigned"
    ported = "ported"


class NumberCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    e164: E164Str
    # Consecutive numbers from e164 on, each with the same target (DID blocks).
    count: int = Field(default=1, ge=1, le=100)
    target: Target
    night_target: Target | None = None
    schedule_id: uuid.UUID | None = None


class NumberUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: Target | None = None
    night_target: Target | None = None
    schedule_id: uuid.UUID | None = None


class Number(Model, table=True):
    __tablename__ = "number"

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = SQLField(index=True)
    e164: str = SQLField(max_length=16, unique=True)
    target: dict[str, Any] = SQLField(sa_column=Column(JSONB, nullable=False))
    night_target: dict[str, Any] | None = SQLField(default=None, sa_column=Column(JSONB))
    schedule_id: uuid.UUID | None = SQLField(
        default=None, sa_column=Column(ForeignKey("schedule.id", ondelete="RESTRICT"))
    )
    source: str = SQLField(default=NumberSource.assigned, max_length=20)
    created_at: datetime = _created_at()


class NumberPublic(BaseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    e164: str
    target: Target
    night_target: Target | None
    schedule_id: uuid.UUID | None
    source: NumberSource


# -- inter-company link groups ---------------------------------------------

MAX_LINK_MEMBERS = 10


class LinkMemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str
    digit: int = Field(ge=0, le=9)


class LinkGroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    members: list[LinkMemberIn] = Field(default_factory=list, max_length=MAX_LINK_MEMBERS)


class LinkGroup(Model, table=True):
    __tablename__ = "link_group"

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    name: str = SQLField(max_length=100, unique=True)
    created_at: datetime = _created_at()


class LinkMember(Model, table=True):
    __tablename__ = "link_member"
    __table_args__ = (UniqueConstraint("link_group_id", "digit"),)

    link_group_id: uuid.UUID = SQLField(
        sa_column=Column(
            ForeignKey("link_group.id", ondelete="CASCADE"), primary_key=True, nullable=False
        )
    )
    # One group per tenant: its digits must mean one thing.
    tenant_id: uuid.UUID = SQLField(primary_key=True, unique=True)
    digit: int


class LinkMemberPublic(BaseModel):
    tenant_id: uuid.UUID
    slug: str
    digit: int


class LinkGroupPublic(BaseModel):
    id: uuid.UUID
    name: str
    members: list[LinkMemberPublic]


# -- the compiled plans' version per tenant --------------------------------


class DialplanVersion(Model, table=True):
    """Bumped in every transaction that changes a tenant's plan; replicas compare it."""

    __tablename__ = "dialplan_version"

    tenant_id: uuid.UUID = SQLField(primary_key=True)
    version: int = SQLField(sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime = _created_at()
