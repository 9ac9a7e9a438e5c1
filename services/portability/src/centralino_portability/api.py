"""The portability service's HTTP API.

The two utilities (migration-code validation, business days) are pure functions of
their input and need no token; everything under /v1/tenants/{tenant} is scoped.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile, status

from centralino_proto.auth import Claims
from centralino_proto.service import ServiceRuntime
from centralino_proto.tenancy import TenantDep
from centralino_proto.web import ClaimsDep, Problem, SessionDep

from . import attachments, calendar, consent, migration_code, ports
from .config import Settings
from .models import (
    AttachmentKind,
    AttachmentPublic,
    BusinessDaysOut,
    CommentCreate,
    MigrationCodeIn,
    MigrationCodeOut,
    PortRequestCreate,
    PortRequestPublic,
    PortRequestUpdate,
    PortState,
    SkippedHoliday,
    TimelineEntry,
    TimelineEntryPublic,
    TransitionIn,
)
from .ports import Clock

router = APIRouter(prefix="/v1")


def _runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


def _settings(request: Request) -> Settings:
    settings = _runtime(request).settings
    assert isinstance(settings, Settings)
    return settings


def _now(request: Request) -> datetime:
    clock: Clock = _runtime(request).extras["clock"]
    return clock()


def _require_write(claims: Claims) -> None:
    if not ports.may_write(claims):
        raise Problem(
            403, "Forbidden", f"a {claims.role} may read and comment, not change requests"
        )


# -- public utilities ------------------------------------------------------------


@router.post("/migration-codes/validate", tags=["utilities"])
async def validate_migration_code(body: MigrationCodeIn, request: Request) -> MigrationCodeOut:
    """Checks a migration code's structure (COW, COR, COS) and its check character."""
    return _validated(body.code, _settings(request))


@router.get("/migration-codes/validate", tags=["utilities"])
async def validate_migration_code_get(
    code: Annotated[str, Query(max_length=200)], request: Request
) -> MigrationCodeOut:
    """The same check, for a code in the query string."""
    return _validated(code, _settings(request))


def _validated(code: str, settings: Settings) -> MigrationCodeOut:
    result = migration_code.validate(
        code,
        cos_values=settings.migration_cos_values,
        strict_check=settings.migration_check_strict,
    )
    return MigrationCodeOut(
        valid=result.valid,
        code=result.code,
        parts=result.parts,
        errors=result.errors,
        warnings=result.warnings,
    )


@router.get("/calendar/business-days", tags=["utilities"], response_model_by_alias=True)
async def business_days(
    start: Annotated[date, Query(alias="from", description="YYYY-MM-DD")],
    days: Annotated[int, Query(ge=0, le=calendar.MAX_DAYS)],
) -> BusinessDaysOut:
    """The date `days` business days after `from` (Monday-Friday, less Italian holidays)."""
    try:
        end = calendar.add_business_days(start, days)
    except OverflowError as exc:
        raise Problem(422, "Date out of range", "the result is past year 9999") from exc
    return BusinessDaysOut(
        from_=start,
        days=days,
        date=end,
        skipped_holidays=[
            SkippedHoliday(date=d, name=n) for d, n in calendar.holidays_between(start, end)
        ],
    )


@router.get("/calendar/holidays", tags=["utilities"])
async def holidays_of(
    year: Annotated[int, Query(ge=1950, le=2100)],
) -> list[SkippedHoliday]:
    """The Italian national holidays of a year."""
    return [SkippedHoliday(date=d, name=n) for d, n in calendar.holidays_of(year).items()]


# -- port requests ---------------------------------------------------------------


@router.get("/port-requests", tags=["port requests"])
async def back_office_queue(
    claims: ClaimsDep,
    session: SessionDep,
    state: PortState | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[PortRequestPublic]:
    """The back office's queue: requests across tenants (operator, service; a reseller: its own)."""
    found = await ports.back_office_queue(session=session, claims=claims, state=state, limit=limit)
    return [await ports.to_public(session=session, request=r) for r in found]


REQUESTS = "/tenants/{tenant}/port-requests"


@router.get(REQUESTS, tags=["port requests"])
async def list_port_requests(
    tenant: TenantDep, session: SessionDep, state: PortState | None = None
) -> list[PortRequestPublic]:
    """The tenant's port requests, newest first."""
    found = await ports.list_requests(session=session, tenant_id=tenant.tenant_id, state=state)
    return [await ports.to_public(session=session, request=r) for r in found]


@router.post(REQUESTS, status_code=status.HTTP_201_CREATED, tags=["port requests"])
async def create_port_request(
    body: PortRequestCreate,
    tenant: TenantDep,
    claims: ClaimsDep,
    session: SessionDep,
    request: Request,
    response: Response,
) -> PortRequestPublic:
    """Opens a port request (a draft until the signed consent arrives)."""
    _require_write(claims)
    created = await ports.create_request(
        session=session,
        outbox=_runtime(request).outbox,
        tenant_id=tenant.tenant_id,
        data=body,
        comment=body.comment,
        actor=ports.actor_of(claims),
        settings=_settings(request),
        now=_now(request),
    )
    out = await ports.to_public(session=session, request=created)
    await session.commit()
    response.headers["Location"] = f"/v1/tenants/{tenant.slug}/port-requests/{created.id}"
    return out


@router.get(REQUESTS + "/{request_id}", tags=["port requests"])
async def get_port_request(
    request_id: uuid.UUID, tenant: TenantDep, session: SessionDep
) -> PortRequestPublic:
    """One port request."""
    found = await ports.get_request(
        session=session, tenant_id=tenant.tenant_id, request_id=request_id
    )
    return await ports.to_public(session=session, request=found)


@router.put(REQUESTS + "/{request_id}", tags=["port requests"])
async def correct_port_request(
    request_id: uuid.UUID,
    body: PortRequestUpdate,
    tenant: TenantDep,
    claims: ClaimsDep,
    session: SessionDep,
    request: Request,
) -> PortRequestPublic:
    """Corrects a draft or a rejected request (sign and upload the new consent to resubmit)."""
    _require_write(claims)
    found = await ports.get_request(
        session=session, tenant_id=tenant.tenant_id, request_id=request_id, lock=True
    )
    await ports.correct_request(
        session=session,
        request=found,
        data=body,
        actor=ports.actor_of(claims),
        settings=_settings(request),
        now=_now(request),
    )
    out = await ports.to_public(session=session, request=found)
    await session.commit()
    return out


@router.post(REQUESTS + "/{request_id}/transitions", tags=["port requests"])
async def transition_port_request(
    request_id: uuid.UUID,
    body: TransitionIn,
    tenant: TenantDep,
    claims: ClaimsDep,
    session: SessionDep,
    request: Request,
) -> PortRequestPublic:
    """Moves a request along the procedure; 409 when the move is not legal from its state."""
    ports.check_transition_rights(claims, body.to)
    if not body.public and claims.role not in ports.STAFF:
        raise Problem(403, "Forbidden", "private comments are for the operator's staff")
    found = await ports.get_request(
        session=session, tenant_id=tenant.tenant_id, request_id=request_id, lock=True
    )
    await ports.transition(
        session=session,
        outbox=_runtime(request).outbox,
        request=found,
        to=body.to,
        actor=ports.actor_of(claims),
        settings=_settings(request),
        now=_now(request),
        comment=body.comment,
        public=body.public,
        reason=body.reason,
        expected_completion=body.expected_completion,
    )
    out = await ports.to_public(session=session, request=found)
    await session.commit()
    return out


def _timeline_public(entry: TimelineEntry) -> TimelineEntryPublic:
    return TimelineEntryPublic.model_validate(entry, from_attributes=True)


@router.get(REQUESTS + "/{request_id}/timeline", tags=["port requests"])
async def get_timeline(
    request_id: uuid.UUID, tenant: TenantDep, claims: ClaimsDep, session: SessionDep
) -> list[TimelineEntryPublic]:
    """Every step, comment and attachment, oldest first (private entries for staff only)."""
    await ports.get_request(session=session, tenant_id=tenant.tenant_id, request_id=request_id)
    entries = await ports.timeline(
        session=session, request_id=request_id, include_private=claims.role in ports.STAFF
    )
    return [_timeline_public(e) for e in entries]


@router.post(
    REQUESTS + "/{request_id}/comments", status_code=status.HTTP_201_CREATED, tags=["port requests"]
)
async def add_comment(
    request_id: uuid.UUID,
    body: CommentCreate,
    tenant: TenantDep,
    claims: ClaimsDep,
    session: SessionDep,
    request: Request,
) -> TimelineEntryPublic:
    """Adds a public comment, or (staff only) a private one."""
    if not body.public and claims.role not in ports.STAFF:
        raise Problem(403, "Forbidden", "private comments are for the operator's staff")
    found = await ports.get_request(
        session=session, tenant_id=tenant.tenant_id, request_id=request_id, lock=True
    )
    entry = await ports.add_comment(
        session=session,
        request=found,
        text=body.text,
        public=body.public,
        actor=ports.actor_of(claims),
        now=_now(request),
    )
    out = _timeline_public(entry)
    await session.commit()
    return out


# -- attachments and the consent document ------------------------------------------


async def _read_bounded(upload: UploadFile, limit: int) -> bytes:
    content = await upload.read(limit + 1)
    if len(content) > limit:
        raise Problem(413, "Attachment too large", f"at most {limit} bytes are accepted")
    return content


async def _check_attachment_count(
    session: SessionDep, request_id: uuid.UUID, settings: Settings
) -> None:
    count = await attachments.count_attachments(session=session, request_id=request_id)
    if count >= settings.attachments_per_request:
        raise Problem(
            409,
            "Too many attachments",
            f"a request holds at most {settings.attachments_per_request}",
        )


def _attachment_public(found: attachments.Attachment) -> AttachmentPublic:
    return AttachmentPublic.model_validate(found, from_attributes=True)


@router.get(REQUESTS + "/{request_id}/attachments", tags=["attachments"])
async def list_attachments(
    request_id: uuid.UUID, tenant: TenantDep, session: SessionDep
) -> list[AttachmentPublic]:
    """The request's attachments (metadata)."""
    await ports.get_request(session=session, tenant_id=tenant.tenant_id, request_id=request_id)
    found = await attachments.list_attachments(session=session, request_id=request_id)
    return [_attachment_public(a) for a in found]


@router.post(
    REQUESTS + "/{request_id}/attachments",
    status_code=status.HTTP_201_CREATED,
    tags=["attachments"],
)
async def upload_bill(
    request_id: uuid.UUID,
    file: Annotated[UploadFile, File(description="the last phone bill: PDF or image")],
    tenant: TenantDep,
    claims: ClaimsDep,
    session: SessionDep,
    request: Request,
    kind: Annotated[AttachmentKind, Form()] = AttachmentKind.bill,
) -> AttachmentPublic:
    """Attaches the last phone bill (PDF or image, type read from the content)."""
    _require_write(claims)
    if kind is not AttachmentKind.bill:
        raise Problem(422, "Wrong endpoint", "the signed consent goes to POST .../signed-consent")
    content = await _read_bounded(file, _settings(request).attachment_max_bytes)
    found = await ports.get_request(
        session=session, tenant_id=tenant.tenant_id, request_id=request_id, lock=True
    )
    if PortState(found.state) in ports.FINISHED:
        raise Problem(409, "Request finished", f"a {found.state} request takes no attachments")
    await _check_attachment_count(session, found.id, _settings(request))
    stored = await attachments.add_attachment(
        session=session,
        request=found,
        kind=kind,
        content=content,
        filename=file.filename,
        actor=ports.actor_of(claims),
        now=_now(request),
    )
    out = _attachment_public(stored)
    await session.commit()
    return out


@router.get(
    REQUESTS + "/{request_id}/attachments/{attachment_id}",
    tags=["attachments"],
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}, "image/*": {}}}},
)
async def download_attachment(
    request_id: uuid.UUID, attachment_id: uuid.UUID, tenant: TenantDep, session: SessionDep
) -> Response:
    """The attachment's content, as uploaded."""
    await ports.get_request(session=session, tenant_id=tenant.tenant_id, request_id=request_id)
    found = await attachments.get_attachment(
        session=session, request_id=request_id, attachment_id=attachment_id
    )
    return Response(
        found.content,
        media_type=found.content_type,
        headers={
            "Content-Disposition": f'attachment; filename="{found.filename}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get(
    REQUESTS + "/{request_id}/consent",
    tags=["attachments"],
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
async def consent_document(
    request_id: uuid.UUID, tenant: TenantDep, session: SessionDep, request: Request
) -> Response:
    """The consent PDF to print, sign and send back."""
    found = await ports.get_request(
        session=session, tenant_id=tenant.tenant_id, request_id=request_id
    )
    numbers = await ports.numbers_of(session=session, request_id=found.id)
    pdf = consent.render(
        found,
        numbers,
        issued=ports.local_date(_now(request), _settings(request)),
        operator=_settings(request).operator_name,
    )
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="consent-{found.id}.pdf"'},
    )


@router.delete(
    REQUESTS + "/{request_id}/attachments/{attachment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["attachments"],
)
async def delete_attachment(
    request_id: uuid.UUID,
    attachment_id: uuid.UUID,
    tenant: TenantDep,
    claims: ClaimsDep,
    session: SessionDep,
    request: Request,
) -> None:
    """Removes a bill from a draft or a rejected request (a signed consent stays on record)."""
    _require_write(claims)
    found = await ports.get_request(
        session=session, tenant_id=tenant.tenant_id, request_id=request_id, lock=True
    )
    attachment = await attachments.get_attachment(
        session=session, request_id=request_id, attachment_id=attachment_id
    )
    if PortState(found.state) not in ports.EDITABLE or attachment.kind != AttachmentKind.bill:
        raise Problem(
            409,
            "Attachment kept",
            "only a bill of a draft or rejected request can be removed",
        )
    await attachments.remove_attachment(
        session=session,
        request=found,
        attachment=attachment,
        actor=ports.actor_of(claims),
        now=_now(request),
    )
    await session.commit()


@router.post(REQUESTS + "/{request_id}/signed-consent", tags=["attachments"])
async def upload_signed_consent(
    request_id: uuid.UUID,
    file: Annotated[UploadFile, File(description="the signed consent: PDF or image")],
    tenant: TenantDep,
    claims: ClaimsDep,
    session: SessionDep,
    request: Request,
) -> PortRequestPublic:
    """Takes the signed consent and submits the request (draft or rejected -> submitted)."""
    _require_write(claims)
    content = await _read_bounded(file, _settings(request).attachment_max_bytes)
    found = await ports.get_request(
        session=session, tenant_id=tenant.tenant_id, request_id=request_id, lock=True
    )
    if PortState.submitted not in ports.TRANSITIONS[PortState(found.state)]:
        raise Problem(
            409,
            "Illegal transition",
            f"a {found.state} request cannot be submitted",
            state=found.state,
            allowed=sorted(ports.TRANSITIONS[PortState(found.state)]),
        )
    await _check_attachment_count(session, found.id, _settings(request))
    now = _now(request)
    actor = ports.actor_of(claims)
    await attachments.add_attachment(
        session=session,
        request=found,
        kind=AttachmentKind.signed_consent,
        content=content,
        filename=file.filename,
        actor=actor,
        now=now,
    )
    await ports.transition(
        session=session,
        outbox=_runtime(request).outbox,
        request=found,
        to=PortState.submitted,
        actor=actor,
        settings=_settings(request),
        now=now,
        comment="signed consent received",
    )
    out = await ports.to_public(session=session, request=found)
    await session.commit()
    return out
