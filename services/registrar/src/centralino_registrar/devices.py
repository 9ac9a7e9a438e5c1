"""Devices (SIP credentials of an extension) and what follows from removing them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from centralino_proto.bus import Outbox
from centralino_proto.events import DeviceDeleted, UnregisterReason
from centralino_proto.web import Problem

from .location import Location
from .models import Device, DeviceCreate, DeviceUpdate
from .sip import digest


def _hash(device: Device, password: str) -> None:
    device.ha1_md5 = digest.ha1("MD5", device.username, device.realm, password)
    device.ha1_sha256 = digest.ha1("SHA-256", device.username, device.realm, password)


async def create_device(
    *,
    session: AsyncSession,
    tenant_id: uuid.UUID,
    realm: str,
    extension: str,
    data: DeviceCreate,
    device_id: uuid.UUID | None = None,
) -> Device:
    """Creates a device of an extension, keeping its password only as HA1."""
    taken = await session.execute(
        select(col(Device.id)).where(
            col(Device.tenant_id) == tenant_id, col(Device.username) == data.username
        )
    )
    if taken.first():
        raise Problem(409, "Username taken", f"a device with username {data.username} exists")
    device = Device(
        id=device_id or uuid.uuid4(),
        tenant_id=tenant_id,
        extension=extension,
        username=data.username,
        display_name=data.display_name,
        realm=realm,
        ha1_md5="",
        ha1_sha256="",
    )
    _hash(device, data.password)
    session.add(device)
    await session.flush()
    return device


async def get_device(
    *, session: AsyncSession, tenant_id: uuid.UUID, device_id: uuid.UUID
) -> Device:
    """A device of a tenant; 404 otherwise."""
    device = await session.get(Device, device_id)
    if device is None or device.tenant_id != tenant_id:
        raise Problem(404, "Device not found", f"no device {device_id}")
    return device


async def list_devices(
    *, session: AsyncSession, tenant_id: uuid.UUID, extension: str | None = None
) -> list[Device]:
    """The devices of a tenant (or of one of its extensions), by extension and username."""
    query = select(Device).where(col(Device.tenant_id) == tenant_id)
    if extension is not None:
        query = query.where(col(Device.extension) == extension)
    rows = await session.execute(query.order_by(col(Device.extension), col(Device.username)))
    return list(rows.scalars().all())


async def update_device(*, session: AsyncSession, device: Device, data: DeviceUpdate) -> Device:
    """Changes a device's password (re-hashed) or display name."""
    if data.password is not None:
        _hash(device, data.password)
    if "display_name" in data.model_fields_set:
        device.display_name = data.display_name
    device.updated_at = datetime.now(UTC)
    session.add(device)
    await session.flush()
    return device


async def delete_devices(
    *,
    session: AsyncSession,
    outbox: Outbox,
    location: Location,
    devices: list[Device],
) -> None:
    """Deletes devices with their bindings; publishes device.unregistered and device.deleted."""
    ids = {d.id for d in devices}
    keys = {(d.tenant_id, d.extension) for d in devices}
    bindings = [b for key in keys for b in location.bindings(key) if b.device_id in ids]
    await location.remove(bindings, UnregisterReason.device_deleted, session=session)
    for device in devices:
        await session.delete(device)
        await outbox.add(
            session,
            DeviceDeleted(
                tenant_id=device.tenant_id,
                device_id=device.id,
                extension=device.extension,
                username=device.username,
            ),
            tenant_id=device.tenant_id,
        )
    await session.flush()
