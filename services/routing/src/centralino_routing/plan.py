"""The compiled dial plans: every tenant's extensions, numbers, menus and links in memory.

The decision reads only these structures (dict look-ups, no I/O). They are built
from the database at start and rebuilt per tenant when a `dialplan.changed`
signal (or the periodic version sweep) says that tenant changed.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import holidays
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from centralino_proto.db import tenant_directory
from centralino_proto.events import CallClass

from .models import PERMISSION_CLASSES, ForwardCondition, Target
from .numbering import NumberingError, classify

log = logging.getLogger("centralino.routing.plan")


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled forwarding rule."""

    kind: str  # extension | external | voicemail
    extension: str | None
    e164: str | None
    after_seconds: int | None
    # The class of an external target, worked out once (None: not an outside number).
    call_class: CallClass | None = None


def _rule(kind: str, extension: str | None, e164: str | None, after: int | None) -> Rule:
    call_class = None
    if e164 is not None:
        try:
            call_class = classify(e164).call_class
        except NumberingError:
            log.warning("forwarding target %s is not routable", e164)
    return Rule(kind, extension, e164, after, call_class)


@dataclass(frozen=True, slots=True)
class Station:
    """A compiled extension: who it is, what it may dial, where it forwards."""

    number: str
    kind: str
    enabled: bool
    allowed: frozenset[CallClass]
    unconditional: Rule | None = None
    busy: Rule | None = None
    no_answer: Rule | None = None
    unavailable: Rule | None = None


@lru_cache(maxsize=64)
def _italian_holidays(subdiv: str | None = None) -> holidays.HolidayBase:
    return holidays.country_holidays("IT", subdiv=subdiv)


@dataclass(frozen=True, slots=True)
class CompiledSchedule:
    """Day/night: open within the weekly hours, closed on holidays and listed dates."""

    zone: ZoneInfo
    # weekday -> ((opens, closes) in minutes since midnight, ...)
    hours: tuple[tuple[tuple[int, int], ...], ...]
    closed_on_holidays: bool
    closed_dates: frozenset[date]

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(self.zone)
        day = local.date()
        if day in self.closed_dates:
            return False
        if self.closed_on_holidays and day in _italian_holidays():
            return False
        minute = local.hour * 60 + local.minute
        return any(opens <= minute < closes for opens, closes in self.hours[local.weekday()])


@dataclass(frozen=True, slots=True)
class Did:
    """A compiled number: its owner and where it leads by day and by night."""

    e164: str
    tenant_id: uuid.UUID
    target: Target
    night_target: Target | None
    schedule: CompiledSchedule | None

    def target_at(self, at: datetime) -> Target:
        if self.night_target is None or self.schedule is None or self.schedule.is_open(at):
            return self.target
        return self.night_target


def _pattern(pattern: str) -> str:
    return "".join({"X": "[0-9]", "N": "[2-9]", "Z": "[1-9]"}.get(c, c) for c in pattern)


@dataclass(frozen=True, slots=True)
class Menu:
    """A compiled IVR menu."""

    menu_id: uuid.UUID
    prompt: str
    timeout_seconds: int
    options: dict[str, Target]
    direct_dial: bool
    allow: re.Pattern[str] | None
    deny: re.Pattern[str] | None
    timeout_target: Target | None
    invalid_target: Target | None

    def may_direct_dial(self, extension: str) -> bool:
        if not self.direct_dial:
            return False
        if self.deny is not None and self.deny.fullmatch(extension):
            return False
        return self.allow is not None and self.allow.fullmatch(extension) is not None


@dataclass(slots=True)
class TenantPlan:
    """One tenant's compiled dial plan."""

    tenant_id: uuid.UUID
    slug: str
    active: bool
    version: int
    stations: dict[str, Station] = field(default_factory=dict)
    menus: dict[uuid.UUID, Menu] = field(default_factory=dict)
    dids: dict[str, Did] = field(default_factory=dict)
    operator: str | None = None
    link_group: uuid.UUID | None = None
    link_digit: str | None = None


class DialPlans:
    """Every tenant's plan plus the global indexes (on-net DIDs, link groups)."""

    def __init__(self) -> None:
        self.tenants: dict[uuid.UUID, TenantPlan] = {}
        self.did_index: dict[str, Did] = {}
        # link group -> digit -> tenant
        self.groups: dict[uuid.UUID, dict[str, uuid.UUID]] = {}
        self.loaded = False

    def install(self, plans: Iterable[TenantPlan], *, known: Iterable[uuid.UUID] = ()) -> int:
        """Swaps in freshly built plans (older versions never replace newer ones)."""
        installed = 0
        seen: set[uuid.UUID] = set()
        for plan in plans:
            seen.add(plan.tenant_id)
            current = self.tenants.get(plan.tenant_id)
            if current is not None and current.version > plan.version:
                continue
            if current is not None:
                self._unindex(current)
            self.tenants[plan.tenant_id] = plan
            self._index(plan)
            installed += 1
        # Asked for but gone from the database: forget it.
        for tenant_id in set(known) - seen:
            gone = self.tenants.pop(tenant_id, None)
            if gone is not None:
                self._unindex(gone)
        return installed

    def _unindex(self, plan: TenantPlan) -> None:
        for e164 in plan.dids:
            if (did := self.did_index.get(e164)) is not None and did.tenant_id == plan.tenant_id:
                del self.did_index[e164]
        if plan.link_group is not None and plan.link_digit is not None:
            members = self.groups.get(plan.link_group, {})
            if members.get(plan.link_digit) == plan.tenant_id:
                del members[plan.link_digit]
            if not members:
                self.groups.pop(plan.link_group, None)

    def _index(self, plan: TenantPlan) -> None:
        self.did_index.update(plan.dids)
        if plan.link_group is not None and plan.link_digit is not None:
            self.groups.setdefault(plan.link_group, {})[plan.link_digit] = plan.tenant_id

    def versions(self) -> dict[uuid.UUID, int]:
        return {t: p.version for t, p in self.tenants.items()}


# -- building plans from the database ---------------------------------------

_TENANT_FILTER = " WHERE tenant_id IN :ids"


def _target(raw: dict[str, Any] | None) -> Target | None:
    return Target.model_validate(raw) if raw else None


def _schedule(row: Any, tenant_zone: str) -> CompiledSchedule:
    hours: list[list[tuple[int, int]]] = [[] for _ in range(7)]
    for span in row.opening_hours:
        opens = _minutes(span["opens"])
        closes = _minutes(span["closes"])
        for day in span["days"]:
            hours[day].append((opens, closes))
    return CompiledSchedule(
        zone=ZoneInfo(row.timezone or tenant_zone),
        hours=tuple(tuple(h) for h in hours),
        closed_on_holidays=row.closed_on_holidays,
        closed_dates=frozenset(date.fromisoformat(d) for d in row.closed_dates),
    )


def _minutes(clock: str) -> int:
    hour, minute = clock.split(":")[:2]
    return int(hour) * 60 + int(minute)


def _alternation(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{_pattern(p)})" for p in patterns))


async def build_plans(
    session: AsyncSession, tenant_ids: Iterable[uuid.UUID] | None = None
) -> list[TenantPlan]:
    """Builds the plans of some tenants (or all) from one consistent snapshot."""
    ids = None if tenant_ids is None else sorted(set(tenant_ids))
    if ids == []:
        return []
    # One snapshot for every query, so a plan never mixes two versions.
    await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))

    async def rows(sql: str) -> list[Any]:
        statement = text(sql + (_TENANT_FILTER if ids is not None else ""))
        if ids is not None:
            statement = statement.bindparams(bindparam("ids", expanding=True))
            return list((await session.execute(statement, {"ids": ids})).all())
        return list((await session.execute(statement)).all())

    tenants = await rows(f"SELECT tenant_id, slug, active, timezone FROM {tenant_directory.name}")
    versions = {
        r.tenant_id: r.version
        for r in await rows("SELECT tenant_id, version FROM dialplan_version")
    }
    allow_cols = ", ".join(f"allow_{c.value}" for c in PERMISSION_CLASSES)
    extensions = await rows(
        f"SELECT id, tenant_id, number, kind, enabled, {allow_cols} FROM extension"
    )
    rules: dict[uuid.UUID, dict[str, Rule]] = defaultdict(dict)
    for r in await rows(
        "SELECT extension_id, condition, kind, target_extension, target_e164, after_seconds"
        " FROM forwarding_rule"
    ):
        rules[r.extension_id][r.condition] = _rule(
            r.kind, r.target_extension, r.target_e164, r.after_seconds
        )
    schedule_rows = await rows(
        "SELECT id, tenant_id, timezone, closed_on_holidays, opening_hours, closed_dates FROM schedule"
    )
    menus = await rows(
        "SELECT id, tenant_id, prompt, timeout_seconds, options, direct_dial, direct_dial_allow,"
        " direct_dial_deny, timeout_target, invalid_target FROM ivr_menu"
    )
    numbers = await rows("SELECT tenant_id, e164, target, night_target, schedule_id FROM number")
    links = await rows("SELECT tenant_id, link_group_id, digit FROM link_member")

    plans: dict[uuid.UUID, TenantPlan] = {}
    zones: dict[uuid.UUID, str] = {}
    for t in tenants:
        plans[t.tenant_id] = TenantPlan(
            tenant_id=t.tenant_id,
            slug=t.slug,
            active=t.active,
            version=versions.get(t.tenant_id, 0),
        )
        zones[t.tenant_id] = t.timezone
    # The classes tuple is shared: most stations have one of a few permission sets.
    allowed_sets: dict[tuple[bool, ...], frozenset[CallClass]] = {}
    for ext_id, tenant_id, number, kind, enabled, *flag_list in extensions:
        plan = plans.get(tenant_id)
        if plan is None:
            continue
        flags = tuple(flag_list)
        allowed = allowed_sets.get(flags)
        if allowed is None:
            allowed = frozenset(c for c, on in zip(PERMISSION_CLASSES, flags, strict=True) if on)
            allowed_sets[flags] = allowed
        forwards = rules.get(ext_id)
        plan.stations[number] = (
            Station(
                number,
                kind,
                enabled,
                allowed,
                forwards.get(ForwardCondition.unconditional),
                forwards.get(ForwardCondition.busy),
                forwards.get(ForwardCondition.no_answer),
                forwards.get(ForwardCondition.unavailable),
            )
            if forwards
            else Station(number, kind, enabled, allowed)
        )
        if kind == "operator" and (plan.operator is None or number < plan.operator):
            plan.operator = number
    schedules = {
        s.id: _schedule(s, zones.get(s.tenant_id, "Europe/Rome"))
        for s in schedule_rows
        if s.tenant_id in plans
    }
    for m in menus:
        if (plan := plans.get(m.tenant_id)) is None:
            continue
        plan.menus[m.id] = Menu(
            menu_id=m.id,
            prompt=m.prompt,
            timeout_seconds=m.timeout_seconds,
            options={k: Target.model_validate(v) for k, v in m.options.items()},
            direct_dial=m.direct_dial,
            allow=_alternation(m.direct_dial_allow),
            deny=_alternation(m.direct_dial_deny),
            timeout_target=_target(m.timeout_target),
            invalid_target=_target(m.invalid_target),
        )
    for n in numbers:
        if (plan := plans.get(n.tenant_id)) is None:
            continue
        target = Target.model_validate(n.target)
        plan.dids[n.e164] = Did(
            e164=n.e164,
            tenant_id=n.tenant_id,
            target=target,
            night_target=_target(n.night_target),
            schedule=schedules.get(n.schedule_id) if n.schedule_id else None,
        )
    for link in links:
        if (plan := plans.get(link.tenant_id)) is not None:
            plan.link_group = link.link_group_id
            plan.link_digit = str(link.digit)
    return list(plans.values())


async def stored_versions(session: AsyncSession) -> dict[uuid.UUID, int]:
    """Every tenant's plan version as the database has it."""
    rows = await session.execute(
        text(
            f"SELECT d.tenant_id, coalesce(v.version, 0) AS version"
            f" FROM {tenant_directory.name} d LEFT JOIN dialplan_version v USING (tenant_id)"
        )
    )
    return {r.tenant_id: r.version for r in rows}
