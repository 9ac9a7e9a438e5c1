"""The rating service's HTTP API."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select, tuple_
from sqlmodel import col

from centralino_proto.auth import Claims, Role
from centralino_proto.events import CallClass, LedgerEntryKind, Money
from centralino_proto.service import ServiceRuntime
from centralino_proto.tenancy import Tenant, TenantDep
from centralino_proto.web import ClaimsDep, Problem, SessionDep

from .calls import authorize as authorize_call
from .calls import station_markup
from .charges import subscribe_plan
from .decks import PROGRESS, DeckCache, DeckImportError, import_deck, parse_effective
from .ledger import (
    bundle_left,
    current_subscription,
    ensure_account,
    held,
    lock_account,
    post_entry,
)
from .models import (
    Account,
    Cdr,
    LedgerEntry,
    Plan,
    PlanPublic,
    RateDeck,
    RateDeckPublic,
    Station,
    StationPeriod,
    Subscription,
)
from .pricing import BUNDLE_OF, FREE_CLASSES, ZERO, money, price_call

router = APIRouter(prefix="/v1")

E164_RE = re.compile(r"\+[1-9][0-9]{1,14}")
Percent = Annotated[Decimal, Field(ge=0, le=1000, max_digits=12, decimal_places=6)]
MANAGERS = (Role.operator, Role.reseller)


def runtime_of(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


def decks_of(request: Request) -> DeckCache:
    decks: DeckCache = runtime_of(request).extras["decks"]
    return decks


def require(claims: Claims, *roles: Role) -> None:
    """403 unless the bearer has one of the roles."""
    if claims.role not in roles:
        allowed = ", ".join(str(r) for r in roles)
        raise Problem(403, "Forbidden", f"this needs the role {allowed}")


def now() -> datetime:
    return datetime.now(UTC)


# -- authorize -----------------------------------------------------------------


class AuthorizeRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    tenant_id: uuid.UUID
    call_id: str = Field(min_length=1, max_length=200)
    extension: str = Field(min_length=1, max_length=40)
    # Free classes may carry a short code (112) or nothing; billable ones need E.164.
    e164: str | None = Field(default=None, max_length=32)
    call_class: CallClass = Field(alias="class")


class AuthorizeResponse(BaseModel):
    allowed: bool
    max_seconds: int | None
    reason: str | None


@router.post("/authorize", response_model=AuthorizeResponse, tags=["calls"])
async def authorize(
    body: AuthorizeRequest, claims: ClaimsDep, session: SessionDep, request: Request
) -> AuthorizeResponse:
    """May this call start, and for how long; reserves credit and bundle for it."""
    require(claims, Role.service, Role.operator)
    if body.call_class not in FREE_CLASSES and not E164_RE.fullmatch(body.e164 or ""):
        raise Problem(
            422,
            "Invalid number",
            f"a {body.call_class} call needs an E.164 number, got {body.e164!r}",
        )
    runtime = runtime_of(request)
    settings = runtime.settings
    decision = await authorize_call(
        session,
        decks=decks_of(request),
        tenant_id=body.tenant_id,
        call_id=body.call_id,
        extension=body.extension,
        e164=body.e164 or "",
        call_class=body.call_class,
        now=now(),
        max_call_seconds=settings.max_call_seconds,
        grace_seconds=settings.reservation_grace_seconds,
        outbox=runtime.outbox,
    )
    await session.commit()
    return AuthorizeResponse(
        allowed=decision.allowed, max_seconds=decision.max_seconds, reason=decision.reason
    )


# -- balance, ledger, top-ups ------------------------------------------------


class BalancePublic(BaseModel):
    tenant_id: uuid.UUID
    balance: Money
    reserved: Money
    available: Money
    floor: Money
    low_threshold: Money
    reseller_markup_percent: Money
    station_markup_percent: Money
    currency: str


class BalanceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low_threshold: Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=6)] | None = None
    floor: Annotated[Decimal, Field(le=0, max_digits=18, decimal_places=6)] | None = None
    reseller_markup_percent: Percent | None = None
    station_markup_percent: Percent | None = None


async def _balance(session: SessionDep, account: Account) -> BalancePublic:
    reserved, _ = await held(session, tenant_id=account.tenant_id, now=now())
    return BalancePublic(
        tenant_id=account.tenant_id,
        balance=account.balance,
        reserved=reserved,
        available=account.balance - account.floor - reserved,
        floor=account.floor,
        low_threshold=account.low_threshold,
        reseller_markup_percent=account.reseller_markup_percent,
        station_markup_percent=account.station_markup_percent,
        currency=account.currency,
    )


@router.get("/tenants/{tenant}/balance", response_model=BalancePublic, tags=["credit"])
async def get_balance(tenant: TenantDep, session: SessionDep) -> BalancePublic:
    """The tenant's balance, what running calls hold, and what is left to spend."""
    account = await session.get(Account, tenant.tenant_id)
    if account is None:
        await ensure_account(session, tenant_id=tenant.tenant_id)
        await session.commit()
        account = await session.get(Account, tenant.tenant_id, populate_existing=True)
        assert account is not None
    return await _balance(session, account)


@router.patch("/tenants/{tenant}/balance", response_model=BalancePublic, tags=["credit"])
async def update_balance_settings(
    body: BalanceUpdate, tenant: TenantDep, claims: ClaimsDep, session: SessionDep
) -> BalancePublic:
    """Sets the low-credit threshold, the floor and the markups."""
    if body.floor is not None:
        require(claims, Role.operator)
    if body.reseller_markup_percent is not None:
        require(claims, *MANAGERS)
    if claims.role is Role.tenant_user:
        raise Problem(403, "Forbidden", "tenant users cannot change billing settings")
    account = await lock_account(session, tenant_id=tenant.tenant_id)
    for name, value in body.model_dump(exclude_none=True).items():
        setattr(account, name, money(value))
    await session.flush()
    result = await _balance(session, account)
    await session.commit()
    return result


class LedgerEntryPublic(BaseModel):
    id: uuid.UUID
    seq: int
    kind: str
    amount: Money
    balance_after: Money
    reference: str | None
    description: str
    call_id: str | None
    created_at: datetime


class LedgerPage(BaseModel):
    entries: list[LedgerEntryPublic]
    next_before: int | None


@router.get("/tenants/{tenant}/ledger", response_model=LedgerPage, tags=["credit"])
async def get_ledger(
    tenant: TenantDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[int | None, Query(description="seq to page back from")] = None,
) -> LedgerPage:
    """The tenant's ledger, newest first."""
    query = (
        select(LedgerEntry)
        .where(col(LedgerEntry.tenant_id) == tenant.tenant_id)
        .order_by(col(LedgerEntry.seq).desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(col(LedgerEntry.seq) < before)
    rows = list((await session.execute(query)).scalars())
    return LedgerPage(
        entries=[LedgerEntryPublic.model_validate(r, from_attributes=True) for r in rows],
        next_before=rows[-1].seq if len(rows) == limit else None,
    )


class TopUpCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Annotated[Decimal, Field(ge=-1_000_000, le=1_000_000, max_digits=18, decimal_places=6)]
    kind: Literal["top_up", "refund", "adjustment"] = Field(
        default="top_up",
        description="top_up and refund add credit; an adjustment (operator) may take it away",
    )
    reference: str | None = Field(
        default=None, max_length=150, description="payment reference; a repeat is not booked twice"
    )
    description: str = Field(default="top-up", max_length=200)
    call_id: str | None = Field(default=None, max_length=200, description="the call refunded")


@router.post(
    "/tenants/{tenant}/top-ups",
    response_model=LedgerEntryPublic,
    status_code=201,
    tags=["credit"],
)
async def top_up(
    body: TopUpCreate,
    tenant: TenantDep,
    claims: ClaimsDep,
    session: SessionDep,
    request: Request,
    response: Response,
) -> LedgerEntryPublic:
    """Adds credit (operator or the tenant's reseller); refunds and adjustments too."""
    require(claims, *MANAGERS)
    if body.kind == "adjustment":
        require(claims, Role.operator)
        if body.amount == 0:
            raise Problem(422, "Empty adjustment", "an adjustment needs a non-zero amount")
    elif body.amount <= 0:
        raise Problem(422, "Invalid amount", f"a {body.kind} adds credit: the amount must be > 0")
    account = await lock_account(session, tenant_id=tenant.tenant_id)
    reference = f"{body.kind}:{body.reference}" if body.reference else None
    entry = await post_entry(
        session,
        runtime_of(request).outbox,
        account,
        kind=LedgerEntryKind(body.kind),
        amount=body.amount,
        description=body.description,
        reference=reference,
        call_id=body.call_id,
    )
    if entry is None:
        existing = (
            await session.execute(
                select(LedgerEntry).where(
                    col(LedgerEntry.tenant_id) == tenant.tenant_id,
                    col(LedgerEntry.reference) == reference,
                )
            )
        ).scalar_one()
        if existing.amount != body.amount:
            raise Problem(409, "Reference used", f"reference {body.reference} was another entry")
        response.status_code = 200
        entry = existing
    await session.commit()
    return LedgerEntryPublic.model_validate(entry, from_attributes=True)


# -- CDRs ----------------------------------------------------------------------


class CdrPublic(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)
    id: uuid.UUID
    call_id: str
    extension: str
    call_class: str = Field(serialization_alias="class")
    direction: str
    disposition: str
    caller: str
    callee: str
    e164: str | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime
    billable_seconds: int
    bundle_seconds: int
    charged_seconds: int
    prefix: str | None
    destination: str | None
    rate: Money
    cost: Money
    price: Money
    station_price: Money
    currency: str


class CdrPage(BaseModel):
    cdrs: list[CdrPublic]
    next_cursor: str | None


def _cursor(cdr: Cdr) -> str:
    return f"{cdr.ended_at.isoformat()}~{cdr.id}"


@router.get("/tenants/{tenant}/cdrs", response_model=CdrPage, tags=["cdrs"])
async def list_cdrs(
    tenant: TenantDep,
    session: SessionDep,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    extension: str | None = None,
    call_class: Annotated[CallClass | None, Query(alias="class")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> CdrPage:
    """Rated calls, newest first, filtered by time, extension and class."""
    query = select(Cdr).where(col(Cdr.tenant_id) == tenant.tenant_id)
    if start:
        query = query.where(col(Cdr.ended_at) >= start)
    if end:
        query = query.where(col(Cdr.ended_at) < end)
    if extension:
        query = query.where(col(Cdr.extension) == extension)
    if call_class:
        query = query.where(col(Cdr.call_class) == str(call_class))
    if cursor:
        try:
            at, _, ident = cursor.partition("~")
            key = (datetime.fromisoformat(at), uuid.UUID(ident))
        except ValueError as exc:
            raise Problem(400, "Bad cursor", "use next_cursor from the previous page") from exc
        query = query.where(tuple_(col(Cdr.ended_at), col(Cdr.id)) < key)
    query = query.order_by(col(Cdr.ended_at).desc(), col(Cdr.id).desc()).limit(limit)
    rows = list((await session.execute(query)).scalars())
    return CdrPage(
        cdrs=[CdrPublic.model_validate(r, from_attributes=True) for r in rows],
        next_cursor=_cursor(rows[-1]) if len(rows) == limit else None,
    )


# -- quote ---------------------------------------------------------------------


class QuotePublic(BaseModel):
    e164: str
    seconds: int
    prefix: str
    destination: str
    rate: Money
    bundle_seconds: int
    cost: Money
    price: Money
    station_price: Money
    currency: str


@router.get("/tenants/{tenant}/quote", response_model=QuotePublic, tags=["cdrs"])
async def quote(
    tenant: TenantDep,
    session: SessionDep,
    request: Request,
    e164: Annotated[str, Query(pattern=r"^\+[1-9][0-9]{1,14}$")],
    seconds: Annotated[int, Query(ge=0, le=86400)] = 60,
    extension: str | None = None,
    call_class: Annotated[CallClass | None, Query(alias="class")] = None,
) -> QuotePublic:
    """What a call to a number for N seconds would cost the tenant (and a station)."""
    moment = now()
    index = await decks_of(request).in_force(session, moment)
    rate = index.lookup(e164, moment) if index else None
    if rate is None:
        raise Problem(404, "No rate", f"no rate in force for {e164}")
    account = (await session.get(Account, tenant.tenant_id)) or Account(tenant_id=tenant.tenant_id)
    markup = account.reseller_markup_percent or ZERO
    station = (
        await station_markup(session, account, extension)
        if extension
        else account.station_markup_percent or ZERO
    )
    bundle = 0
    bucket = BUNDLE_OF.get(call_class) if call_class else None
    if bucket:
        row = (
            await session.execute(
                select(Subscription, Plan)
                .join(Plan, col(Plan.code) == col(Subscription.plan_code))
                .where(col(Subscription.tenant_id) == tenant.tenant_id)
            )
        ).first()
        if row is not None:
            bundle = bundle_left(row[0], row[1], bucket)
    free = call_class in FREE_CLASSES if call_class else False
    charge = price_call(
        rate,
        0 if free else seconds,
        bundle_available=bundle,
        reseller_markup=markup,
        station_markup=station,
    )
    return QuotePublic(
        e164=e164,
        seconds=seconds,
        prefix=rate.prefix,
        destination=rate.destination,
        rate=rate.rate_per_minute,
        bundle_seconds=charge.bundle_seconds,
        cost=charge.cost,
        price=charge.price,
        station_price=charge.station_price,
        currency=account.currency or "EUR",
    )


# -- plans and subscriptions ---------------------------------------------------


@router.get("/plans", response_model=list[PlanPublic], tags=["plans"])
async def list_plans(claims: ClaimsDep, session: SessionDep) -> list[Plan]:
    """The plans on sale."""
    return list((await session.execute(select(Plan).order_by(col(Plan.monthly_fee)))).scalars())


class PlanPut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    monthly_fee: Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=6)]
    fixed_minutes: int = Field(default=0, ge=0)
    mobile_minutes: int = Field(default=0, ge=0)
    active: bool = True


@router.put("/plans/{code}", response_model=PlanPublic, tags=["plans"])
async def put_plan(
    code: Annotated[str, Path(pattern=r"^[A-Z0-9_-]{1,32}$")],
    body: PlanPut,
    claims: ClaimsDep,
    session: SessionDep,
) -> Plan:
    """Creates or changes a plan (operator)."""
    require(claims, Role.operator)
    plan = await session.get(Plan, code)
    values = {**body.model_dump(), "monthly_fee": money(body.monthly_fee)}
    if plan is None:
        plan = Plan(code=code, **values)
        session.add(plan)
    else:
        for name, value in values.items():
            setattr(plan, name, value)
    await session.commit()
    return plan


class SubscriptionPublic(BaseModel):
    plan: str | None
    cycle_start: datetime | None = None
    cycle_end: datetime | None = None
    fixed_seconds_left: int = 0
    mobile_seconds_left: int = 0
    monthly_fee: Money | None = None


class SubscriptionPut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: str | None = Field(description="plan code; null for pay-as-you-go")


async def _subscription(session: SessionDep, tenant: Tenant) -> SubscriptionPublic:
    row = (
        await session.execute(
            select(Subscription, Plan)
            .join(Plan, col(Plan.code) == col(Subscription.plan_code))
            .where(col(Subscription.tenant_id) == tenant.tenant_id)
        )
    ).first()
    if row is None:
        return SubscriptionPublic(plan=None)
    sub, plan = row
    return SubscriptionPublic(
        plan=plan.code,
        cycle_start=sub.cycle_start,
        cycle_end=sub.cycle_end,
        fixed_seconds_left=bundle_left(sub, plan, "fixed"),
        mobile_seconds_left=bundle_left(sub, plan, "mobile"),
        monthly_fee=plan.monthly_fee,
    )


@router.get("/tenants/{tenant}/subscription", response_model=SubscriptionPublic, tags=["plans"])
async def get_subscription(
    tenant: TenantDep, session: SessionDep, request: Request
) -> SubscriptionPublic:
    """The tenant's plan and what is left of its bundles this cycle."""
    account = await lock_account(session, tenant_id=tenant.tenant_id)
    await current_subscription(session, runtime_of(request).outbox, account, now=now())
    result = await _subscription(session, tenant)
    await session.commit()
    return result


@router.put("/tenants/{tenant}/subscription", response_model=SubscriptionPublic, tags=["plans"])
async def put_subscription(
    body: SubscriptionPut,
    tenant: TenantDep,
    claims: ClaimsDep,
    session: SessionDep,
    request: Request,
) -> SubscriptionPublic:
    """Puts the tenant on a FLAT plan (its fee is booked now) or back on pay-as-you-go."""
    require(claims, *MANAGERS)
    if body.plan is None:
        await lock_account(session, tenant_id=tenant.tenant_id)
        sub = await session.get(Subscription, tenant.tenant_id)
        if sub is not None:
            await session.delete(sub)
    else:
        plan = await session.get(Plan, body.plan)
        if plan is None or not plan.active:
            raise Problem(422, "Unknown plan", f"no plan {body.plan} on sale")
        await subscribe_plan(
            session, runtime_of(request).outbox, tenant_id=tenant.tenant_id, plan=plan, now=now()
        )
    await session.flush()
    result = await _subscription(session, tenant)
    await session.commit()
    return result


# -- stations ------------------------------------------------------------------


class StationSpend(BaseModel):
    extension: str
    period_started_at: datetime | None
    markup_percent: Money | None
    calls: int
    seconds: int
    price: Money
    station_price: Money


class StationPut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    markup_percent: Percent | None = Field(description="null: the tenant's station markup")


def _manage_stations(claims: Claims) -> None:
    if claims.role is Role.tenant_user:
        raise Problem(403, "Forbidden", "tenant users cannot manage stations")


@router.get("/tenants/{tenant}/stations", response_model=list[StationSpend], tags=["stations"])
async def station_spend(tenant: TenantDep, session: SessionDep) -> list[StationSpend]:
    """Spend per extension in its open period (since its last checkout)."""
    stations = {
        s.extension: s
        for s in (
            await session.execute(select(Station).where(col(Station.tenant_id) == tenant.tenant_id))
        ).scalars()
    }
    period = func.coalesce(col(Station.period_started_at), datetime(1970, 1, 1, tzinfo=UTC))
    rows = (
        await session.execute(
            select(
                col(Cdr.extension),
                func.count(),
                func.coalesce(func.sum(col(Cdr.billable_seconds)), 0),
                func.coalesce(func.sum(col(Cdr.price)), 0),
                func.coalesce(func.sum(col(Cdr.station_price)), 0),
            )
            .select_from(Cdr)
            .outerjoin(
                Station,
                (col(Station.tenant_id) == col(Cdr.tenant_id))
                & (col(Station.extension) == col(Cdr.extension)),
            )
            .where(col(Cdr.tenant_id) == tenant.tenant_id, col(Cdr.ended_at) >= period)
            .group_by(col(Cdr.extension))
        )
    ).all()
    totals = {r[0]: r for r in rows}
    result = []
    for extension in sorted(set(stations) | set(totals)):
        station = stations.get(extension)
        total = totals.get(extension)
        result.append(
            StationSpend(
                extension=extension,
                period_started_at=station.period_started_at if station else None,
                markup_percent=station.markup_percent if station else None,
                calls=total[1] if total else 0,
                seconds=total[2] if total else 0,
                price=total[3] if total else ZERO,
                station_price=total[4] if total else ZERO,
            )
        )
    return result


async def _station(session: SessionDep, tenant: Tenant, extension: str) -> Station:
    station = await session.get(Station, (tenant.tenant_id, extension), with_for_update=True)
    if station is None:
        station = Station(
            tenant_id=tenant.tenant_id,
            extension=extension,
            period_started_at=datetime(1970, 1, 1, tzinfo=UTC),
        )
        session.add(station)
    return station


@router.put(
    "/tenants/{tenant}/stations/{extension}", response_model=StationSpend, tags=["stations"]
)
async def put_station(
    extension: str, body: StationPut, tenant: TenantDep, claims: ClaimsDep, session: SessionDep
) -> StationSpend:
    """Sets a station's own markup (null: the tenant's)."""
    _manage_stations(claims)
    station = await _station(session, tenant, extension)
    station.markup_percent = body.markup_percent
    await session.commit()
    for spend in await station_spend(tenant, session):
        if spend.extension == extension:
            return spend
    raise AssertionError("station vanished")


@router.get(
    "/tenants/{tenant}/stations/{extension}", response_model=StationSpend, tags=["stations"]
)
async def get_station(extension: str, tenant: TenantDep, session: SessionDep) -> StationSpend:
    """One station's spend in its open period (what the front desk sees for a room)."""
    for spend in await station_spend(tenant, session):
        if spend.extension == extension:
            return spend
    raise Problem(404, "Station not found", f"no station or calls for extension {extension}")


class StatementLine(BaseModel):
    ended_at: datetime
    e164: str | None
    destination: str | None
    seconds: int
    station_price: Money


class Statement(BaseModel):
    extension: str
    start: datetime
    end: datetime
    lines: list[StatementLine]
    calls: int
    seconds: int
    total: Money
    currency: str = "EUR"


async def _statement(
    session: SessionDep, tenant: Tenant, extension: str, start: datetime, end: datetime
) -> Statement:
    rows = list(
        (
            await session.execute(
                select(Cdr)
                .where(
                    col(Cdr.tenant_id) == tenant.tenant_id,
                    col(Cdr.extension) == extension,
                    col(Cdr.ended_at) >= start,
                    col(Cdr.ended_at) < end,
                    col(Cdr.billable_seconds) > 0,
                )
                .order_by(col(Cdr.ended_at))
            )
        ).scalars()
    )
    lines = [
        StatementLine(
            ended_at=r.ended_at,
            e164=r.e164,
            destination=r.destination,
            seconds=r.billable_seconds,
            station_price=r.station_price,
        )
        for r in rows
    ]
    return Statement(
        extension=extension,
        start=start,
        end=end,
        lines=lines,
        calls=len(lines),
        seconds=sum(r.seconds for r in lines),
        total=sum((r.station_price for r in lines), ZERO),
    )


def _statement_csv(statement: Statement) -> Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["ended_at", "number", "destination", "seconds", "amount_eur"])
    for line in statement.lines:
        writer.writerow(
            [
                line.ended_at.isoformat(),
                line.e164 or "",
                line.destination or "",
                line.seconds,
                format(line.station_price, "f"),
            ]
        )
    writer.writerow(["total", "", "", statement.seconds, format(statement.total, "f")])
    filename = f"statement-{statement.extension}-{statement.start:%Y%m%d}.csv"
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/tenants/{tenant}/stations/{extension}/statement",
    response_model=Statement,
    tags=["stations"],
    responses={200: {"content": {"text/csv": {}}}},
)
async def station_statement(
    extension: str,
    tenant: TenantDep,
    session: SessionDep,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    format: Literal["json", "csv"] = "json",
) -> Any:
    """A station's bill between two dates (default: its open period), JSON or CSV."""
    if start is None:
        station = await session.get(Station, (tenant.tenant_id, extension))
        start = station.period_started_at if station else datetime(1970, 1, 1, tzinfo=UTC)
    end = end or now()
    if end <= start:
        raise Problem(422, "Bad period", "'to' must be after 'from'")
    statement = await _statement(session, tenant, extension, start, end)
    return _statement_csv(statement) if format == "csv" else statement


@router.post(
    "/tenants/{tenant}/stations/{extension}/checkout",
    response_model=Statement,
    tags=["stations"],
)
async def checkout(
    extension: str, tenant: TenantDep, claims: ClaimsDep, session: SessionDep
) -> Statement:
    """Closes the station's open period (a guest checks out) and returns its bill."""
    _manage_stations(claims)
    station = await _station(session, tenant, extension)
    await session.flush()
    end = now()
    statement = await _statement(session, tenant, extension, station.period_started_at, end)
    session.add(
        StationPeriod(
            tenant_id=tenant.tenant_id,
            extension=extension,
            started_at=station.period_started_at,
            ended_at=end,
            calls=statement.calls,
            seconds=statement.seconds,
            price=ZERO,
            station_price=statement.total,
        )
    )
    station.period_started_at = end
    await session.commit()
    return statement


# -- rate decks ----------------------------------------------------------------


class DeckImportProgress(BaseModel):
    deck_id: uuid.UUID
    rows_read: int


class LookupPublic(BaseModel):
    deck_id: uuid.UUID
    prefix: str
    destination: str
    rate_per_minute: Money
    connection_fee: Money
    billing_increment: int
    minimum_seconds: int
    effective_from: datetime


@router.post("/rate-decks", response_model=RateDeckPublic, status_code=201, tags=["rate decks"])
async def import_rate_deck(
    request: Request,
    claims: ClaimsDep,
    session: SessionDep,
    name: Annotated[str, Query(min_length=1, max_length=100)] = "operator",
    effective_from: Annotated[
        str | None, Query(description="date or datetime; default now")
    ] = None,
) -> RateDeck:
    """Imports a CSV deck (streamed, all or nothing); it rates calls from its effective date."""
    require(claims, Role.operator)
    try:
        effective = parse_effective(effective_from) if effective_from else now()
    except ValueError as exc:
        raise Problem(422, "Bad effective_from", str(exc)) from exc
    deck_id = uuid.uuid4()
    try:
        deck = await import_deck(
            session,
            name=name,
            effective_from=effective,
            chunks=request.stream(),
            deck_id=deck_id,
        )
    except DeckImportError as exc:
        await session.rollback()
        # The refusal is kept (no rates), so an operator can see what was tried.
        session.add(
            RateDeck(
                id=deck_id,
                name=name,
                effective_from=effective,
                status="failed",
                error_count=exc.total,
                finished_at=now(),
            )
        )
        await session.commit()
        raise Problem(
            422,
            "Rate deck refused",
            f"{exc.total} bad row(s); nothing was imported",
            deck_id=str(deck_id),
            errors=[e.as_dict() for e in exc.errors],
        ) from exc
    await session.commit()
    # This replica answers from the new deck at once; others rebuild on their next version check.
    decks = decks_of(request)
    await decks.get(deck.id)
    return deck


@router.get("/rate-decks", response_model=list[RateDeckPublic], tags=["rate decks"])
async def list_rate_decks(claims: ClaimsDep, session: SessionDep) -> list[RateDeck]:
    """Imported deck versions, newest first."""
    require(claims, Role.operator, Role.reseller, Role.service)
    query = select(RateDeck).order_by(col(RateDeck.created_at).desc()).limit(200)
    return list((await session.execute(query)).scalars())


@router.get("/rate-decks/imports", response_model=list[DeckImportProgress], tags=["rate decks"])
async def import_progress(claims: ClaimsDep) -> list[DeckImportProgress]:
    """Imports running on this replica and how many rows each has read."""
    require(claims, Role.operator)
    return [DeckImportProgress(deck_id=k, rows_read=v.rows_read) for k, v in PROGRESS.items()]


@router.get("/rate-decks/lookup", response_model=LookupPublic, tags=["rate decks"])
async def lookup(
    request: Request,
    claims: ClaimsDep,
    session: SessionDep,
    e164: Annotated[str, Query(pattern=r"^\+[1-9][0-9]{1,14}$")],
    at: datetime | None = None,
) -> LookupPublic:
    """The deck row (longest prefix) that prices a number at a moment (default now)."""
    require(claims, Role.operator, Role.reseller, Role.service)
    moment = at or now()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    index = await decks_of(request).in_force(session, moment)
    rate = index.lookup(e164, moment) if index else None
    if rate is None:
        raise Problem(404, "No rate", f"no rate in force for {e164}")
    return LookupPublic(
        deck_id=rate.deck_id,
        prefix=rate.prefix,
        destination=rate.destination,
        rate_per_minute=rate.rate_per_minute,
        connection_fee=rate.connection_fee,
        billing_increment=rate.increment,
        minimum_seconds=rate.minimum,
        effective_from=rate.effective_from,
    )


@router.get("/rate-decks/{deck_id}", response_model=RateDeckPublic, tags=["rate decks"])
async def get_rate_deck(deck_id: uuid.UUID, claims: ClaimsDep, session: SessionDep) -> RateDeck:
    """One deck version."""
    require(claims, Role.operator, Role.reseller, Role.service)
    deck = await session.get(RateDeck, deck_id)
    if deck is None:
        raise Problem(404, "Rate deck not found", f"no deck {deck_id}")
    return deck
