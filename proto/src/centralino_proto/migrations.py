"""Alembic plumbing: one async env for every service, run at start or as a command."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from .settings import asyncpg_url, libpq_url


def alembic_config(migrations_dir: Path, database_url: str) -> Config:
    """An Alembic config for a service's migrations folder and a database."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", asyncpg_url(database_url).replace("%", "%%"))
    return config


def upgrade(migrations_dir: Path, database_url: str, revision: str = "head") -> None:
    """Migrates a service database (blocking; call from a thread inside an event loop)."""
    command.upgrade(alembic_config(migrations_dir, database_url), revision)


async def ensure_database(database_url: str) -> bool:
    """Creates the database named in the URL if it is missing; True when created."""
    url = libpq_url(database_url)
    base, _, name = url.rpartition("/")
    name = name.split("?")[0]
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        await conn.execute(f'CREATE DATABASE "{name}"')
        return True
    finally:
        await conn.close()


def run_env(context: Any, target_metadata: list[MetaData]) -> None:
    """The body of every service's migrations/env.py (online and offline, async)."""
    if context.is_offline_mode():
        context.configure(
            url=context.config.get_main_option("sqlalchemy.url"),
            target_metadata=target_metadata,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return

    from sqlalchemy.ext.asyncio import create_async_engine

    def migrate(connection: Connection) -> None:
        # One migrator at a time, whatever number of replicas start together.
        lock = int.from_bytes(hashlib.sha256(b"centralino-migrate").digest()[:7], "big")
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock})
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock})

    async def run() -> None:
        engine = create_async_engine(
            context.config.get_main_option("sqlalchemy.url"), poolclass=NullPool
        )
        async with engine.connect() as connection:
            await connection.run_sync(migrate)
            await connection.commit()
        await engine.dispose()

    asyncio.run(run())


def create_plumbing_tables(op: Any) -> None:
    """Version 1 of the outbox, inbox and tenant directory (each service's first migration)."""
    import sqlalchemy as sa
    from sqlalchemy.dialects.postgresql import JSONB

    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("routing_key", sa.String(100), nullable=False),
        sa.Column("envelope", JSONB(), nullable=False),
        sa.Column("headers", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
    )
    op.create_index(
        "ix_outbox_unsent", "outbox", ["seq"], postgresql_where=sa.text("sent_at IS NULL")
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(200), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column(
            "handled_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("consumer", "event_id", name="pk_inbox"),
    )
    op.create_table(
        "tenant_directory",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("slug", sa.String(63), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(20), server_default="company", nullable=False),
        sa.Column("reseller_id", sa.Uuid(), nullable=True),
        sa.Column("sip_realm", sa.String(255), nullable=False),
        sa.Column("timezone", sa.String(64), server_default="Europe/Rome", nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenant_directory"),
        sa.UniqueConstraint("slug", name="uq_tenant_directory_slug"),
        sa.UniqueConstraint("sip_realm", name="uq_tenant_directory_sip_realm"),
    )


def drop_plumbing_tables(op: Any) -> None:
    for table in ("tenant_directory", "inbox", "outbox"):
        op.drop_table(table)
