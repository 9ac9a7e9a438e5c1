"""Per-replica read caches for the proxy's hot path (revoked tokens, tenant scoping).

A proxied read needs no database round trip. What another replica changes shows here
within `ttl` seconds; what this replica changes shows at once. The owner services check
scoping again and never saw revocations anyway, so a short lag changes nothing they rely on.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from .models import RevokedAccessToken, Tenant, utcnow


class RevocationList:
    """The jti of every revoked, unexpired access token (a small set), reloaded every `ttl`."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], ttl: float = 2.0) -> None:
        self._sessionmaker = sessionmaker
        self._ttl = ttl
        self._jtis: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def contains(self, jti: str) -> bool:
        if time.monotonic() - self._loaded_at > self._ttl:
            async with self._lock:
                if time.monotonic() - self._loaded_at > self._ttl:
                    async with self._sessionmaker() as session:
                        rows = await session.scalars(
                            select(col(RevokedAccessToken.jti)).where(
                                col(RevokedAccessToken.expires_at) > utcnow()
                            )
                        )
                        self._jtis = frozenset(rows.all())
                    self._loaded_at = time.monotonic()
        return jti in self._jtis

    def add(self, jti: str) -> None:
        self._jtis = self._jtis | {jti}


@dataclass(frozen=True)
class TenantScope:
    """What scoping needs to know of a tenant."""

    id: uuid.UUID
    slug: str
    reseller_id: uuid.UUID | None


class TenantScopes:
    """Live tenants by slug and by id, for the proxy's scoping check."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], ttl: float = 2.0) -> None:
        self._sessionmaker = sessionmaker
        self._ttl = ttl
        self._entries: dict[str, tuple[float, TenantScope | None]] = {}

    async def get(self, ref: str) -> TenantScope | None:
        key = ref.lower()
        hit = self._entries.get(key)
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        try:
            by = col(Tenant.id) == uuid.UUID(key)
        except ValueError:
            by = col(Tenant.slug) == key
        async with self._sessionmaker() as session:
            row = (
                await session.execute(
                    select(col(Tenant.id), col(Tenant.slug), col(Tenant.reseller_id)).where(
                        by, col(Tenant.deleted_at).is_(None)
                    )
                )
            ).first()
        scope = TenantScope(id=row[0], slug=row[1], reseller_id=row[2]) if row else None
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[key] = (time.monotonic(), scope)
        return scope

    def forget(self, tenant: Tenant) -> None:
        """After this replica changed or closed a tenant."""
        self._entries.pop(tenant.slug, None)
        self._entries.pop(str(tenant.id), None)
