"""The registrar service's HTTP API: devices of extensions, line status."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field

from centralino_proto.auth import Role
from centralino_proto.events import UnregisterReason
from centralino_proto.service import ServiceRuntime
from centralino_proto.tenancy import Tenant, TenantDep
from centralino_proto.web import ClaimsDep, Problem, SessionDep

from . import devices as service
from .location import Binding
from .models import BindingPublic, DeviceCreate, DevicePublic, DeviceUpdate
from .server import SipServer

router = APIRouter(prefix="/v1")

Extension = Annotated[str, Path(pattern=r"^[0-9]{1,16}$", description="extension number")]


def _sip(request: Request) -> SipServer:
    runtime: ServiceRuntime = request.app.state.runtime
    sip = runtime.extras["sip"]
    assert isinstance(sip, SipServer)
    return sip


def _may_write(claims: ClaimsDep) -> None:
    if claims.role is Role.tenant_user:
        raise Problem(403, "Forbidden", "tenant users may not change devices or bindings")


def _public(b: Binding, now: float) -> BindingPublic:
    return BindingPublic(
        binding_id=b.binding_id,
        extension=b.extension,
        device_id=b.device_id,
        username=b.username,
        aor=b.aor,
        contact=b.contact,
        user_agent=b.user_agent,
        source=f"{b.source_ip}:{b.source_port}",
        transport=b.transport,
        expires=b.expires_in(now),
        expires_at=datetime.fromtimestamp(b.expires_at, UTC),
        registered_at=datetime.fromtimestamp(b.registered_at, UTC),
    )


# -- devices ------------------------------------------------------------------


@router.post(
    "/tenants/{tenant}/extensions/{ext}/devices",
    status_code=201,
    response_model=DevicePublic,
    tags=["devices"],
)
async def create_device(
    tenant: TenantDep,
    ext: Extension,
    data: DeviceCreate,
    session: SessionDep,
    claims: ClaimsDep,
    request: Request,
) -> DevicePublic:
    """Creates a SIP device of an extension (its password is kept only as HA1)."""
    _may_write(claims)
    device = await service.create_device(
        session=session,
        tenant_id=tenant.tenant_id,
        realm=tenant.sip_realm,
        extension=ext,
        data=data,
    )
    await session.commit()
    _sip(request).directory.forget_device(tenant.tenant_id, device.username)
    return DevicePublic.model_validate(device, from_attributes=True)


@router.get(
    "/tenants/{tenant}/extensions/{ext}/devices",
    response_model=list[DevicePublic],
    tags=["devices"],
)
async def list_extension_devices(
    tenant: TenantDep, ext: Extension, session: SessionDep
) -> list[DevicePublic]:
    """The devices of an extension."""
    found = await service.list_devices(session=session, tenant_id=tenant.tenant_id, extension=ext)
    return [DevicePublic.model_validate(d, from_attributes=True) for d in found]


@router.get("/tenants/{tenant}/devices", response_model=list[DevicePublic], tags=["devices"])
async def list_devices(
    tenant: TenantDep, session: SessionDep, extension: str | None = None
) -> list[DevicePublic]:
    """The devices of a tenant."""
    found = await service.list_devices(
        session=session, tenant_id=tenant.tenant_id, extension=extension
    )
    return [DevicePublic.model_validate(d, from_attributes=True) for d in found]


@router.get("/tenants/{tenant}/devices/{device_id}", response_model=DevicePublic, tags=["devices"])
async def get_device(tenant: TenantDep, device_id: uuid.UUID, session: SessionDep) -> DevicePublic:
    """One device."""
    device = await service.get_device(
        session=session, tenant_id=tenant.tenant_id, device_id=device_id
    )
    return DevicePublic.model_validate(device, from_attributes=True)


async def _device_of(
    tenant: Tenant, device_id: uuid.UUID, ext: str | None, session: SessionDep
) -> service.Device:
    device = await service.get_device(
        session=session, tenant_id=tenant.tenant_id, device_id=device_id
    )
    if ext is not None and device.extension != ext:
        raise Problem(404, "Device not found", f"no device {device_id} on extension {ext}")
    return device


@router.patch(
    "/tenants/{tenant}/devices/{device_id}", response_model=DevicePublic, tags=["devices"]
)
@router.patch(
    "/tenants/{tenant}/extensions/{ext}/devices/{device_id}",
    response_model=DevicePublic,
    tags=["devices"],
)
async def update_device(
    tenant: TenantDep,
    device_id: uuid.UUID,
    data: DeviceUpdate,
    session: SessionDep,
    claims: ClaimsDep,
    request: Request,
    ext: str | None = None,
) -> DevicePublic:
    """Changes a device's password (existing bindings stay until they expire) or name."""
    _may_write(claims)
    device = await _device_of(tenant, device_id, ext, session)
    device = await service.update_device(session=session, device=device, data=data)
    await session.commit()
    _sip(request).directory.forget_device(tenant.tenant_id, device.username)
    return DevicePublic.model_validate(device, from_attributes=True)


@router.delete("/tenants/{tenant}/devices/{device_id}", status_code=204, tags=["devices"])
@router.delete(
    "/tenants/{tenant}/extensions/{ext}/devices/{device_id}", status_code=204, tags=["devices"]
)
async def delete_device(
    tenant: TenantDep,
    device_id: uuid.UUID,
    session: SessionDep,
    claims: ClaimsDep,
    request: Request,
    ext: str | None = None,
) -> Response:
    """Deletes a device; its bindings go and device.deleted is published."""
    _may_write(claims)
    device = await _device_of(tenant, device_id, ext, session)
    sip = _sip(request)
    await service.delete_devices(
        session=session, outbox=sip.runtime.outbox, location=sip.location, devices=[device]
    )
    await session.commit()
    sip.directory.forget_device(tenant.tenant_id, device.username)
    return Response(status_code=204)


# -- click-to-dial --------------------------------------------------------------


class OriginateRequest(BaseModel):
    extension: str = Field(pattern=r"^[0-9]{1,16}$")
    destination: str = Field(pattern=r"^\+?[0-9*#]{1,32}$")


class OriginateAccepted(BaseModel):
    call_id: str


@router.post(
    "/tenants/{tenant}/calls", status_code=202, response_model=OriginateAccepted, tags=["calls"]
)
async def originate(
    tenant: TenantDep, data: OriginateRequest, request: Request
) -> OriginateAccepted:
    """Click-to-dial: rings the extension's phones, then calls the destination (RFC 3725)."""
    call_id = await _sip(request).calls.originate(
        tenant=tenant, extension=data.extension, destination=data.destination
    )
    return OriginateAccepted(call_id=call_id)


# -- line status --------------------------------------------------------------


@router.get(
    "/tenants/{tenant}/line-status", response_model=list[BindingPublic], tags=["line status"]
)
async def line_status(
    tenant: TenantDep, request: Request, extension: str | None = None
) -> list[BindingPublic]:
    """Every current binding of a tenant (or of one extension)."""
    location = _sip(request).location
    now = time.time()
    found = (
        location.bindings((tenant.tenant_id, extension))
        if extension is not None
        else location.of_tenant(tenant.tenant_id)
    )
    return [_public(b, now) for b in sorted(found, key=lambda b: (b.extension, b.registered_at))]


@router.get(
    "/tenants/{tenant}/line-status/{ext}", response_model=list[BindingPublic], tags=["line status"]
)
async def extension_line_status(
    tenant: TenantDep, ext: Extension, request: Request
) -> list[BindingPublic]:
    """The current bindings of one extension."""
    now = time.time()
    found = _sip(request).location.bindings((tenant.tenant_id, ext))
    return [_public(b, now) for b in sorted(found, key=lambda b: b.registered_at)]


@router.delete("/tenants/{tenant}/line-status/{ext}", status_code=204, tags=["line status"])
async def force_unregister(
    tenant: TenantDep,
    ext: Extension,
    request: Request,
    claims: ClaimsDep,
    binding_id: uuid.UUID | None = None,
) -> Response:
    """Removes an extension's bindings (or one of them): the phones must register again."""
    _may_write(claims)
    location = _sip(request).location
    key = (tenant.tenant_id, ext)
    async with location.lock(key):
        found = [
            b for b in location.bindings(key) if binding_id is None or b.binding_id == binding_id
        ]
        if binding_id is not None and not found:
            raise Problem(404, "Binding not found", f"no binding {binding_id} on extension {ext}")
        await location.remove(found, UnregisterReason.forced)
    return Response(status_code=204)
