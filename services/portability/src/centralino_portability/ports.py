"""Port requests: validation under the Italian rules, the state machine, the timeline."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from centralino_proto.auth import Claims, Role
from centralino_proto.bus import Outbox
from centralino_proto.db import tenant_directory
from centralino_proto.events import PortCompleted, PortRequested, PortStateChanged
from centralino_proto.web import Problem

from . import calendar, migration_code
from .config import Settings
from .identity import tax_code_problem, vat_number_problem
from .models import (
    Customer,
    LineType,
    NumberIn,
    NumberKind,
    PortNumber,
    PortNumberPublic,
    PortRequest,
    PortRequestBase,
    PortRequestPublic,
    PortState,
    RejectReason,
    TimelineEntry,
    TimelineKind,
)
from .numbers import NumberProblem, parse, parse_root
from .tenant_numbers import number_in_district

Clock = Callable[[], datetime]

S = PortState
# The procedure. `scheduled -> scheduled` is the donor moving the date.
TRANSITIONS: dict[PortState, frozenset[PortState]] = {
    S.draft: frozenset({S.submitted, S.cancelled}),
    S.submitted: frozenset({S.taken_in_charge, S.rejected, S.cancelled}),
    S.taken_in_charge: frozenset({S.unlocked, S.rejected, S.cancelled}),
    S.unlocked: frozenset({S.scheduled, S.rejected, S.cancelled}),
    S.scheduled: frozenset({S.scheduled, S.completed, S.rejected, S.cancelled}),
    S.completed: frozenset({S.closed}),
    S.rejected: frozenset({S.submitted, S.cancelled}),
    S.closed: frozenset(),
    S.cancelled: frozenset(),
}
# A number stays taken by its request until the port ends one way or the other.
FINISHED = frozenset({S.completed, S.closed, S.cancelled})
EDITABLE = frozenset({S.draft, S.rejected})
MAX_SCHEDULE_DAYS = 366
# The steps that announce an expected completion date.
ANNOUNCING = frozenset({S.submitted, S.scheduled})
# The operator's back office (or a service acting for it) talks to the donor.
BACK_OFFICE = frozenset({Role.operator, Role.service})
# Who may read private timeline entries and write private comments.
STAFF = frozenset({Role.operator, Role.service, Role.reseller})


def actor_of(claims: Claims) -> str:
    """How the timeline names whoever acted."""
    return f"{claims.role}:{claims.sub}"[:200]


def local_date(moment: datetime, settings: Settings) -> date:
    """The business date of an instant, in the calendar's zone."""
    return moment.astimezone(ZoneInfo(settings.calendar_timezone)).date()


def may_write(claims: Claims) -> bool:
    """Tenant users read and comment; changing a request is for its admins and up."""
    return claims.role is not Role.tenant_user


# -- validation ---------------------------------------------------------------


@dataclass
class CheckedRequest:
    """A request body that passed every rule, ready to store."""

    numbers: list[PortNumber]
    warnings: list[str]
    tax_code: str | None
    vat_number: str | None
    temporary_number: str | None


def _invalid(detail: str, **extensions: object) -> Problem:
    return Problem(422, "Invalid port request", detail, **extensions)


def _check_customer(customer: Customer) -> tuple[str | None, str | None]:
    if not customer.tax_code and not customer.vat_number:
        raise _invalid(
            "the customer needs a codice fiscale (tax_code) or a partita IVA (vat_number)"
        )
    tax_code = vat = None
    if customer.tax_code:
        tax_code, problem = tax_code_problem(customer.tax_code)
        if problem:
            raise _invalid(problem, field="customer.tax_code")
    if customer.vat_number:
        vat, problem = vat_number_problem(customer.vat_number)
        if problem:
            raise _invalid(problem, field="customer.vat_number")
    return tax_code, vat


def _check_code(entry: NumberIn, label: str, settings: Settings) -> tuple[str, list[str]]:
    result = migration_code.validate(
        entry.migration_code,
        cos_values=settings.migration_cos_values,
        strict_check=settings.migration_check_strict,
    )
    if not result.valid:
        raise _invalid(
            f"the migration code of {label} is not valid: {'; '.join(result.errors)}",
            field="numbers.migration_code",
            errors=result.errors,
        )
    return result.code, [f"{label}: {w}" for w in result.warnings]


def _expand(entry: NumberIn, settings: Settings) -> list[str]:
    """The E.164 numbers an entry stands for (a GNR range is root + each extension)."""
    try:
        if entry.kind is not NumberKind.gnr:
            if entry.extensions is not None:
                raise _invalid("only a GNR entry has extensions")
            return [parse(entry.number).e164]
        if entry.extensions is None:
            raise _invalid(f"the GNR range on {entry.number} needs extensions (first, last)")
        first, last = entry.extensions.first, entry.extensions.last
        if len(first) != len(last) or int(first) > int(last):
            raise _invalid(f"extensions {first}-{last} are not a range of equal-length numbers")
        count = int(last) - int(first) + 1
        if count > settings.gnr_max_numbers:
            raise _invalid(f"the GNR range has {count} numbers, at most {settings.gnr_max_numbers}")
        root = parse_root(entry.number)
        return [parse(f"{root}{n:0{len(first)}d}").e164 for n in range(int(first), int(last) + 1)]
    except NumberProblem as exc:
        raise _invalid(str(exc), field="numbers.number") from exc


def _check_line_type(line_type: LineType, entries: Sequence[NumberIn]) -> None:
    kinds = {e.kind for e in entries}
    if line_type is LineType.isdn:
        if NumberKind.single in kinds:
            raise _invalid("on an ISDN line the numbers are isdn_primary, isdn_additional or gnr")
        if sum(e.kind is NumberKind.isdn_primary for e in entries) > 1:
            raise _invalid("an ISDN request carries one primary number")
    elif kinds != {NumberKind.single}:
        raise _invalid(
            f"an {line_type} line ports single numbers only; ISDN kinds need line_type isdn"
        )


async def check_request(
    *,
    session: AsyncSession,
    tenant_id: uuid.UUID,
    data: PortRequestBase,
    settings: Settings,
    request_id: uuid.UUID,
) -> CheckedRequest:
    """Applies every rule a donor applies, before the donor sees the request."""
    tax_code, vat = _check_customer(data.customer)
    _check_line_type(data.line_type, data.numbers)

    temporary = temporary_area = None
    if data.temporary_number:
        try:
            tmp = parse(data.temporary_number)
        except NumberProblem as exc:
            raise _invalid(f"temporary_number: {exc}", field="temporary_number") from exc
        temporary, temporary_area = tmp.e164, tmp.area_code

    rows: list[PortNumber] = []
    warnings: list[str] = []
    primaries = {parse_or_none(e.number) for e in data.numbers if e.kind is NumberKind.isdn_primary}
    for entry in data.numbers:
        e164s = _expand(entry, settings)
        label = e164s[0] if len(e164s) == 1 else f"{e164s[0]}..{e164s[-1]}"
        code, code_warnings = _check_code(entry, label, settings)
        warnings.extend(code_warnings)
        primary = None
        if entry.kind is NumberKind.isdn_additional:
            primary = parse_or_none(entry.primary) if entry.primary else None
            if primary is None:
                raise _invalid(f"the ISDN additional number {label} must name its primary")
            if primary not in primaries and not await _ported_primary(session, tenant_id, primary):
                raise _invalid(
                    f"the ISDN additional number {label} cannot be ported without its primary "
                    f"{primary}: port the primary in the same request (or first)",
                    rule="isdn_primary",
                )
        elif entry.primary:
            raise _invalid("only an isdn_additional number names a primary")
        for e164 in e164s:
            area = parse(e164).area_code
            if area is not None:
                if temporary is None:
                    # The tenant's own number in that district, if routing gave it one.
                    temporary = await number_in_district(
                        session=session, tenant_id=tenant_id, area_code=area
                    )
                    temporary_area = area if temporary else None
                if temporary is None:
                    raise _invalid(
                        f"{e164} is geographic: temporary_number (the tenant's number in the "
                        "same district) is needed, a geographic number moves only within its district",
                        field="temporary_number",
                    )
                if area != temporary_area:
                    raise _invalid(
                        f"{e164} is in district {area}, the tenant's number {temporary} in "
                        f"{temporary_area or 'none'}: a geographic number moves only within its district",
                        rule="district",
                    )
            rows.append(
                PortNumber(
                    request_id=request_id,
                    position=len(rows),
                    e164=e164,
                    kind=entry.kind,
                    migration_code=code,
                    primary_e164=primary,
                    gnr_root=parse_root(entry.number) if entry.kind is NumberKind.gnr else None,
                )
            )
    seen: set[str] = set()
    for row in rows:
        if row.e164 in seen:
            raise _invalid(f"{row.e164} appears twice in the request")
        seen.add(row.e164)
    await _check_open(session, [r.e164 for r in rows], request_id)
    return CheckedRequest(rows, warnings, tax_code, vat, temporary)


def parse_or_none(raw: str | None) -> str | None:
    """A number in E.164, or None when it is not one."""
    if not raw:
        return None
    try:
        return parse(raw).e164
    except NumberProblem:
        return None


async def _ported_primary(session: AsyncSession, tenant_id: uuid.UUID, e164: str) -> bool:
    """Whether the tenant already ported this number in as an ISDN primary."""
    found = await session.execute(
        select(col(PortNumber.id))
        .join(PortRequest, col(PortRequest.id) == col(PortNumber.request_id))
        .where(
            col(PortRequest.tenant_id) == tenant_id,
            col(PortRequest.state).in_([S.completed, S.closed]),
            col(PortNumber.e164) == e164,
            col(PortNumber.kind) == NumberKind.isdn_primary,
        )
        .limit(1)
    )
    return found.first() is not None


async def _check_open(session: AsyncSession, e164s: list[str], request_id: uuid.UUID) -> None:
    query = select(col(PortNumber.e164), col(PortNumber.request_id)).where(
        col(PortNumber.e164).in_(e164s), col(PortNumber.open)
    )
    query = query.where(col(PortNumber.request_id) != request_id)
    taken = (await session.execute(query.limit(1))).first()
    if taken is not None:
        raise Problem(
            409,
            "Number already in a port request",
            f"{taken[0]} is in open port request {taken[1]}: one open request per number",
            port_request_id=str(taken[1]),
        )
    ported = (
        await session.execute(
            select(col(PortNumber.e164), col(PortNumber.request_id))
            .join(PortRequest, col(PortRequest.id) == col(PortNumber.request_id))
            .where(
                col(PortNumber.e164).in_(e164s),
                col(PortRequest.state).in_([S.completed, S.closed]),
            )
            .limit(1)
        )
    ).first()
    if ported is not None:
        raise Problem(
            409,
            "Number already ported in",
            f"{ported[0]} was ported in by request {ported[1]}",
            port_request_id=str(ported[1]),
        )


async def _flush_numbers(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        # Lost a race with another request for the same number.
        raise Problem(
            409, "Number already in a port request", "one open request per number"
        ) from exc


# -- requests -----------------------------------------------------------------


async def create_request(
    *,
    session: AsyncSession,
    outbox: Outbox,
    tenant_id: uuid.UUID,
    data: PortRequestBase,
    comment: str | None,
    actor: str,
    settings: Settings,
    now: datetime,
) -> PortRequest:
    """Opens a port request as a draft (port.requested)."""
    request_id = uuid.uuid4()
    checked = await check_request(
        session=session, tenant_id=tenant_id, data=data, settings=settings, request_id=request_id
    )
    request = PortRequest(
        id=request_id,
        tenant_id=tenant_id,
        state=S.draft,
        line_type=data.line_type,
        customer_name=data.customer.name.strip(),
        tax_code=checked.tax_code,
        vat_number=checked.vat_number,
        temporary_number=checked.temporary_number,
        donor_operator=data.donor_operator,
        donor=settings.donor_adapter,
        warnings=checked.warnings,
        state_changed_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(request)
    await session.flush()
    for row in checked.numbers:
        session.add(row)
    await _flush_numbers(session)
    session.add(
        TimelineEntry(
            request_id=request.id,
            at=now,
            actor=actor,
            kind=TimelineKind.created,
            to_state=S.draft,
            comment=comment,
            public=True,
        )
    )
    await outbox.add(
        session,
        PortRequested(
            tenant_id=tenant_id,
            port_request_id=request.id,
            numbers=[r.e164 for r in checked.numbers],
        ),
        tenant_id=tenant_id,
    )
    return request


async def correct_request(
    *,
    session: AsyncSession,
    request: PortRequest,
    data: PortRequestBase,
    actor: str,
    settings: Settings,
    now: datetime,
) -> PortRequest:
    """Replaces a draft's or a rejected request's data (checked again)."""
    if request.state not in EDITABLE:
        raise Problem(
            409,
            "Request not editable",
            f"a {request.state} request cannot be changed; only draft or rejected",
        )
    checked = await check_request(
        session=session,
        tenant_id=request.tenant_id,
        data=data,
        settings=settings,
        request_id=request.id,
    )
    for old in await numbers_of(session=session, request_id=request.id):
        await session.delete(old)
    await session.flush()
    for row in checked.numbers:
        session.add(row)
    await _flush_numbers(session)
    request.line_type = data.line_type
    request.customer_name = data.customer.name.strip()
    request.tax_code = checked.tax_code
    request.vat_number = checked.vat_number
    request.temporary_number = checked.temporary_number
    request.donor_operator = data.donor_operator
    request.warnings = checked.warnings
    request.updated_at = now
    session.add(
        TimelineEntry(
            request_id=request.id, at=now, actor=actor, kind=TimelineKind.corrected, public=True
        )
    )
    return request


async def get_request(
    *, session: AsyncSession, tenant_id: uuid.UUID, request_id: uuid.UUID, lock: bool = False
) -> PortRequest:
    """A tenant's port request (locked for update when asked); 404 otherwise."""
    query = select(PortRequest).where(
        col(PortRequest.id) == request_id, col(PortRequest.tenant_id) == tenant_id
    )
    if lock:
        query = query.with_for_update()
    request = (await session.execute(query)).scalar_one_or_none()
    if request is None:
        raise Problem(404, "Port request not found", f"no port request {request_id}")
    return request


async def list_requests(
    *, session: AsyncSession, tenant_id: uuid.UUID, state: PortState | None = None
) -> list[PortRequest]:
    """A tenant's port requests, newest first."""
    query = select(PortRequest).where(col(PortRequest.tenant_id) == tenant_id)
    if state is not None:
        query = query.where(col(PortRequest.state) == state)
    return list(
        (await session.execute(query.order_by(col(PortRequest.created_at).desc()))).scalars()
    )


async def back_office_queue(
    *, session: AsyncSession, claims: Claims, state: PortState | None, limit: int
) -> list[PortRequest]:
    """Port requests across the tenants the bearer may see, oldest change first."""
    query = select(PortRequest)
    if claims.role is Role.reseller:
        query = query.join(
            tenant_directory, tenant_directory.c.tenant_id == col(PortRequest.tenant_id)
        ).where(tenant_directory.c.reseller_id == claims.reseller_id)
    elif claims.role not in BACK_OFFICE:
        raise Problem(403, "Forbidden", "the queue across tenants is for the operator's staff")
    if state is not None:
        query = query.where(col(PortRequest.state) == state)
    query = query.order_by(col(PortRequest.state_changed_at), col(PortRequest.id)).limit(limit)
    return list((await session.execute(query)).scalars())


async def numbers_of(*, session: AsyncSession, request_id: uuid.UUID) -> list[PortNumber]:
    """The numbers of a request, in the order given."""
    return list(
        (
            await session.execute(
                select(PortNumber)
                .where(col(PortNumber.request_id) == request_id)
                .order_by(col(PortNumber.position))
            )
        ).scalars()
    )


async def to_public(*, session: AsyncSession, request: PortRequest) -> PortRequestPublic:
    """The API view of a request."""
    numbers = await numbers_of(session=session, request_id=request.id)
    return PortRequestPublic(
        id=request.id,
        tenant_id=request.tenant_id,
        state=PortState(request.state),
        line_type=LineType(request.line_type),
        customer=Customer(
            name=request.customer_name, tax_code=request.tax_code, vat_number=request.vat_number
        ),
        numbers=[
            PortNumberPublic(
                e164=n.e164,
                kind=NumberKind(n.kind),
                migration_code=n.migration_code,
                primary=n.primary_e164,
                gnr_root=n.gnr_root,
            )
            for n in numbers
        ],
        temporary_number=request.temporary_number,
        donor_operator=request.donor_operator,
        donor=request.donor,
        reject_reason=RejectReason(request.reject_reason) if request.reject_reason else None,
        expected_completion=request.expected_completion,
        expected_closure=request.expected_closure,
        warnings=list(request.warnings),
        allowed_transitions=sorted(TRANSITIONS[PortState(request.state)]),
        submitted_at=request.submitted_at,
        completed_at=request.completed_at,
        state_changed_at=request.state_changed_at,
        created_at=request.created_at,
        updated_at=request.updated_at,
    )


# -- the state machine ----------------------------------------------------------


async def transition(
    *,
    session: AsyncSession,
    outbox: Outbox,
    request: PortRequest,
    to: PortState,
    actor: str,
    settings: Settings,
    now: datetime,
    comment: str | None = None,
    public: bool = True,
    reason: RejectReason | None = None,
    expected_completion: date | None = None,
    donor_reference: str | None = None,
) -> TimelineEntry:
    """Moves a request along the procedure, in the timeline and on the bus; 409 if illegal."""
    current = PortState(request.state)
    if to not in TRANSITIONS[current]:
        raise Problem(
            409,
            "Illegal transition",
            f"a {current} request cannot become {to}",
            state=current,
            allowed=sorted(TRANSITIONS[current]),
        )
    today = local_date(now, settings)
    if to is S.rejected:
        if reason is None:
            raise _invalid(
                "a rejection needs a reason code", allowed=[r.value for r in RejectReason]
            )
        request.reject_reason = reason
    elif reason is not None:
        raise _invalid("only a rejection carries a reason code")
    if expected_completion is not None and to is not S.scheduled:
        raise _invalid("only scheduling carries an expected completion date")

    if to is S.submitted:
        request.submitted_at = now
        request.reject_reason = None
        request.reschedules = 0
        _set_expected(
            request, calendar.add_business_days(today, settings.port_business_days), settings
        )
    elif to is S.scheduled:
        if current is S.scheduled:
            if expected_completion is None or expected_completion == request.expected_completion:
                raise _invalid("a reschedule needs a new expected completion date")
            request.reschedules += 1
        if (
            expected_completion is not None
            and (expected_completion - today).days > MAX_SCHEDULE_DAYS
        ):
            raise _invalid(f"the expected completion is more than {MAX_SCHEDULE_DAYS} days away")
        if expected_completion is None:
            expected_completion = max(
                request.expected_completion or today, calendar.add_business_days(today, 1)
            )
        if expected_completion < today or not calendar.is_business_day(expected_completion):
            raise _invalid(
                f"the expected completion {expected_completion} is not a business day from today on"
            )
        _set_expected(request, expected_completion, settings)
    elif to is S.completed:
        request.completed_at = now
        request.expected_closure = calendar.add_business_days(today, settings.close_business_days)
    if donor_reference:
        request.donor_reference = donor_reference

    request.state = to
    request.state_changed_at = now
    request.updated_at = now
    if to in FINISHED:
        for number in await numbers_of(session=session, request_id=request.id):
            number.open = False
    entry = TimelineEntry(
        request_id=request.id,
        at=now,
        actor=actor,
        kind=TimelineKind.transition,
        from_state=current,
        to_state=to,
        reason=reason,
        expected_completion=request.expected_completion if to in ANNOUNCING else None,
        comment=comment,
        public=public,
    )
    session.add(entry)
    await outbox.add(
        session,
        PortStateChanged(
            tenant_id=request.tenant_id,
            port_request_id=request.id,
            from_state=current,
            to_state=to,
            actor=actor,
            # A private comment stays off the bus (webhooks reach the tenant).
            comment=comment if public else None,
            reason=reason,
            expected_completion=request.expected_completion,
            expected_closure=request.expected_closure,
            at=now,
        ),
        tenant_id=request.tenant_id,
    )
    if to is S.completed:
        numbers = await numbers_of(session=session, request_id=request.id)
        await outbox.add(
            session,
            PortCompleted(
                tenant_id=request.tenant_id,
                port_request_id=request.id,
                numbers=[n.e164 for n in numbers],
                completed_at=now,
                temporary_number=request.temporary_number,
            ),
            tenant_id=request.tenant_id,
        )
    await session.flush()
    return entry


def _set_expected(request: PortRequest, completion: date, settings: Settings) -> None:
    request.expected_completion = completion
    request.expected_closure = calendar.add_business_days(completion, settings.close_business_days)


def check_transition_rights(claims: Claims, to: PortState) -> None:
    """Tenants may cancel; the rest of the procedure is the back office's (or the donor's)."""
    if to is S.submitted:
        raise Problem(
            409,
            "Submit by uploading the signed consent",
            "a request is submitted by uploading its signed consent (POST .../signed-consent)",
        )
    if claims.role in BACK_OFFICE:
        return
    if to is S.cancelled and may_write(claims):
        return
    raise Problem(403, "Forbidden", f"a {claims.role} may not move a request to {to}")


# -- timeline -------------------------------------------------------------------


async def add_comment(
    *,
    session: AsyncSession,
    request: PortRequest,
    text: str,
    public: bool,
    actor: str,
    now: datetime,
) -> TimelineEntry:
    """Adds a comment to a request's timeline."""
    entry = TimelineEntry(
        request_id=request.id,
        at=now,
        actor=actor,
        kind=TimelineKind.comment,
        comment=text,
        public=public,
    )
    session.add(entry)
    request.updated_at = now
    await session.flush()
    return entry


async def timeline(
    *, session: AsyncSession, request_id: uuid.UUID, include_private: bool
) -> list[TimelineEntry]:
    """A request's timeline, oldest first; private entries only for staff."""
    query = select(TimelineEntry).where(col(TimelineEntry.request_id) == request_id)
    if not include_private:
        query = query.where(col(TimelineEntry.public))
    return list((await session.execute(query.order_by(col(TimelineEntry.id)))).scalars())
