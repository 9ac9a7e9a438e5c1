"""The routing service's HTTP API: the dial-plan resources and POST /v1/route."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import Histogram

from centralino_proto.auth import Claims, Role
from centralino_proto.bus import Outbox
from centralino_proto.tenancy import Tenant, TenantDep, authorize_tenant
from centralino_proto.web import ClaimsDep, Problem, SessionDep

from . import store
from .decide import RouteDecision, RouteRequest
from .models import (
    ExtensionCreate,
    ExtensionPublic,
    ExtensionUpdate,
    Forwarding,
    IvrMenuCreate,
    IvrMenuPublic,
    LinkGroupCreate,
    LinkGroupPublic,
    LinkMemberIn,
    NumberCreate,
    NumberPublic,
    NumberUpdate,
    Permissions,
    PermissionsUpdate,
    ScheduleCreate,
    SchedulePublic,
)
from .replica import PlanKeeper

router = APIRouter(prefix="/v1")
tenant_router = APIRouter(prefix="/v1/tenants/{tenant}", tags=["dial plan"])

DECISION_SECONDS = Histogram(
    "centralino_routing_decision_seconds",
    "Time to decide one route, excluding HTTP",
    buckets=(0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.005),
)

WRITERS = frozenset({Role.operator, Role.reseller, Role.tenant_admin})


def _keeper(request: Request) -> PlanKeeper:
    keeper: PlanKeeper = request.app.state.runtime.extras["plans"]
    return keeper


def _outbox(request: Request) -> Outbox:
    outbox: Outbox = request.app.state.runtime.outbox
    return outbox


KeeperDep = Annotated[PlanKeeper, Depends(_keeper)]
OutboxDep = Annotated[Outbox, Depends(_outbox)]


def _writer(claims: Claims) -> None:
    if claims.role not in WRITERS:
        raise Problem(403, "Forbidden", f"a {claims.role} token may not change the dial plan")


async def _writing(tenant: TenantDep, claims: ClaimsDep) -> Tenant:
    _writer(claims)
    return tenant


WritableTenant = Annotated[Tenant, Depends(_writing)]


# -- the per-call decision ---------------------------------------------------


def route_claims(claims: ClaimsDep) -> Claims:
    """A service or operator token (verified once per token by the shared verifier)."""
    if claims.role not in (Role.service, Role.operator):
        raise Problem(403, "Forbidden", "routing decisions are for services and the operator")
    return claims


@router.post(
    "/route",
    response_model=RouteDecision,
    response_model_by_alias=True,
    tags=["route"],
    summary="Decide where a call goes",
)
async def route(
    body: RouteRequest, keeper: KeeperDep, _: Annotated[Claims, Depends(route_claims)]
) -> Response:
    """The per-call decision, from the compiled in-memory plans (no database access)."""
    started = time.perf_counter()
    decision = keeper.router.decide(body)
    DECISION_SECONDS.observe(time.perf_counter() - started)
    return JSONResponse(decision.body())


# -- extensions ---------------------------------------------------------------


@tenant_router.get("/extensions", response_model=list[ExtensionPublic])
async def list_extensions(tenant: TenantDep, session: SessionDep) -> list[ExtensionPublic]:
    return [store.extension_public(e) for e in await store.list_extensions(session, tenant=tenant)]


@tenant_router.post("/extensions", status_code=201, response_model=ExtensionPublic)
async def create_extension(
    data: ExtensionCreate,
    tenant: WritableTenant,
    session: SessionDep,
    outbox: OutboxDep,
    keeper: KeeperDep,
) -> ExtensionPublic:
    extension = await store.create_extension(session, outbox=outbox, tenant=tenant, data=data)
    await keeper.commit(session, [tenant.tenant_id])
    return store.extension_public(extension)


@tenant_router.get("/extensions/{number}", response_model=ExtensionPublic)
async def get_extension(number: str, tenant: TenantDep, session: SessionDep) -> ExtensionPublic:
    return store.extension_public(await store.get_extension(session, tenant=tenant, number=number))


@tenant_router.patch("/extensions/{number}", response_model=ExtensionPublic)
async def update_extension(
    number: str,
    data: ExtensionUpdate,
    tenant: WritableTenant,
    session: SessionDep,
    outbox: OutboxDep,
    keeper: KeeperDep,
) -> ExtensionPublic:
    extension = await store.update_extension(
        session, outbox=outbox, tenant=tenant, number=number, data=data
    )
    await keeper.commit(session, [tenant.tenant_id])
    return store.extension_public(extension)


@tenant_router.delete("/extensions/{number}", status_code=204)
async def delete_extension(
    number: str, tenant: WritableTenant, session: SessionDep, outbox: OutboxDep, keeper: KeeperDep
) -> Response:
    await store.delete_extension(session, outbox=outbox, tenant=tenant, number=number)
    await keeper.commit(session, [tenant.tenant_id])
    return Response(status_code=204)


@tenant_router.get("/extensions/{number}/permissions", response_model=Permissions)
async def get_permissions(number: str, tenant: TenantDep, session: SessionDep) -> Permissions:
    return (await store.get_extension(session, tenant=tenant, number=number)).permissions()


@tenant_router.put("/extensions/{number}/permissions", response_model=Permissions)
async def set_permissions(
    number: str,
    data: Permissions,
    tenant: WritableTenant,
    session: SessionDep,
    outbox: OutboxDep,
    keeper: KeeperDep,
) -> Permissions:
    extension = await store.set_permissions(
        session, outbox=outbox, tenant=tenant, number=number, data=data
    )
    await keeper.commit(session, [tenant.tenant_id])
    return extension.permissions()


@tenant_router.patch("/extensions/{number}/permissions", response_model=Permissions)
async def update_permissions(
    number: str,
    data: PermissionsUpdate,
    tenant: WritableTenant,
    session: SessionDep,
    outbox: OutboxDep,
    keeper: KeeperDep,
) -> Permissions:
    current = (await store.get_extension(session, tenant=tenant, number=number)).permissions()
    changes = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
    merged = current.model_copy(update=changes)
    extension = await store.set_permissions(
        session, outbox=outbox, tenant=tenant, number=number, data=merged
    )
    await keeper.commit(session, [tenant.tenant_id])
    return extension.permissions()


@tenant_router.patch("/extensions/{number}/forwarding", response_model=Forwarding)
async def update_forwarding(
    number: str,
    data: Forwarding,
    tenant: WritableTenant,
    session: SessionDep,
    outbox: OutboxDep,
    keeper: KeeperDep,
) -> Forwarding:
    """Changes only the conditions given (null clears one)."""
    current = await store.get_forwarding(session, tenant=tenant, number=number)
    merged = current.model_copy(update={k: getattr(data, k) for k in data.model_fields_set})
    forwarding = await store.set_forwarding(
        session, outbox=outbox, tenant=tenant, number=number, data=merged
    )
    await keeper.commit(session, [tenant.tenant_id])
    return forwarding


@tenant_router.delete("/extensions/{number}/forwarding", status_code=204)
async def clear_forwarding(
    number: str, tenant: WritableTenant, session: SessionDep, outbox: OutboxDep, keeper: KeeperDep
) -> Response:
    """Removes every forwarding rule of the extension."""
    await store.set_forwarding(
        session, outbox=outbox, tenant=tenant, number=number, data=Forwarding()
    )
    await keeper.commit(session, [tenant.tenant_id])
    return Response(status_code=204)


@tenant_router.get("/extensions/{number}/forwarding", response_model=Forwarding)
async def get_forwarding(number: str, tenant: TenantDep, session: SessionDep) -> Forwarding:
    return await store.get_forwarding(session, tenant=tenant, number=number)


@tenant_router.put("/extensions/{number}/forwarding", response_model=Forwarding)
async def set_forwarding(
    number: str,
    data: Forwarding,
    tenant: WritableTenant,
    session: SessionDep,
    outbox: OutboxDep,
    keeper: KeeperDep,
) -> Forwarding:
    forwarding = await store.set_forwarding(
        session, outbox=outbox, tenant=tenant, number=number, data=data
    )
    await keeper.commit(session, [tenant.tenant_id])
    return forwarding


# -- numbers --------------------------------------------------------------------


@tenant_router.get("/numbers", response_model=list[NumberPublic])
async def list_numbers(tenant: TenantDep, session: SessionDep) -> list[NumberPublic]:
    return [store.number_public(n) for n in await store.list_numbers(session, tenant=tenant)]


@tenant_router.post("/numbers", status_code=201, response_model=list[NumberPublic])
async def create_numbers(
    data: NumberCreate,
    tenant: WritableTenant,
    session: SessionDep,
    outbox: OutboxDep,
    keeper: KeeperDep,
) -> list[NumberPublic]:
    numbers = await store.create_numbers(session, outbox=outbox, tenant=tenant, data=data)
    await keeper.commit(session, [tenant.tenant_id])
    return [store.number_public(n) for n in numbers]


@tenant_router.get("/numbers/{e164}", response_model=NumberPublic)
async def get_number(e164: str, tenant: TenantDep, session: SessionDep) -> NumberPublic:
    return store.number_public(await store.get_number(session, tenant=tenant, e164=e164))


@tenant_router.patch("/numbers/{e164}", response_model=NumberPublic)
async def update_number(
    e164: str,
    data: NumberUpdate,
    tenant: WritableTenant,
    session: SessionDep,
    outbox: OutboxDep,
    keeper: KeeperDep,
) -> NumberPublic:
    number = await store.update_number(session, outbox=outbox, tenant=tenant, e164=e164, data=data)
    await keeper.commit(session, [tenant.tenant_id])
    return store.number_public(number)


@tenant_router.delete("/numbers/{e164}", status_code=204)
async def release_number(
    e164: str, tenant: WritableTenant, session: SessionDep, outbox: OutboxDep, keeper: KeeperDep
) -> Response:
    await store.release_number(session, outbox=outbox, tenant=tenant, e164=e164)
    await keeper.commit(session, [tenant.tenant_id])
    return Response(status_code=204)


# -- schedules ------------------------------------------------------------------


@tenant_router.get("/schedules", response_model=list[SchedulePublic])
async def list_schedules(tenant: TenantDep, session: SessionDep) -> list[SchedulePublic]:
    return [store.schedule_public(s) for s in await store.list_schedules(session, tenant=tenant)]


@tenant_router.post("/schedules", status_code=201, response_model=SchedulePublic)
async def create_schedule(
    data: ScheduleCreate,
    tenant: WritableTenant,
    session: SessionDep,
    outbox: OutboxDep,
    keeper: KeeperDep,
) -> SchedulePublic:
    schedule = await store.save_schedule(session, outbox=outbox, tenant=tenant, data=data)
    await keeper.commit(session, [tenant.tenant_id])
    return store.schedule_public(schedule)


@tenant_router.get("/schedules/{schedule_id}", response_model=SchedulePublic)
async def get_schedule(
    schedule_id: uuid.UUID, tenant: TenantDep, session: SessionDep
) -> SchedulePublic:
    return store.schedule_public(
        await store.get_schedule(session, tenant=tenant, schedule_id=schedule_id)
    )


@tenant_router.put("/schedules/{schedule_id}", response_model=SchedulePublic)
async def replace_schedule(
    schedule_id: uuid.UUID,
    data: ScheduleCreate,
    tenant: WritableTenant,
    session: SessionDep,
    outbox: OutboxDep,
    keeper: KeeperDep,
) -> SchedulePublic:
    schedule = await store.save_schedule(
        session, outbox=outbox, tenant=tenant, data=data, schedule_id=schedule_id
    )
    await keeper.commit(session, [tenant.tenant_id])
    return store.schedule_public(schedule)


@tenant_router.delete("/schedules/{schedule_id}", status_code=204)
async def delete_schedule(
    schedule_id: uuid.UUID,
    tenant: WritableTenant,
    session: SessionDep,
    outbox: OutboxDep,
    keeper: KeeperDep,
) -> Response:
    await store.delete_schedule(session, outbox=outbox, tenant=tenant, schedule_id=schedule_id)
    await keeper.commit(session, [tenant.tenant_id])
    return Response(status_code=204)


# -- IVR menus ------------------------------------------------------------------


@tenant_router.get("/ivr-menus", response_model=list[IvrMenuPublic])
async def list_menus(tenant: TenantDep, session: SessionDep) -> list[IvrMenuPublic]:
    return [store.menu_public(m) for m in await store.list_menus(session, tenant=tenant)]


@tenant_router.post("/ivr-menus", status_code=201, response_model=IvrMenuPublic)
async def create_menu(
    data: IvrMenuCreate,
    tenant: WritableTenant,
    session: SessionDep,
    outbox: OutboxDep,
    keeper: KeeperDep,
) -> IvrMenuPublic:
    menu = await store.save_menu(session, outbox=outbox, tenant=tenant, data=data)
    await keeper.commit(session, [tenant.tenant_id])
    return store.menu_public(menu)


@tenant_router.get("/ivr-menus/{menu_id}", response_model=IvrMenuPublic)
async def get_menu(menu_id: uuid.UUID, tenant: TenantDep, session: SessionDep) -> IvrMenuPublic:
    return store.menu_public(await store.get_menu(session, tenant=tenant, menu_id=menu_id))


@tenant_router.put("/ivr-menus/{menu_id}", response_model=IvrMenuPublic)
async def replace_menu(
    menu_id: uuid.UUID,
    data: IvrMenuCreate,
    tenant: WritableTenant,
    session: SessionDep,
    outbox: OutboxDep,
    keeper: KeeperDep,
) -> IvrMenuPublic:
    menu = await store.save_menu(session, outbox=outbox, tenant=tenant, data=data, menu_id=menu_id)
    await keeper.commit(session, [tenant.tenant_id])
    return store.menu_public(menu)


@tenant_router.delete("/ivr-menus/{menu_id}", status_code=204)
async def delete_menu(
    menu_id: uuid.UUID,
    tenant: WritableTenant,
    session: SessionDep,
    outbox: OutboxDep,
    keeper: KeeperDep,
) -> Response:
    await store.delete_menu(session, outbox=outbox, tenant=tenant, menu_id=menu_id)
    await keeper.commit(session, [tenant.tenant_id])
    return Response(status_code=204)


# -- inter-company link groups -------------------------------------------------

link_router = APIRouter(prefix="/v1/link-groups", tags=["link groups"])


def _link_manager(claims: Claims) -> None:
    if claims.role not in (Role.operator, Role.reseller):
        raise Problem(403, "Forbidden", "link groups are set up by the operator or a reseller")


async def _visible_group(
    session: SessionDep, claims: Claims, group_id: uuid.UUID
) -> LinkGroupPublic:
    group = await store.get_link_group(session, group_id=group_id)
    public = await store.link_group_public(session, group)
    if not await _may_see_group(session, claims, public):
        raise Problem(404, "Link group not found", f"no link group {group_id}")
    return public


async def _may_see_group(session: SessionDep, claims: Claims, group: LinkGroupPublic) -> bool:
    if claims.role in (Role.operator, Role.service):
        return True
    for member in group.members:
        if await _may_see(session, claims, member.tenant_id):
            return True
    return False


async def _may_see(session: SessionDep, claims: Claims, tenant_id: uuid.UUID) -> bool:
    try:
        await authorize_tenant(session, claims, tenant_id)
    except Problem:
        return False
    return True


@link_router.get("", response_model=list[LinkGroupPublic])
async def list_link_groups(session: SessionDep, claims: ClaimsDep) -> list[LinkGroupPublic]:
    out = []
    for group in await store.list_link_groups(session):
        public = await store.link_group_public(session, group)
        if await _may_see_group(session, claims, public):
            out.append(public)
    return out


@link_router.post("", status_code=201, response_model=LinkGroupPublic)
async def create_link_group(
    data: LinkGroupCreate,
    session: SessionDep,
    claims: ClaimsDep,
    outbox: OutboxDep,
    keeper: KeeperDep,
) -> LinkGroupPublic:
    _link_manager(claims)
    group = await store.create_link_group(session, outbox=outbox, name=data.name)
    digits = [m.digit for m in data.members]
    if len(set(digits)) != len(digits):
        raise Problem(409, "Link digit taken", "two members ask for the same digit")
    touched = []
    for member in data.members:
        tenant = await authorize_tenant(session, claims, member.tenant)
        await store.add_link_member(
            session, outbox=outbox, group=group, tenant=tenant, digit=member.digit
        )
        touched.append(tenant.tenant_id)
    public = await store.link_group_public(session, group)
    await keeper.commit(session, touched)
    return public


@link_router.get("/{group_id}", response_model=LinkGroupPublic)
async def get_link_group(
    group_id: uuid.UUID, session: SessionDep, claims: ClaimsDep
) -> LinkGroupPublic:
    return await _visible_group(session, claims, group_id)


@link_router.post("/{group_id}/members", status_code=201, response_model=LinkGroupPublic)
async def add_link_member(
    group_id: uuid.UUID,
    data: LinkMemberIn,
    session: SessionDep,
    claims: ClaimsDep,
    outbox: OutboxDep,
    keeper: KeeperDep,
) -> LinkGroupPublic:
    _link_manager(claims)
    group = await store.get_link_group(session, group_id=group_id)
    tenant = await authorize_tenant(session, claims, data.tenant)
    await store.add_link_member(
        session, outbox=outbox, group=group, tenant=tenant, digit=data.digit
    )
    public = await store.link_group_public(session, group)
    await keeper.commit(session, [m.tenant_id for m in public.members])
    return public


@link_router.delete("/{group_id}/members/{tenant}", status_code=204)
async def remove_link_member(
    group_id: uuid.UUID,
    tenant: str,
    session: SessionDep,
    claims: ClaimsDep,
    outbox: OutboxDep,
    keeper: KeeperDep,
) -> Response:
    _link_manager(claims)
    group = await store.get_link_group(session, group_id=group_id)
    member = await authorize_tenant(session, claims, tenant)
    before = await store.link_group_public(session, group)
    await store.remove_link_member(session, outbox=outbox, group=group, tenant_id=member.tenant_id)
    await keeper.commit(session, [m.tenant_id for m in before.members])
    return Response(status_code=204)


@link_router.delete("/{group_id}", status_code=204)
async def delete_link_group(
    group_id: uuid.UUID,
    session: SessionDep,
    claims: ClaimsDep,
    outbox: OutboxDep,
    keeper: KeeperDep,
) -> Response:
    _link_manager(claims)
    public = await _visible_group(session, claims, group_id)
    for member in public.members:
        await authorize_tenant(session, claims, member.tenant_id)
    await store.delete_link_group(
        session, outbox=outbox, group=await store.get_link_group(session, group_id=group_id)
    )
    await keeper.commit(session, [m.tenant_id for m in public.members])
    return Response(status_code=204)
