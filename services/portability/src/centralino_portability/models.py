"""The portability service's tables and API shapes."""

from __future__ import annotations

import datetime as dt
import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field
from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Identity, Index, LargeBinary, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from centralino_proto.db import service_registry


def _printable(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and no control character belongs in a name or a note.
    if any(ord(c) < 32 and c not in "\n\r\t" for c in value):
        raise ValueError("control characters are not allowed")
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


Text = Annotated[str, AfterValidator(_printable)]


class Model(SQLModel, registry=service_registry()):
    """Base of this service's tables (its own MetaData, migrated by its own Alembic)."""


class PortState(StrEnum):
    draft = "draft"
    submitted = "submitted"
    taken_in_charge = "taken_in_charge"
    unlocked = "unlocked"
    scheduled = "scheduled"
    completed = "completed"
    closed = "closed"
    rejected = "rejected"
    cancelled = "cancelled"


class LineType(StrEnum):
    analog = "analog"
    isdn = "isdn"
    voip = "voip"


class NumberKind(StrEnum):
    # A single analog or VoIP line.
    single = "single"
    # An ISDN access: its primary number and the additional numbers (MSN) on it.
    isdn_primary = "isdn_primary"
    isdn_additional = "isdn_additional"
    # A GNR range (selezione passante): a root and a range of extensions.
    gnr = "gnr"


class RejectReason(StrEnum):
    """Why a donor refuses a port (the causes AGCOM lets it invoke)."""

    invalid_migration_code = "invalid_migration_code"
    wrong_line_type = "wrong_line_type"
    incomplete_number = "incomplete_number"
    unknown_number = "unknown_number"
    administrative_change = "administrative_change"
    identity_mismatch = "identity_mismatch"


class AttachmentKind(StrEnum):
    bill = "bill"
    signed_consent = "signed_consent"


# -- port request --------------------------------------------------------------


class Customer(BaseModel):
    """The line holder, as the donor knows them."""

    name: Text = Field(min_length=1, max_length=200)
    tax_code: str | None = Field(default=None, max_length=32, description="codice fiscale")
    vat_number: str | None = Field(default=None, max_length=32, description="partita IVA")


class GnrRange(BaseModel):
    first: str = Field(pattern=r"^[0-9]{1,4}$", description="first extension, e.g. 00")
    last: str = Field(pattern=r"^[0-9]{1,4}$", description="last extension, e.g. 49")


class NumberIn(BaseModel):
    """One number (or GNR range) to port, with its migration code."""

    kind: NumberKind = NumberKind.single
    number: str = Field(min_length=3, max_length=32, description="E.164 or national; the GNR root")
    migration_code: str = Field(min_length=1, max_length=64)
    primary: str | None = Field(
        default=None, max_length=32, description="for an ISDN additional number: its primary"
    )
    extensions: GnrRange | None = Field(default=None, description="for a GNR range")


class PortRequestBase(BaseModel):
    line_type: LineType
    customer: Customer
    numbers: list[NumberIn] = Field(min_length=1, max_length=100)
    temporary_number: str | None = Field(
        default=None,
        max_length=32,
        description=(
            "the geographic number the tenant got at activation (it shows the district); "
            "when omitted, one of the tenant's numbers in the district of the ported one"
        ),
    )
    donor_operator: Text | None = Field(default=None, max_length=100)


class PortRequestCreate(PortRequestBase):
    comment: Text | None = Field(default=None, max_length=4000)


class PortRequestUpdate(PortRequestBase):
    """A correction (draft or rejected): the whole request again."""


class PortRequest(Model, table=True):
    __tablename__ = "port_request"

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = SQLField(index=True)
    state: str = SQLField(max_length=20, default=PortState.draft)
    line_type: str = SQLField(max_length=10)
    customer_name: str = SQLField(max_length=200)
    tax_code: str | None = SQLField(default=None, max_length=16)
    vat_number: str | None = SQLField(default=None, max_length=11)
    temporary_number: str | None = SQLField(default=None, max_length=20)
    donor_operator: str | None = SQLField(default=None, max_length=100)
    donor: str = SQLField(max_length=40)
    donor_reference: str | None = SQLField(default=None, max_length=100)
    reject_reason: str | None = SQLField(default=None, max_length=40)
    expected_completion: date | None = None
    expected_closure: date | None = None
    reschedules: int = 0
    warnings: list[str] = SQLField(default_factory=list, sa_column=Column(JSONB, nullable=False))
    submitted_at: datetime | None = SQLField(default=None, sa_type=DateTime(timezone=True))
    completed_at: datetime | None = SQLField(default=None, sa_type=DateTime(timezone=True))
    state_changed_at: datetime = SQLField(sa_type=DateTime(timezone=True))
    created_at: datetime = SQLField(sa_type=DateTime(timezone=True))
    updated_at: datetime = SQLField(sa_type=DateTime(timezone=True))


class PortNumber(Model, table=True):
    """One E.164 number of a request (a GNR range is expanded, one row per number)."""

    __tablename__ = "port_number"
    __table_args__ = (
        # One open request per number.
        Index(
            "uq_port_number_open_e164",
            "e164",
            unique=True,
            postgresql_where=text("open"),
        ),
    )

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    request_id: uuid.UUID = SQLField(
        sa_column=Column(
            ForeignKey("port_request.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    position: int
    e164: str = SQLField(max_length=20)
    kind: str = SQLField(max_length=20)
    migration_code: str = SQLField(max_length=18)
    primary_e164: str | None = SQLField(default=None, max_length=20)
    gnr_root: str | None = SQLField(default=None, max_length=20)
    open: bool = True


class PortNumberPublic(BaseModel):
    e164: str
    kind: NumberKind
    migration_code: str
    primary: str | None = None
    gnr_root: str | None = None


class PortRequestPublic(BaseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    state: PortState
    line_type: LineType
    customer: Customer
    numbers: list[PortNumberPublic]
    temporary_number: str | None
    donor_operator: str | None
    donor: str
    reject_reason: RejectReason | None
    expected_completion: date | None
    expected_closure: date | None
    warnings: list[str]
    allowed_transitions: list[PortState]
    submitted_at: datetime | None
    completed_at: datetime | None
    state_changed_at: datetime
    created_at: datetime
    updated_at: datetime


class TenantNumber(Model, table=True):
    """A DID routing gave a tenant (from number.assigned): where its district shows."""

    __tablename__ = "tenant_number"

    e164: str = SQLField(max_length=20, primary_key=True)
    tenant_id: uuid.UUID = SQLField(index=True)
    area_code: str | None = SQLField(default=None, max_length=5)


# -- timeline ------------------------------------------------------------------


class TimelineKind(StrEnum):
    created = "created"
    corrected = "corrected"
    transition = "transition"
    comment = "comment"
    attachment = "attachment"


class TimelineEntry(Model, table=True):
    __tablename__ = "port_timeline"

    id: int | None = SQLField(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    request_id: uuid.UUID = SQLField(
        sa_column=Column(
            ForeignKey("port_request.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    at: datetime = SQLField(sa_type=DateTime(timezone=True))
    actor: str = SQLField(max_length=200)
    kind: str = SQLField(max_length=20)
    from_state: str | None = SQLField(default=None, max_length=20)
    to_state: str | None = SQLField(default=None, max_length=20)
    reason: str | None = SQLField(default=None, max_length=40)
    # The date the step announced (submission, scheduling, reschedule).
    expected_completion: date | None = None
    comment: str | None = None
    public: bool = True


class TimelineEntryPublic(BaseModel):
    at: datetime
    actor: str
    kind: TimelineKind
    from_state: PortState | None
    to_state: PortState | None
    reason: RejectReason | None
    expected_completion: date | None
    comment: str | None
    public: bool


class CommentCreate(BaseModel):
    text: Text = Field(min_length=1, max_length=4000)
    public: bool = True


class TransitionIn(BaseModel):
    to: PortState
    comment: Text | None = Field(default=None, max_length=4000)
    public: bool = True
    reason: RejectReason | None = None
    expected_completion: date | None = None


# -- attachments ---------------------------------------------------------------


class Attachment(Model, table=True):
    __tablename__ = "port_attachment"

    id: uuid.UUID = SQLField(default_factory=uuid.uuid4, primary_key=True)
    request_id: uuid.UUID = SQLField(
        sa_column=Column(
            ForeignKey("port_request.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    kind: str = SQLField(max_length=20)
    # Display only, sanitised; the content lives in the row, never at a user-chosen path.
    filename: str = SQLField(max_length=200)
    content_type: str = SQLField(max_length=100)
    size: int
    sha256: str = SQLField(max_length=64)
    content: bytes = SQLField(sa_column=Column(LargeBinary, nullable=False))
    uploaded_by: str = SQLField(max_length=200)
    uploaded_at: datetime = SQLField(sa_type=DateTime(timezone=True))


class AttachmentPublic(BaseModel):
    id: uuid.UUID
    kind: AttachmentKind
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_by: str
    uploaded_at: datetime


# -- public utilities ----------------------------------------------------------


class MigrationCodeIn(BaseModel):
    code: str = Field(max_length=200)


class MigrationCodeOut(BaseModel):
    valid: bool
    code: str
    parts: dict[str, str | None]
    errors: list[str]
    warnings: list[str]


class SkippedHoliday(BaseModel):
    date: dt.date
    name: str


class BusinessDaysOut(BaseModel):
    from_: dt.date = Field(serialization_alias="from")
    days: int
    date: dt.date
    skipped_holidays: list[SkippedHoliday]
