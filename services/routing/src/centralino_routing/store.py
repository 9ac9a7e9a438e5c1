"""Changes to the dial plan: validated, written with their events, one transaction each.

Every function here runs inside the caller's transaction and ends by bumping the
touched tenants' plan versions and queueing a `dialplan.changed` signal in the
outbox, so every replica rebuilds those tenants once the transaction commits.
The view commits; a Problem raised half way leaves nothing written.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, func, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from centralino_proto.bus import Outbox
from centralino_proto.events import (
    ExtensionCreated,
    ExtensionDeleted,
    ExtensionKind,
    ExtensionUpdated,
    LinkCreated,
    NumberAssigned,
    NumberReleased,
)
from centralino_proto.events.routing import DialplanChanged
from centralino_proto.tenancy import Tenant
from centralino_proto.web import Problem

from .models import (
    MAX_LINK_MEMBERS,
    DialplanVersion,
    Extension,
    ExtensionCreate,
    ExtensionPublic,
    ExtensionUpdate,
    Forward,
    ForwardCondition,
    Forwarding,
    ForwardingRule,
    ForwardKind,
    IvrMenu,
    IvrMenuCreate,
    IvrMenuPublic,
    LinkGroup,
    LinkGroupPublic,
    LinkMember,
    LinkMemberPublic,
    Number,
    NumberCreate,
    NumberPublic,
    NumberSource,
    NumberUpdate,
    Permissions,
    Schedule,
    ScheduleCreate,
    SchedulePublic,
    Target,
    TargetKind,
)
from .numbering import NumberingError, classify

log = logging.getLogger("centralino.routing.store")

# Forwarding and DID targets change under one lock, so two concurrent edits
# cannot each pass the loop check and together close a loop.
_TARGETS_LOCK = int.from_bytes(hashlib.sha256(b"centralino-routing-targets").digest()[:7], "big")
_DEFAULT_NO_ANSWER_SECONDS = 20


async def _flush_or_conflict(session: AsyncSession, title: str, detail: str) -> None:
    """Flushes; a unique constraint lost to a concurrent request is a 409, not a 500."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Problem(409, title, detail) from exc


async def touch(session: AsyncSession, *, outbox: Outbox, tenant_ids: Iterable[uuid.UUID]) -> None:
    """Bumps the plan version of these tenants and signals every replica to rebuild them."""
    ids = sorted(set(tenant_ids))
    if not ids:
        return
    for tenant_id in ids:
        statement = pg_insert(DialplanVersion).values(
            tenant_id=tenant_id, version=text("nextval('dialplan_version_seq')")
        )
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=["tenant_id"],
                set_={"version": statement.excluded.version, "updated_at": func.now()},
            )
        )
    await outbox.add(
        session, DialplanChanged(tenant_ids=ids), tenant_id=ids[0] if len(ids) == 1 else None
    )


# -- extensions -------------------------------------------------------------


def extension_public(extension: Extension) -> ExtensionPublic:
    return ExtensionPublic(
        id=extension.id,
        tenant_id=extension.tenant_id,
        number=extension.number,
        name=extension.name,
        kind=ExtensionKind(extension.kind),
        enabled=extension.enabled,
        permissions=extension.permissions(),
    )


async def list_extensions(session: AsyncSession, *, tenant: Tenant) -> Sequence[Extension]:
    """The tenant's extensions by number."""
    result = await session.execute(
        select(Extension).where(Extension.tenant_id == tenant.tenant_id).order_by(Extension.number)
    )
    return result.scalars().all()


async def get_extension(session: AsyncSession, *, tenant: Tenant, number: str) -> Extension:
    """One extension of the tenant; 404 if it has none with that number."""
    extension = await find_extension(session, tenant.tenant_id, number)
    if extension is None:
        raise Problem(404, "Extension not found", f"{tenant.slug} has no extension {number}")
    return extension


async def find_extension(
    session: AsyncSession, tenant_id: uuid.UUID, number: str
) -> Extension | None:
    result = await session.execute(
        select(Extension).where(Extension.tenant_id == tenant_id, Extension.number == number)
    )
    return result.scalar_one_or_none()


async def create_extension(
    session: AsyncSession,
    *,
    outbox: Outbox,
    tenant: Tenant,
    data: ExtensionCreate,
    extension_id: uuid.UUID | None = None,
) -> Extension:
    """Adds an extension (user, station or operator) to the tenant."""
    if await find_extension(session, tenant.tenant_id, data.number) is not None:
        raise Problem(409, "Extension exists", f"extension {data.number} is taken in {tenant.slug}")
    extension = Extension(
        id=extension_id or uuid.uuid4(),
        tenant_id=tenant.tenant_id,
        number=data.number,
        name=data.name,
        kind=data.kind,
        enabled=data.enabled,
    )
    extension.set_permissions(data.permissions)
    session.add(extension)
    await _flush_or_conflict(
        session, "Extension exists", f"extension {data.number} is taken in {tenant.slug}"
    )
    await _refuse_link_overlap(session, tenant.tenant_id)
    await _publish_extension(session, outbox, extension, ExtensionCreated)
    return extension


async def update_extension(
    session: AsyncSession, *, outbox: Outbox, tenant: Tenant, number: str, data: ExtensionUpdate
) -> Extension:
    """Renames, re-kinds, enables or disables an extension."""
    extension = await get_extension(session, tenant=tenant, number=number)
    for name, value in data.model_dump(exclude_unset=True).items():
        if value is None:
            raise Problem(422, "Invalid update", f"{name} cannot be null")
        setattr(extension, name, str(value) if name == "kind" else value)
    await session.flush()
    await _publish_extension(session, outbox, extension)
    return extension


async def _publish_extension(
    session: AsyncSession,
    outbox: Outbox,
    extension: Extension,
    event: type[ExtensionCreated] | type[ExtensionUpdated] = ExtensionUpdated,
) -> None:
    await outbox.add(
        session,
        event(
            tenant_id=extension.tenant_id,
            extension_id=extension.id,
            number=extension.number,
            name=extension.name,
            kind=ExtensionKind(extension.kind),
            enabled=extension.enabled,
        ),
        tenant_id=extension.tenant_id,
    )
    await touch(session, outbox=outbox, tenant_ids=[extension.tenant_id])


async def set_permissions(
    session: AsyncSession, *, outbox: Outbox, tenant: Tenant, number: str, data: Permissions
) -> Extension:
    """Replaces the call classes an extension may dial."""
    extension = await get_extension(session, tenant=tenant, number=number)
    extension.set_permissions(data)
    await session.flush()
    await _publish_extension(session, outbox, extension)
    return extension


async def delete_extension(
    session: AsyncSession, *, outbox: Outbox, tenant: Tenant, number: str
) -> None:
    """Removes an extension nothing else points at."""
    extension = await get_extension(session, tenant=tenant, number=number)
    users = await _references_to_extension(session, tenant.tenant_id, number)
    if users:
        raise Problem(
            409,
            "Extension in use",
            f"extension {number} is the target of {', '.join(users)}",
            used_by=users,
        )
    await session.delete(extension)
    await outbox.add(
        session,
        ExtensionDeleted(tenant_id=tenant.tenant_id, extension_id=extension.id, number=number),
        tenant_id=tenant.tenant_id,
    )
    await touch(session, outbox=outbox, tenant_ids=[tenant.tenant_id])


async def _references_to_extension(
    session: AsyncSession, tenant_id: uuid.UUID, number: str
) -> list[str]:
    users: list[str] = []
    numbers = await session.execute(select(Number).where(Number.tenant_id == tenant_id))
    for n in numbers.scalars():
        for target in (n.target, n.night_target):
            if target and target.get("extension") == number:
                users.append(f"number {n.e164}")
    forwards = await session.execute(
        select(Extension.number)
        .join(ForwardingRule, ForwardingRule.extension_id == Extension.id)  # type: ignore[arg-type]
        .where(ForwardingRule.tenant_id == tenant_id, ForwardingRule.target_extension == number)
    )
    users += [f"forwarding of {n}" for n in forwards.scalars() if n != number]
    menus = await session.execute(select(IvrMenu).where(IvrMenu.tenant_id == tenant_id))
    for menu in menus.scalars():
        targets = [*menu.options.values(), menu.timeout_target, menu.invalid_target]
        if any(t and t.get("extension") == number for t in targets):
            users.append(f"IVR menu {menu.name}")
    return sorted(set(users))


# -- forwarding -------------------------------------------------------------


async def get_forwarding(session: AsyncSession, *, tenant: Tenant, number: str) -> Forwarding:
    """An extension's forwarding rules."""
    extension = await get_extension(session, tenant=tenant, number=number)
    rules = await session.execute(
        select(ForwardingRule).where(ForwardingRule.extension_id == extension.id)
    )
    forwarding = Forwarding()
    for rule in rules.scalars():
        setattr(
            forwarding,
            rule.condition,
            Forward(
                kind=ForwardKind(rule.kind),
                extension=rule.target_extension,
                e164=rule.target_e164,
                after_seconds=rule.after_seconds,
            ),
        )
    return forwarding


async def set_forwarding(
    session: AsyncSession, *, outbox: Outbox, tenant: Tenant, number: str, data: Forwarding
) -> Forwarding:
    """Replaces an extension's forwarding rules, refusing loops and unpermitted targets."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _TARGETS_LOCK})
    extension = await get_extension(session, tenant=tenant, number=number)
    permissions = extension.permissions().allowed()
    await session.execute(delete(ForwardingRule).where(ForwardingRule.extension_id == extension.id))  # type: ignore[arg-type]
    for condition in ForwardCondition:
        forward: Forward | None = getattr(data, condition.value)
        if forward is None:
            continue
        target_extension = forward.extension
        if forward.kind is ForwardKind.voicemail:
            target_extension = forward.extension or number
        if target_extension is not None:
            if target_extension == number and forward.kind is ForwardKind.extension:
                raise Problem(409, "Forwarding loop", f"extension {number} forwards to itself")
            if await find_extension(session, tenant.tenant_id, target_extension) is None:
                raise Problem(
                    422,
                    "Unknown forwarding target",
                    f"{tenant.slug} has no extension {target_extension}",
                )
        if forward.kind is ForwardKind.external:
            assert forward.e164 is not None
            await _refuse_unpermitted(session, number, forward.e164, permissions, extension.enabled)
        after = forward.after_seconds
        if condition is ForwardCondition.no_answer and after is None:
            after = _DEFAULT_NO_ANSWER_SECONDS
        session.add(
            ForwardingRule(
                tenant_id=tenant.tenant_id,
                extension_id=extension.id,
                condition=condition.value,
                kind=forward.kind.value,
                target_extension=target_extension
                if forward.kind is not ForwardKind.external
                else None,
                target_e164=forward.e164 if forward.kind is ForwardKind.external else None,
                after_seconds=after if condition is ForwardCondition.no_answer else None,
            )
        )
    await session.flush()
    await _refuse_loop(session, ("ext", tenant.tenant_id, number))
    await touch(session, outbox=outbox, tenant_ids=[tenant.tenant_id])
    return await get_forwarding(session, tenant=tenant, number=number)


async def _refuse_unpermitted(
    session: AsyncSession, number: str, e164: str, allowed: frozenset[Any], enabled: bool
) -> None:
    try:
        classified = classify(e164)
    except NumberingError as exc:
        raise Problem(422, "Invalid forwarding target", exc.reason) from exc
    if await _number_row(session, classified.e164) is not None:
        return  # on-net: free, and the loop check follows it
    if not enabled or classified.call_class not in allowed:
        raise Problem(
            403,
            "Forwarding not permitted",
            f"extension {number} may not call {classified.call_class.value} numbers such as {e164}",
            call_class=classified.call_class.value,
        )


Node = tuple[Any, ...]


async def _successors(session: AsyncSession, node: Node) -> list[Node]:
    """Where a call at this node can be sent on without anyone answering."""
    if node[0] == "ext":
        _, tenant_id, number = node
        rows = await session.execute(
            select(ForwardingRule.kind, ForwardingRule.target_extension, ForwardingRule.target_e164)
            .join(Extension, Extension.id == ForwardingRule.extension_id)  # type: ignore[arg-type]
            .where(Extension.tenant_id == tenant_id, Extension.number == number)
        )
        out: list[Node] = []
        for kind, target_extension, target_e164 in rows:
            if kind == ForwardKind.extension and target_extension:
                out.append(("ext", tenant_id, target_extension))
            elif kind == ForwardKind.external and target_e164:
                if await _number_row(session, target_e164) is not None:
                    out.append(("did", target_e164))
        return out
    did = await _number_row(session, node[1])
    if did is None:
        return []
    out = []
    for raw in (did.target, did.night_target):
        if not raw:
            continue
        target = Target.model_validate(raw)
        if target.kind is TargetKind.extension and target.extension:
            out.append(("ext", did.tenant_id, target.extension))
        elif target.kind is TargetKind.operator:
            operator = await _operator(session, did.tenant_id)
            if operator:
                out.append(("ext", did.tenant_id, operator))
        elif target.kind is TargetKind.external and target.e164:
            if await _number_row(session, target.e164) is not None:
                out.append(("did", target.e164))
    return out


async def _refuse_loop(session: AsyncSession, start: Node) -> None:
    """409 when forwards and DID targets lead from `start` back to it (also via on-net hops)."""
    stack: list[tuple[Node, list[Node]]] = [(start, [start])]
    seen: set[Node] = set()
    while stack:
        node, path = stack.pop()
        for following in await _successors(session, node):
            if following == start:
                route = " -> ".join(await _labels(session, [*path, following]))
                raise Problem(409, "Forwarding loop", f"calls would loop: {route}", loop=route)
            if following not in seen and len(seen) < 1000:
                seen.add(following)
                stack.append((following, [*path, following]))


async def _labels(session: AsyncSession, nodes: list[Node]) -> list[str]:
    slugs: dict[uuid.UUID, str] = {}
    labels = []
    for node in nodes:
        if node[0] == "did":
            labels.append(node[1])
            continue
        tenant_id = node[1]
        if tenant_id not in slugs:
            row = await session.execute(
                text("SELECT slug FROM tenant_directory WHERE tenant_id = :t"), {"t": tenant_id}
            )
            slugs[tenant_id] = row.scalar_one_or_none() or str(tenant_id)
        labels.append(f"{slugs[tenant_id]} {node[2]}")
    return labels


async def _operator(session: AsyncSession, tenant_id: uuid.UUID) -> str | None:
    result = await session.execute(
        select(Extension.number)
        .where(Extension.tenant_id == tenant_id, Extension.kind == ExtensionKind.operator)
        .order_by(Extension.number)
        .limit(1)
    )
    return result.scalar_one_or_none()


# -- numbers ----------------------------------------------------------------


def number_public(number: Number) -> NumberPublic:
    return NumberPublic(
        id=number.id,
        tenant_id=number.tenant_id,
        e164=number.e164,
        target=Target.model_validate(number.target),
        night_target=Target.model_validate(number.night_target) if number.night_target else None,
        schedule_id=number.schedule_id,
        source=NumberSource(number.source),
    )


async def _number_row(session: AsyncSession, e164: str) -> Number | None:
    result = await session.execute(select(Number).where(Number.e164 == e164))
    return result.scalar_one_or_none()


async def list_numbers(session: AsyncSession, *, tenant: Tenant) -> Sequence[Number]:
    """The tenant's numbers."""
    result = await session.execute(
        select(Number).where(Number.tenant_id == tenant.tenant_id).order_by(Number.e164)
    )
    return result.scalars().all()


async def get_number(session: AsyncSession, *, tenant: Tenant, e164: str) -> Number:
    """One number of the tenant; 404 otherwise."""
    number = await _number_row(session, e164)
    if number is None or number.tenant_id != tenant.tenant_id:
        raise Problem(404, "Number not found", f"{tenant.slug} has no number {e164}")
    return number


async def _check_target(
    session: AsyncSession, tenant: Tenant, target: Target | None, what: str
) -> None:
    if target is None:
        return
    if target.kind in (TargetKind.extension, TargetKind.voicemail):
        assert target.extension is not None
        if await find_extension(session, tenant.tenant_id, target.extension) is None:
            raise Problem(
                422, "Unknown target", f"{what}: {tenant.slug} has no extension {target.extension}"
            )
    elif target.kind is TargetKind.operator:
        if await _operator(session, tenant.tenant_id) is None:
            raise Problem(422, "Unknown target", f"{what}: {tenant.slug} has no operator extension")
    elif target.kind is TargetKind.ivr:
        menu = await session.get(IvrMenu, target.menu_id)
        if menu is None or menu.tenant_id != tenant.tenant_id:
            raise Problem(
                422, "Unknown target", f"{what}: {tenant.slug} has no IVR menu {target.menu_id}"
            )
    else:
        assert target.e164 is not None
        try:
            classify(target.e164)
        except NumberingError as exc:
            raise Problem(422, "Invalid target", f"{what}: {exc.reason}") from exc


async def _check_schedule(
    session: AsyncSession, tenant: Tenant, schedule_id: uuid.UUID | None
) -> None:
    if schedule_id is None:
        return
    schedule = await session.get(Schedule, schedule_id)
    if schedule is None or schedule.tenant_id != tenant.tenant_id:
        raise Problem(422, "Unknown schedule", f"{tenant.slug} has no schedule {schedule_id}")


def _consecutive(first: str, count: int) -> list[str]:
    digits = first[1:]
    last = int(digits) + count - 1
    if len(str(last)) > len(digits):
        raise Problem(
            422, "Invalid number block", f"{count} numbers from {first} overflow the range"
        )
    return [f"+{int(digits) + i:0{len(digits)}d}" for i in range(count)]


async def create_numbers(
    session: AsyncSession, *, outbox: Outbox, tenant: Tenant, data: NumberCreate
) -> list[Number]:
    """Assigns one number, or a block of consecutive numbers, with their targets."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _TARGETS_LOCK})
    await _check_target(session, tenant, data.target, "target")
    await _check_target(session, tenant, data.night_target, "night_target")
    await _check_schedule(session, tenant, data.schedule_id)
    e164s = _consecutive(data.e164, data.count)
    taken = await session.execute(select(Number.e164).where(Number.e164.in_(e164s)))  # type: ignore[attr-defined]
    clashes = sorted(taken.scalars())
    if clashes:
        raise Problem(
            409, "Number assigned", f"already assigned: {', '.join(clashes)}", numbers=clashes
        )
    numbers = [
        Number(
            tenant_id=tenant.tenant_id,
            e164=e164,
            target=data.target.model_dump(mode="json", exclude_none=True),
            night_target=data.night_target.model_dump(mode="json", exclude_none=True)
            if data.night_target
            else None,
            schedule_id=data.schedule_id,
        )
        for e164 in e164s
    ]
    session.add_all(numbers)
    await _flush_or_conflict(
        session, "Number assigned", "a number of the block is already assigned"
    )
    for number in numbers:
        await _refuse_loop(session, ("did", number.e164))
        await _publish_assigned(session, outbox, number)
    await touch(session, outbox=outbox, tenant_ids=[tenant.tenant_id])
    return numbers


async def _publish_assigned(session: AsyncSession, outbox: Outbox, number: Number) -> None:
    target = Target.model_validate(number.target)
    await outbox.add(
        session,
        NumberAssigned(
            tenant_id=number.tenant_id,
            number_id=number.id,
            e164=number.e164,
            target_kind=target.kind.value,
            target=target.extension
            or target.e164
            or (str(target.menu_id) if target.menu_id else None),
        ),
        tenant_id=number.tenant_id,
    )


async def update_number(
    session: AsyncSession, *, outbox: Outbox, tenant: Tenant, e164: str, data: NumberUpdate
) -> Number:
    """Changes where a number leads (by day, by night, on which schedule)."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _TARGETS_LOCK})
    number = await get_number(session, tenant=tenant, e164=e164)
    changes = data.model_dump(exclude_unset=True)
    if "target" in changes:
        if data.target is None:
            raise Problem(422, "Invalid update", "a number always has a target")
        await _check_target(session, tenant, data.target, "target")
        number.target = data.target.model_dump(mode="json", exclude_none=True)
    if "night_target" in changes:
        await _check_target(session, tenant, data.night_target, "night_target")
        number.night_target = (
            data.night_target.model_dump(mode="json", exclude_none=True)
            if data.night_target
            else None
        )
    if "schedule_id" in changes:
        await _check_schedule(session, tenant, data.schedule_id)
        number.schedule_id = data.schedule_id
    await session.flush()
    await _refuse_loop(session, ("did", number.e164))
    await touch(session, outbox=outbox, tenant_ids=[tenant.tenant_id])
    return number


async def release_number(
    session: AsyncSession, *, outbox: Outbox, tenant: Tenant, e164: str
) -> None:
    """Gives a number up (rating stops charging it)."""
    number = await get_number(session, tenant=tenant, e164=e164)
    await _release(session, outbox, number)


async def _release(session: AsyncSession, outbox: Outbox, number: Number) -> None:
    await session.delete(number)
    await outbox.add(
        session,
        NumberReleased(tenant_id=number.tenant_id, number_id=number.id, e164=number.e164),
        tenant_id=number.tenant_id,
    )
    await touch(session, outbox=outbox, tenant_ids=[number.tenant_id])


async def assign_ported(
    session: AsyncSession, *, outbox: Outbox, tenant_id: uuid.UUID, numbers: Iterable[str]
) -> list[Number]:
    """Makes ported-in numbers DIDs of the tenant, ringing its operator (port.completed)."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _TARGETS_LOCK})
    assigned: list[Number] = []
    for raw in numbers:
        try:
            e164 = classify(raw).e164
        except NumberingError as exc:
            # Retrying cannot fix the donor's data; keep the rest of the port.
            log.error("ported number %r for tenant %s skipped: %s", raw, tenant_id, exc.reason)
            continue
        existing = await _number_row(session, e164)
        if existing is not None and existing.tenant_id == tenant_id:
            continue
        if existing is not None:
            # The port is authoritative: the number left its previous holder.
            await _release(session, outbox, existing)
            await session.flush()
        # The operator answers a ported number until the tenant points it elsewhere.
        target = Target(kind=TargetKind.operator)
        number = Number(
            tenant_id=tenant_id,
            e164=e164,
            target=target.model_dump(mode="json", exclude_none=True),
            source=NumberSource.ported,
        )
        session.add(number)
        await session.flush()
        await _publish_assigned(session, outbox, number)
        assigned.append(number)
    if assigned:
        await touch(session, outbox=outbox, tenant_ids=[tenant_id])
    return assigned


# -- schedules --------------------------------------------------------------


def schedule_public(schedule: Schedule) -> SchedulePublic:
    return SchedulePublic(
        id=schedule.id,
        name=schedule.name,
        timezone=schedule.timezone,
        closed_on_holidays=schedule.closed_on_holidays,
        opening_hours=schedule.opening_hours,  # type: ignore[arg-type]
        closed_dates=schedule.closed_dates,  # type: ignore[arg-type]
    )


async def list_schedules(session: AsyncSession, *, tenant: Tenant) -> Sequence[Schedule]:
    """The tenant's day/night schedules."""
    result = await session.execute(
        select(Schedule).where(Schedule.tenant_id == tenant.tenant_id).order_by(Schedule.name)
    )
    return result.scalars().all()


async def get_schedule(
    session: AsyncSession, *, tenant: Tenant, schedule_id: uuid.UUID
) -> Schedule:
    """One schedule of the tenant; 404 otherwise."""
    schedule = await session.get(Schedule, schedule_id)
    if schedule is None or schedule.tenant_id != tenant.tenant_id:
        raise Problem(404, "Schedule not found", f"{tenant.slug} has no schedule {schedule_id}")
    return schedule


def _schedule_fields(data: ScheduleCreate) -> dict[str, Any]:
    return {
        "name": data.name,
        "timezone": data.timezone,
        "closed_on_holidays": data.closed_on_holidays,
        "opening_hours": [h.model_dump(mode="json") for h in data.opening_hours],
        "closed_dates": [d.isoformat() for d in data.closed_dates],
    }


async def save_schedule(
    session: AsyncSession,
    *,
    outbox: Outbox,
    tenant: Tenant,
    data: ScheduleCreate,
    schedule_id: uuid.UUID | None = None,
) -> Schedule:
    """Creates a schedule, or replaces one."""
    clash = await session.execute(
        select(Schedule.id).where(
            Schedule.tenant_id == tenant.tenant_id, Schedule.name == data.name
        )
    )
    other = clash.scalar_one_or_none()
    if other is not None and other != schedule_id:
        raise Problem(409, "Schedule exists", f"{tenant.slug} already has a schedule {data.name!r}")
    if schedule_id is None:
        schedule = Schedule(tenant_id=tenant.tenant_id, **_schedule_fields(data))
        session.add(schedule)
    else:
        schedule = await get_schedule(session, tenant=tenant, schedule_id=schedule_id)
        for name, value in _schedule_fields(data).items():
            setattr(schedule, name, value)
    await _flush_or_conflict(
        session, "Schedule exists", f"{tenant.slug} already has a schedule {data.name!r}"
    )
    await touch(session, outbox=outbox, tenant_ids=[tenant.tenant_id])
    return schedule


async def delete_schedule(
    session: AsyncSession, *, outbox: Outbox, tenant: Tenant, schedule_id: uuid.UUID
) -> None:
    """Removes a schedule no number follows."""
    schedule = await get_schedule(session, tenant=tenant, schedule_id=schedule_id)
    used = await session.execute(select(Number.e164).where(Number.schedule_id == schedule_id))
    numbers = sorted(used.scalars())
    if numbers:
        raise Problem(
            409, "Schedule in use", f"numbers follow it: {', '.join(numbers)}", numbers=numbers
        )
    await session.delete(schedule)
    await touch(session, outbox=outbox, tenant_ids=[tenant.tenant_id])


# -- IVR menus --------------------------------------------------------------


def menu_public(menu: IvrMenu) -> IvrMenuPublic:
    return IvrMenuPublic(
        id=menu.id,
        name=menu.name,
        prompt=menu.prompt,
        timeout_seconds=menu.timeout_seconds,
        options={k: Target.model_validate(v) for k, v in menu.options.items()},
        direct_dial=menu.direct_dial,
        direct_dial_allow=menu.direct_dial_allow,
        direct_dial_deny=menu.direct_dial_deny,
        timeout_target=Target.model_validate(menu.timeout_target) if menu.timeout_target else None,
        invalid_target=Target.model_validate(menu.invalid_target) if menu.invalid_target else None,
    )


async def list_menus(session: AsyncSession, *, tenant: Tenant) -> Sequence[IvrMenu]:
    """The tenant's IVR menus."""
    result = await session.execute(
        select(IvrMenu).where(IvrMenu.tenant_id == tenant.tenant_id).order_by(IvrMenu.name)
    )
    return result.scalars().all()


async def get_menu(session: AsyncSession, *, tenant: Tenant, menu_id: uuid.UUID) -> IvrMenu:
    """One IVR menu of the tenant; 404 otherwise."""
    menu = await session.get(IvrMenu, menu_id)
    if menu is None or menu.tenant_id != tenant.tenant_id:
        raise Problem(404, "IVR menu not found", f"{tenant.slug} has no IVR menu {menu_id}")
    return menu


async def save_menu(
    session: AsyncSession,
    *,
    outbox: Outbox,
    tenant: Tenant,
    data: IvrMenuCreate,
    menu_id: uuid.UUID | None = None,
) -> IvrMenu:
    """Creates an IVR menu, or replaces one."""
    clash = await session.execute(
        select(IvrMenu.id).where(IvrMenu.tenant_id == tenant.tenant_id, IvrMenu.name == data.name)
    )
    other = clash.scalar_one_or_none()
    if other is not None and other != menu_id:
        raise Problem(409, "IVR menu exists", f"{tenant.slug} already has a menu {data.name!r}")
    for key, target in data.options.items():
        if target.kind is TargetKind.ivr and target.menu_id == menu_id and menu_id is not None:
            raise Problem(422, "Invalid option", f"option {key} leads back to this menu")
        await _check_target(session, tenant, target, f"option {key}")
    await _check_target(session, tenant, data.timeout_target, "timeout_target")
    await _check_target(session, tenant, data.invalid_target, "invalid_target")
    fields: dict[str, Any] = {
        "name": data.name,
        "prompt": data.prompt,
        "timeout_seconds": data.timeout_seconds,
        "options": {
            k: t.model_dump(mode="json", exclude_none=True) for k, t in data.options.items()
        },
        "direct_dial": data.direct_dial,
        "direct_dial_allow": data.direct_dial_allow,
        "direct_dial_deny": data.direct_dial_deny,
        "timeout_target": data.timeout_target.model_dump(mode="json", exclude_none=True)
        if data.timeout_target
        else None,
        "invalid_target": data.invalid_target.model_dump(mode="json", exclude_none=True)
        if data.invalid_target
        else None,
    }
    if menu_id is None:
        menu = IvrMenu(tenant_id=tenant.tenant_id, **fields)
        session.add(menu)
    else:
        menu = await get_menu(session, tenant=tenant, menu_id=menu_id)
        for name, value in fields.items():
            setattr(menu, name, value)
    await _flush_or_conflict(
        session, "IVR menu exists", f"{tenant.slug} already has a menu {data.name!r}"
    )
    await touch(session, outbox=outbox, tenant_ids=[tenant.tenant_id])
    return menu


async def delete_menu(
    session: AsyncSession, *, outbox: Outbox, tenant: Tenant, menu_id: uuid.UUID
) -> None:
    """Removes an IVR menu no number or other menu leads to."""
    menu = await get_menu(session, tenant=tenant, menu_id=menu_id)
    users: list[str] = []
    for n in (
        await session.execute(select(Number).where(Number.tenant_id == tenant.tenant_id))
    ).scalars():
        if any(t and t.get("menu_id") == str(menu_id) for t in (n.target, n.night_target)):
            users.append(f"number {n.e164}")
    for other in await list_menus(session, tenant=tenant):
        targets = [*other.options.values(), other.timeout_target, other.invalid_target]
        if other.id != menu_id and any(t and t.get("menu_id") == str(menu_id) for t in targets):
            users.append(f"IVR menu {other.name}")
    if users:
        raise Problem(
            409, "IVR menu in use", f"it is the target of {', '.join(users)}", used_by=users
        )
    await session.delete(menu)
    await touch(session, outbox=outbox, tenant_ids=[tenant.tenant_id])


# -- inter-company link groups ---------------------------------------------


async def _refuse_link_overlap(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    """409 when a member's own extension equals another member's digit + extension."""
    row = (
        await session.execute(
            text(
                """
                SELECT ta.slug AS a_slug, a.number AS a_number, tb.slug AS b_slug, b.number AS b_number
                FROM link_member mt
                JOIN link_member ma ON ma.link_group_id = mt.link_group_id
                JOIN link_member mb ON mb.link_group_id = mt.link_group_id AND mb.tenant_id <> ma.tenant_id
                JOIN extension a ON a.tenant_id = ma.tenant_id
                JOIN extension b ON b.tenant_id = mb.tenant_id AND a.number = mb.digit::text || b.number
                JOIN tenant_directory ta ON ta.tenant_id = ma.tenant_id
                JOIN tenant_directory tb ON tb.tenant_id = mb.tenant_id
                WHERE mt.tenant_id = :t
                LIMIT 1
                """
            ),
            {"t": tenant_id},
        )
    ).first()
    if row is not None:
        raise Problem(
            409,
            "Extension overlaps a link",
            f"{row.a_slug} {row.a_number} is also the link code for {row.b_slug} {row.b_number}",
        )


async def link_group_public(session: AsyncSession, group: LinkGroup) -> LinkGroupPublic:
    rows = await session.execute(
        text(
            "SELECT m.tenant_id, d.slug, m.digit FROM link_member m"
            " JOIN tenant_directory d USING (tenant_id) WHERE m.link_group_id = :g ORDER BY m.digit"
        ),
        {"g": group.id},
    )
    return LinkGroupPublic(
        id=group.id,
        name=group.name,
        members=[LinkMemberPublic(tenant_id=r.tenant_id, slug=r.slug, digit=r.digit) for r in rows],
    )


async def list_link_groups(session: AsyncSession) -> Sequence[LinkGroup]:
    """Every link group."""
    return (await session.execute(select(LinkGroup).order_by(LinkGroup.name))).scalars().all()


async def get_link_group(session: AsyncSession, *, group_id: uuid.UUID) -> LinkGroup:
    """One link group; 404 otherwise."""
    group = await session.get(LinkGroup, group_id)
    if group is None:
        raise Problem(404, "Link group not found", f"no link group {group_id}")
    return group


async def create_link_group(
    session: AsyncSession, *, outbox: Outbox, name: str, group_id: uuid.UUID | None = None
) -> LinkGroup:
    """Creates an empty inter-company link group."""
    taken = await session.execute(select(LinkGroup.id).where(LinkGroup.name == name))
    if taken.scalar_one_or_none() is not None:
        raise Problem(409, "Link group exists", f"a link group is already named {name!r}")
    group = LinkGroup(id=group_id or uuid.uuid4(), name=name)
    session.add(group)
    await _flush_or_conflict(
        session, "Link group exists", f"a link group is already named {name!r}"
    )
    return group


async def add_link_member(
    session: AsyncSession, *, outbox: Outbox, group: LinkGroup, tenant: Tenant, digit: int
) -> None:
    """Adds a tenant to a link group under a digit of its own (rating charges the setup)."""
    # Serialises joins of one group, so two concurrent joins cannot pass the size check.
    await session.execute(select(LinkGroup.id).where(LinkGroup.id == group.id).with_for_update())
    members = (
        (await session.execute(select(LinkMember).where(LinkMember.link_group_id == group.id)))
        .scalars()
        .all()
    )
    if len(members) >= MAX_LINK_MEMBERS:
        raise Problem(
            409, "Link group full", f"{group.name} already links {MAX_LINK_MEMBERS} tenants"
        )
    if any(m.digit == digit for m in members):
        raise Problem(409, "Link digit taken", f"digit {digit} is already used in {group.name}")
    elsewhere = await session.execute(
        select(LinkMember).where(LinkMember.tenant_id == tenant.tenant_id)
    )
    if elsewhere.scalar_one_or_none() is not None:
        raise Problem(409, "Tenant already linked", f"{tenant.slug} is already in a link group")
    session.add(LinkMember(link_group_id=group.id, tenant_id=tenant.tenant_id, digit=digit))
    await _flush_or_conflict(
        session, "Tenant already linked", f"{tenant.slug} joined a link group meanwhile"
    )
    await _refuse_link_overlap(session, tenant.tenant_id)
    await outbox.add(
        session,
        LinkCreated(tenant_id=tenant.tenant_id, link_group_id=group.id, digit=digit),
        tenant_id=tenant.tenant_id,
    )
    await touch(
        session, outbox=outbox, tenant_ids=[tenant.tenant_id, *(m.tenant_id for m in members)]
    )


async def remove_link_member(
    session: AsyncSession, *, outbox: Outbox, group: LinkGroup, tenant_id: uuid.UUID
) -> None:
    """Takes a tenant out of a link group."""
    members = (
        (await session.execute(select(LinkMember).where(LinkMember.link_group_id == group.id)))
        .scalars()
        .all()
    )
    member = next((m for m in members if m.tenant_id == tenant_id), None)
    if member is None:
        raise Problem(404, "Not a member", f"tenant {tenant_id} is not in {group.name}")
    await session.delete(member)
    await touch(session, outbox=outbox, tenant_ids=[m.tenant_id for m in members])


async def delete_link_group(session: AsyncSession, *, outbox: Outbox, group: LinkGroup) -> None:
    """Dissolves a link group."""
    members = (
        (
            await session.execute(
                select(LinkMember.tenant_id).where(LinkMember.link_group_id == group.id)
            )
        )
        .scalars()
        .all()
    )
    await session.delete(group)
    await touch(session, outbox=outbox, tenant_ids=members)
