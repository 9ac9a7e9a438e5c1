"""Database plumbing: the engine, sessions, and the tables every service carries."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Identity,
    Index,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import registry

# PostgreSQL naming conventions, so migrations name constraints predictably.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def service_registry() -> registry:
    """A fresh ORM registry for one service's models (its own MetaData)."""
    return registry(metadata=MetaData(naming_convention=NAMING_CONVENTION))


# The plumbing tables every service database has: the outbox, the inbox and the
# tenant directory. Each service's first migration creates them.
plumbing_metadata = MetaData(naming_convention=NAMING_CONVENTION)

outbox = Table(
    "outbox",
    plumbing_metadata,
    Column("seq", BigInteger, Identity(always=True), primary_key=True),
    Column("event_id", Uuid, nullable=False, unique=True),
    Column("routing_key", String(100), nullable=False),
    Column("envelope", JSONB, nullable=False),
    # W3C trace context captured when the event was written.
    Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True)),
)
Index("ix_outbox_unsent", outbox.c.seq, postgresql_where=outbox.c.sent_at.is_(None))

inbox = Table(
    "inbox",
    plumbing_metadata,
    Column("consumer", String(200), primary_key=True),
    Column("event_id", Uuid, primary_key=True),
    Column("handled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

tenant_directory = Table(
    "tenant_directory",
    plumbing_metadata,
    Column("tenant_id", Uuid, primary_key=True),
    Column("slug", String(63), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("kind", String(20), nullable=False, server_default="company"),
    Column("reseller_id", Uuid),
    Column("sip_realm", String(255), nullable=False, unique=True),
    Column("timezone", String(64), nullable=False, server_default="Europe/Rome"),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


def make_engine(database_url: str, **kwargs: object) -> AsyncEngine:
    """An asyncpg engine with sane pool defaults."""
    options: dict[str, object] = {"pool_size": 10, "max_overflow": 20, "pool_pre_ping": True}
    options.update(kwargs)
    return create_async_engine(database_url, **options)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)
