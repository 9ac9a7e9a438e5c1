"""Hot-path caches in front of the database: tenants by SIP realm, device credentials."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from centralino_proto.tenancy import Tenant, find_tenant_by_realm

from .models import Device


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    """What digest authentication needs to know about a device."""

    device_id: uuid.UUID
    tenant_id: uuid.UUID
    extension: str
    username: str
    ha1: dict[str, str]

    @classmethod
    def of(cls, device: Device) -> DeviceCredentials:
        return cls(
            device_id=device.id,
            tenant_id=device.tenant_id,
            extension=device.extension,
            username=device.username,
            ha1={"MD5": device.ha1_md5, "SHA-256": device.ha1_sha256},
        )


class CacheMiss(Exception):
    """What the synchronous lookups raise when only the database knows the answer;
    `load` fetches it into the cache, after which the same lookup hits."""

    def __init__(self, load: Callable[[], Awaitable[object]]) -> None:
        super().__init__()
        self.load = load


class Directory:
    """Cache-aside: entries load on a miss; writers invalidate what they change."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], ttl: float = 30.0) -> None:
        self.sessionmaker = sessionmaker
        self.ttl = ttl
        self._realms: dict[str, tuple[float, Tenant | None]] = {}
        # One lookup in flight per realm, however many requests wait for it.
        self._loading: dict[str, asyncio.Future[Tenant | None]] = {}
        self._devices: dict[tuple[uuid.UUID, str], tuple[float, DeviceCredentials | None]] = {}

    def tenant_now(self, realm: str) -> Tenant | None:
        """The active tenant whose SIP realm this is, from memory; CacheMiss if not there."""
        hit = self._realms.get(realm.lower())
        if hit and hit[0] > time.monotonic():
            return hit[1]
        raise CacheMiss(lambda: self.tenant(realm))

    def device_now(self, tenant_id: uuid.UUID, username: str) -> DeviceCredentials | None:
        """A device's credentials from memory; CacheMiss if not there."""
        hit = self._devices.get((tenant_id, username))
        if hit and hit[0] > time.monotonic():
            return hit[1]
        raise CacheMiss(lambda: self.device(tenant_id, username))

    async def tenant(self, realm: str) -> Tenant | None:
        """The active tenant whose SIP realm this is."""
        with contextlib.suppress(CacheMiss):
            return self.tenant_now(realm)
        realm = realm.lower()
        loading = self._loading.get(realm)
        if loading is not None:
            return await asyncio.shield(loading)
        future: asyncio.Future[Tenant | None] = asyncio.get_running_loop().create_future()
        self._loading[realm] = future
        try:
            async with self.sessionmaker() as session:
                tenant = await find_tenant_by_realm(session, realm)
            if tenant is not None and not tenant.active:
                tenant = None
            self._realms[realm] = (time.monotonic() + self.ttl, tenant)
            future.set_result(tenant)
            return tenant
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it, nobody else must
            raise
        finally:
            del self._loading[realm]

    async def device(self, tenant_id: uuid.UUID, username: str) -> DeviceCredentials | None:
        with contextlib.suppress(CacheMiss):
            return self.device_now(tenant_id, username)
        async with self.sessionmaker() as session:
            device = (
                await session.execute(
                    select(Device).where(
                        col(Device.tenant_id) == tenant_id, col(Device.username) == username
                    )
                )
            ).scalar_one_or_none()
        creds = DeviceCredentials.of(device) if device else None
        # Unknown usernames are cached briefly, so guessing costs no query per attempt.
        self._devices[(tenant_id, username)] = (
            time.monotonic() + (self.ttl if creds else 5.0),
            creds,
        )
        return creds

    async def preload(self) -> int:
        """Loads every device's credentials (start-up), so REGISTER never waits on a query."""
        async with self.sessionmaker() as session:
            devices = (await session.execute(select(Device))).scalars().all()
        expires = time.monotonic() + 10 * 365 * 86400
        for device in devices:
            self._devices[(device.tenant_id, device.username)] = (
                expires,
                DeviceCredentials.of(device),
            )
        return len(devices)

    def forget_device(self, tenant_id: uuid.UUID, username: str) -> None:
        self._devices.pop((tenant_id, username), None)

    def forget_tenants(self) -> None:
        self._realms.clear()
