"""The rating service's tables."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    Numeric,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlmodel import Field, SQLModel

from centralino_proto.db import service_registry


def utcnow() -> datetime:
    return datetime.now(UTC)


class Model(SQLModel, registry=service_registry()):
    """Base of this service's tables (its own MetaData, migrated by its own Alembic)."""


def money(*, nullable: bool = False, default: str | None = "0") -> Column[Decimal]:
    """NUMERIC(18, 6): EUR with six decimals, never float."""
    return Column(
        Numeric(18, 6),
        nullable=nullable,
        server_default=text(default) if default is not None else None,
    )


def stamp(*, nullable: bool = False, now: bool = True) -> Column[datetime]:
    return Column(
        DateTime(timezone=True),
        nullable=nullable,
        server_default=func.now() if now else None,
    )


# -- rate decks ----------------------------------------------------------------


class RateDeckBase(SQLModel):
    name: str = Field(max_length=100)
    effective_from: datetime = Field(default_factory=utcnow, sa_column=stamp())


class RateDeck(RateDeckBase, Model, table=True):
    """One imported version of the operator's rate deck; the newest in force is used."""

    __tablename__ = "rate_deck"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # importing -> ready | failed; only ready decks rate calls.
    status: str = Field(default="importing", max_length=16)
    row_count: int = 0
    error_count: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_column=stamp())
    finished_at: datetime | None = Field(default=None, sa_column=stamp(nullable=True, now=False))


class RateDeckPublic(RateDeckBase):
    id: uuid.UUID
    status: str
    row_count: int
    error_count: int
    created_at: datetime
    finished_at: datetime | None


class Rate(Model, table=True):
    """A deck row: what a minute to a prefix costs the operator from a date on."""

    __tablename__ = "rate"
    # Keyed by the CSV line it came from: no sequence, no foreign-key trigger per row,
    # so COPY runs at full speed (the deck row is written in the same transaction).
    deck_id: uuid.UUID = Field(primary_key=True)
    line: int = Field(primary_key=True)
    prefix: str = Field(max_length=20)
    destination: str = Field(sa_column=Column(Text, nullable=False))
    rate_per_minute: Decimal = Field(default=Decimal("0"), sa_column=money(default=None))
    connection_fee: Decimal = Field(default=Decimal("0"), sa_column=money())
    increment: int = Field(default=1, sa_column=Column(Integer, nullable=False))
    minimum: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    effective_from: datetime = Field(default_factory=utcnow, sa_column=stamp(now=False))


# -- plans and subscriptions ------------------------------------------------


class PlanBase(SQLModel):
    name: str = Field(max_length=100)
    monthly_fee: Decimal = Field(default=Decimal("0"), sa_column=money())
    fixed_minutes: int = Field(default=0, ge=0)
    mobile_minutes: int = Field(default=0, ge=0)
    active: bool = True


class Plan(PlanBase, Model, table=True):
    """A FLAT plan: bundled minutes per month for a fee."""

    __tablename__ = "plan"
    code: str = Field(primary_key=True, max_length=32)


class PlanPublic(PlanBase):
    code: str


class Subscription(Model, table=True):
    """The plan a tenant is on and the bundle used in its current cycle."""

    __tablename__ = "subscription"
    tenant_id: uuid.UUID = Field(primary_key=True)
    plan_code: str = Field(foreign_key="plan.code")
    started_at: datetime = Field(default_factory=utcnow, sa_column=stamp())
    cycle_start: datetime = Field(default_factory=utcnow, sa_column=stamp(now=False))
    cycle_end: datetime = Field(default_factory=utcnow, sa_column=stamp(now=False))
    fixed_used_seconds: int = 0
    mobile_used_seconds: int = 0


# -- credit ------------------------------------------------------------------


class Account(Model, table=True):
    """A tenant's prepaid account; its row is the lock every debit and reservation takes."""

    __tablename__ = "account"
    tenant_id: uuid.UUID = Field(primary_key=True)
    balance: Decimal = Field(default=Decimal("0"), sa_column=money())
    # Calls may spend down to the floor (0 for prepaid; negative = credit line).
    floor: Decimal = Field(default=Decimal("0"), sa_column=money())
    low_threshold: Decimal = Field(default=Decimal("5"), sa_column=money(default="5"))
    reseller_markup_percent: Decimal = Field(default=Decimal("0"), sa_column=money())
    station_markup_percent: Decimal = Field(default=Decimal("0"), sa_column=money())
    currency: str = Field(default="EUR", max_length=3)
    created_at: datetime = Field(default_factory=utcnow, sa_column=stamp())


class LedgerEntry(Model, table=True):
    """Append-only: every change of a balance, with the balance after it."""

    __tablename__ = "ledger_entry"
    __table_args__ = (
        Index("ix_ledger_entry_tenant_id_seq", "tenant_id", "seq"),
        # A recurring fee or a top-up reference is booked once.
        Index(
            "uq_ledger_entry_tenant_id_reference",
            "tenant_id",
            "reference",
            unique=True,
            postgresql_where=text("reference IS NOT NULL"),
        ),
    )
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # Total order of entries (created_at ties within a transaction).
    seq: int | None = Field(
        default=None,
        sa_column=Column(BigInteger, Identity(always=True), nullable=False, unique=True),
    )
    tenant_id: uuid.UUID
    kind: str = Field(max_length=16)
    amount: Decimal = Field(default=Decimal("0"), sa_column=money(default=None))
    balance_after: Decimal = Field(default=Decimal("0"), sa_column=money(default=None))
    reference: str | None = Field(default=None, max_length=200)
    description: str = Field(default="", sa_column=Column(Text, nullable=False))
    call_id: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=stamp())


class Reservation(Model, table=True):
    """Credit (and bundle seconds) held for a call between authorize and call.ended."""

    __tablename__ = "reservation"
    __table_args__ = (
        Index(
            "ix_reservation_open",
            "tenant_id",
            "expires_at",
            postgresql_where=text("settled_at IS NULL"),
        ),
    )
    call_id: str = Field(primary_key=True, max_length=200)
    tenant_id: uuid.UUID
    extension: str = Field(max_length=40)
    e164: str = Field(max_length=20)
    call_class: str = Field(max_length=20)
    prefix: str = Field(max_length=20)
    amount: Decimal = Field(default=Decimal("0"), sa_column=money())
    # The reseller markup the hold was priced with; the call is settled with it too.
    reseller_markup_percent: Decimal | None = Field(
        default=None, sa_column=money(nullable=True, default=None)
    )
    bundle: str | None = Field(default=None, max_length=8)
    bundle_seconds: int = 0
    max_seconds: int
    created_at: datetime = Field(default_factory=utcnow, sa_column=stamp())
    expires_at: datetime = Field(default_factory=utcnow, sa_column=stamp(now=False))
    settled_at: datetime | None = Field(default=None, sa_column=stamp(nullable=True, now=False))


# -- recurring charges ---------------------------------------------------


class Did(Model, table=True):
    """A DID the tenant holds, charged monthly from its assignment."""

    __tablename__ = "did"
    number_id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(index=True)
    e164: str = Field(max_length=20)
    assigned_at: datetime = Field(default_factory=utcnow, sa_column=stamp())
    next_charge_at: datetime = Field(default_factory=utcnow, sa_column=stamp(now=False))
    released_at: datetime | None = Field(default=None, sa_column=stamp(nullable=True, now=False))


# -- rated calls and stations ---------------------------------------------


class Cdr(Model, table=True):
    """A rated call: cost to the operator, price to the tenant, price to the station."""

    __tablename__ = "cdr"
    __table_args__ = (
        UniqueConstraint("call_id", name="uq_cdr_call_id"),
        Index("ix_cdr_tenant_id_ended_at", "tenant_id", "ended_at"),
        Index("ix_cdr_tenant_id_extension_ended_at", "tenant_id", "extension", "ended_at"),
    )
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    call_id: str = Field(max_length=200)
    tenant_id: uuid.UUID
    extension: str = Field(max_length=40)
    call_class: str = Field(max_length=20)
    direction: str = Field(max_length=10)
    disposition: str = Field(max_length=12)
    caller: str = Field(max_length=64)
    callee: str = Field(max_length=64)
    e164: str | None = Field(default=None, max_length=20)
    started_at: datetime = Field(default_factory=utcnow, sa_column=stamp(now=False))
    answered_at: datetime | None = Field(default=None, sa_column=stamp(nullable=True, now=False))
    ended_at: datetime = Field(default_factory=utcnow, sa_column=stamp(now=False))
    billable_seconds: int
    bundle_seconds: int = 0
    charged_seconds: int = 0
    prefix: str | None = Field(default=None, max_length=20)
    destination: str | None = Field(default=None, sa_column=Column(Text))
    rate: Decimal = Field(default=Decimal("0"), sa_column=money())
    cost: Decimal = Field(default=Decimal("0"), sa_column=money())
    price: Decimal = Field(default=Decimal("0"), sa_column=money())
    station_price: Decimal = Field(default=Decimal("0"), sa_column=money())
    currency: str = Field(default="EUR", max_length=3)
    deck_id: uuid.UUID | None = None
    rated_at: datetime = Field(default_factory=utcnow, sa_column=stamp())


class Station(Model, table=True):
    """A billed extension (hotel room, desk): its markup and the start of its open period."""

    __tablename__ = "station"
    tenant_id: uuid.UUID = Field(primary_key=True)
    extension: str = Field(primary_key=True, max_length=40)
    # None: the tenant's station markup applies.
    markup_percent: Decimal | None = Field(
        default=None, sa_column=money(nullable=True, default=None)
    )
    period_started_at: datetime = Field(default_factory=utcnow, sa_column=stamp())


class StationPeriod(Model, table=True):
    """A closed station period (a checkout), with its totals."""

    __tablename__ = "station_period"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID
    extension: str = Field(max_length=40)
    started_at: datetime = Field(default_factory=utcnow, sa_column=stamp(now=False))
    ended_at: datetime = Field(default_factory=utcnow, sa_column=stamp(now=False))
    calls: int
    seconds: int
    price: Decimal = Field(default=Decimal("0"), sa_column=money())
    station_price: Decimal = Field(default=Decimal("0"), sa_column=money())
