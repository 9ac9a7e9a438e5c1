"""Remote provisioning: one-time, expiring tokens from which a phone fetches its bundle."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from centralino_proto.web import Problem

from .bundles import Bundle, IncompatibleModel, build_bundle, check_compatible, phone_models
from .ca import CaContext, client_material, endpoint_of, get_certificate, require_ca
from .models import (
    Certificate,
    CertificateStatus,
    ProvisioningFetch,
    ProvisioningFetchPublic,
    ProvisioningToken,
    ProvisioningTokenCreate,
    ProvisioningTokenIssued,
    ProvisioningTokenPublic,
)


def _now() -> datetime:
    return datetime.now(UTC)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def require_model(model: str) -> None:
    """422 for a phone model nobody described in phone_models.toml."""
    if model not in phone_models():
        known = ", ".join(sorted(phone_models()))
        raise Problem(422, "Unknown phone model", f"{model!r} is not one of: {known}")


async def create_token(
    *,
    session: AsyncSession,
    ctx: CaContext,
    tenant_id: uuid.UUID,
    request: ProvisioningTokenCreate,
    created_by: str,
) -> ProvisioningTokenIssued:
    """Issues a one-time URL for a device certificate's bundle; the token is shown only now."""
    require_model(request.model)
    cert = await get_certificate(
        session=session, tenant_id=tenant_id, certificate_id=request.certificate_id
    )
    if cert.kind != "device" or cert.status_at(_now()) is not CertificateStatus.valid:
        raise Problem(
            409,
            "Certificate not usable",
            f"certificate {cert.serial} is not a valid device certificate",
        )
    if cert.sealed_key is None:
        raise Problem(
            409, "Key held by the device", "a CSR-issued certificate has no key to deliver"
        )
    ca = await require_ca(session=session, tenant_id=tenant_id)
    try:
        check_compatible(phone_models()[request.model], endpoint_of(ca))
    except IncompatibleModel as exc:
        raise Problem(409, "Phone model cannot join", str(exc)) from exc
    token = secrets.token_urlsafe(32)
    ttl = request.ttl_seconds or ctx.settings.provisioning_token_ttl_seconds
    row = ProvisioningToken(
        tenant_id=tenant_id,
        certificate_id=cert.id,
        model=request.model,
        token_hash=token_hash(token),
        expires_at=_now() + timedelta(seconds=ttl),
        created_by=created_by,
    )
    session.add(row)
    await session.flush()
    base = ctx.settings.provisioning_base_url.rstrip("/")
    return ProvisioningTokenIssued(
        **token_public(row, []).model_dump(), token=token, url=f"{base}/v1/provisioning/{token}"
    )


def token_public(
    row: ProvisioningToken, fetches: list[ProvisioningFetch]
) -> ProvisioningTokenPublic:
    return ProvisioningTokenPublic(
        **row.model_dump(exclude={"token_hash"}),
        fetches=[ProvisioningFetchPublic.model_validate(f, from_attributes=True) for f in fetches],
    )


async def list_tokens(
    *, session: AsyncSession, tenant_id: uuid.UUID
) -> list[ProvisioningTokenPublic]:
    """The tenant's provisioning tokens, newest first (without the tokens themselves)."""
    rows = await session.execute(
        select(ProvisioningToken)
        .where(ProvisioningToken.tenant_id == tenant_id)
        .order_by(ProvisioningToken.created_at.desc())  # type: ignore[attr-defined]
    )
    return [token_public(r, []) for r in rows.scalars()]


async def get_token(
    *, session: AsyncSession, tenant_id: uuid.UUID, token_id: uuid.UUID
) -> tuple[ProvisioningToken, list[ProvisioningFetch]]:
    """One token with its fetch log; 404 otherwise."""
    row = await session.get(ProvisioningToken, token_id)
    if row is None or row.tenant_id != tenant_id:
        raise Problem(404, "Provisioning token not found", f"no token {token_id}")
    fetches = await session.execute(
        select(ProvisioningFetch)
        .where(ProvisioningFetch.token_id == token_id)
        .order_by(ProvisioningFetch.at)  # type: ignore[arg-type]
    )
    return row, list(fetches.scalars())


async def withdraw_token(
    *, session: AsyncSession, tenant_id: uuid.UUID, token_id: uuid.UUID
) -> None:
    """Makes an unused token unusable (it answers 410 from now on)."""
    row, _ = await get_token(session=session, tenant_id=tenant_id, token_id=token_id)
    if row.used_at is None and row.expires_at > _now():
        row.expires_at = _now()
        session.add(row)


async def redeem(
    *,
    session: AsyncSession,
    ctx: CaContext,
    token: str,
    remote_addr: str | None,
    forwarded_for: str | None,
    user_agent: str | None,
) -> Bundle | Problem:
    """Serves a bundle once for a good token; otherwise the problem to answer. Logs both."""
    row = (
        await session.execute(
            select(ProvisioningToken)
            .where(ProvisioningToken.token_hash == token_hash(token))
            .with_for_update()
        )
    ).scalar_one_or_none()
    now = _now()
    outcome, problem = "served", None
    cert: Certificate | None = None
    if row is None:
        outcome, problem = "unknown", Problem(404, "Unknown provisioning token")
    elif row.used_at is not None:
        outcome, problem = (
            "used",
            Problem(410, "Token used", "this provisioning URL was already used"),
        )
    elif row.expires_at <= now:
        outcome, problem = (
            "expired",
            Problem(410, "Token expired", "this provisioning URL has expired"),
        )
    else:
        cert = await session.get(Certificate, row.certificate_id)
        ca = await require_ca(session=session, tenant_id=row.tenant_id)
        if cert is None or cert.status_at(now) is not CertificateStatus.valid:
            outcome = "revoked"
            problem = Problem(
                410, "Certificate withdrawn", "the certificate was revoked or expired"
            )
        else:
            try:
                check_compatible(phone_models()[row.model], endpoint_of(ca))
            except IncompatibleModel as exc:
                # The endpoint changed since the token was made; the token stays unused.
                outcome, problem = "mismatch", Problem(409, "Phone model cannot join", str(exc))
    session.add(
        ProvisioningFetch(
            token_id=row.id if row else None,
            tenant_id=row.tenant_id if row else None,
            outcome=outcome,
            status=problem.status if problem else 200,
            remote_addr=(remote_addr or "")[:64] or None,
            forwarded_for=(forwarded_for or "").split(",")[0].strip()[:64] or None,
            user_agent=(user_agent or "")[:300] or None,
        )
    )
    if problem is not None:
        return problem
    assert row is not None and cert is not None
    row.used_at = now
    session.add(row)
    endpoint, material = await client_material(session=session, ctx=ctx, certificate=cert)
    return build_bundle(phone_models()[row.model], endpoint, material)
