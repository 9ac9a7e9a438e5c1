"""The vpn-ca service's HTTP API."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.x509 import load_pem_x509_crl
from fastapi import APIRouter, Depends, Query, Request, Response

from centralino_proto.auth import Claims, Role
from centralino_proto.bus import Outbox
from centralino_proto.service import ServiceRuntime
from centralino_proto.tenancy import Tenant, TenantDep
from centralino_proto.web import ClaimsDep, Problem, SessionDep

from . import ca as domain
from . import provisioning
from .bundles import IncompatibleModel, build_bundle, phone_models
from .models import (
    CertificateAuthorityCreate,
    CertificateAuthorityPublic,
    CertificateAuthorityUpdate,
    CertificateCreate,
    CertificateKind,
    CertificatePublic,
    CertificateRenew,
    CertificateRevoke,
    CertificateStatus,
    ProvisioningTokenCreate,
    ProvisioningTokenIssued,
    ProvisioningTokenPublic,
)

router = APIRouter(prefix="/v1")
tenant_router = APIRouter(prefix="/tenants/{tenant}", tags=["vpn"])

PEM = "application/x-pem-file"


def _runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


def get_context(request: Request) -> domain.CaContext:
    context = _runtime(request).extras["vpn_ca"]
    assert isinstance(context, domain.CaContext)
    return context


def get_outbox(request: Request) -> Outbox:
    return _runtime(request).outbox


ContextDep = Annotated[domain.CaContext, Depends(get_context)]
OutboxDep = Annotated[Outbox, Depends(get_outbox)]


def _manager(claims: Claims, tenant: Tenant | None = None) -> None:
    # Tenant users may look; changing certificates is for admins and the operator side.
    if claims.role is Role.tenant_user:
        raise Problem(403, "Forbidden", "managing VPN certificates needs an admin role")
    if tenant is not None and not tenant.active:
        raise Problem(409, "Tenant inactive", f"tenant {tenant.slug} is deleted or suspended")


def _operator(claims: Claims) -> None:
    if claims.role not in (Role.operator, Role.service):
        raise Problem(
            403, "Forbidden", "the VPN endpoint and its server configuration are the operator's"
        )


def _ref(tenant: Tenant) -> domain.TenantRef:
    return domain.TenantRef(
        tenant_id=tenant.tenant_id, slug=tenant.slug, name=tenant.name, sip_realm=tenant.sip_realm
    )


# -- the CA ---------------------------------------------------------------------------


@tenant_router.get("/ca", response_model=CertificateAuthorityPublic)
async def get_ca(tenant: TenantDep, session: SessionDep) -> CertificateAuthorityPublic:
    """The tenant's CA (the "master" certificate) and its VPN endpoint; never its key."""
    return domain.ca_public(await domain.require_ca(session=session, tenant_id=tenant.tenant_id))


@tenant_router.post("/ca", status_code=201, response_model=CertificateAuthorityPublic)
async def create_ca(
    body: CertificateAuthorityCreate,
    tenant: TenantDep,
    claims: ClaimsDep,
    session: SessionDep,
    ctx: ContextDep,
    outbox: OutboxDep,
) -> CertificateAuthorityPublic:
    """Creates the CA of a tenant that existed before vpn-ca (new tenants get one on creation)."""
    _manager(claims, tenant)
    ca = await domain.create_ca(
        session=session,
        ctx=ctx,
        outbox=outbox,
        tenant=_ref(tenant),
        key_algorithm=body.key_algorithm,
        endpoint=body.endpoint,
    )
    await session.commit()
    return domain.ca_public(ca)


@tenant_router.patch("/ca", response_model=CertificateAuthorityPublic)
async def update_ca_endpoint(
    body: CertificateAuthorityUpdate,
    tenant: TenantDep,
    claims: ClaimsDep,
    session: SessionDep,
) -> CertificateAuthorityPublic:
    """Moves the tenant's VPN endpoint (host, port, protocol, subnet, SIP edge); operator only."""
    _operator(claims)
    ca = await domain.update_endpoint(
        session=session, tenant_id=tenant.tenant_id, requested=body.endpoint
    )
    await session.commit()
    return domain.ca_public(ca)


@tenant_router.post("/ca/server-certificate", status_code=201, response_model=CertificatePublic)
async def renew_server_certificate(
    tenant: TenantDep,
    claims: ClaimsDep,
    session: SessionDep,
    ctx: ContextDep,
    outbox: OutboxDep,
) -> CertificatePublic:
    """A new certificate for the tenant's VPN server; fetch the server configuration again."""
    _operator(claims)
    cert = await domain.renew_server_certificate(
        session=session, ctx=ctx, outbox=outbox, tenant=_ref(tenant)
    )
    await session.commit()
    return domain.certificate_public(cert)


@tenant_router.get("/ca/certificate.pem", response_class=Response)
async def get_ca_pem(tenant: TenantDep, session: SessionDep) -> Response:
    """The CA certificate and its chain, PEM."""
    ca = await domain.require_ca(session=session, tenant_id=tenant.tenant_id)
    return Response(ca.certificate_pem + ca.chain_pem, media_type=PEM)


@tenant_router.get("/ca/crl", response_class=Response)
async def get_crl(
    tenant: TenantDep,
    session: SessionDep,
    ctx: ContextDep,
    format: Annotated[Literal["pem", "der"], Query()] = "pem",
) -> Response:
    """The tenant's current CRL (re-signed when past half its lifetime)."""
    ca = await domain.fresh_crl(session=session, ctx=ctx, tenant_id=tenant.tenant_id)
    await session.commit()
    headers = {"X-CRL-Number": str(ca.crl_number)}
    if format == "der":
        crl = load_pem_x509_crl(ca.crl_pem.encode())
        return Response(
            crl.public_bytes(serialization.Encoding.DER),
            media_type="application/pkix-crl",
            headers=headers,
        )
    return Response(ca.crl_pem, media_type=PEM, headers=headers)


@tenant_router.get("/ca/openvpn-server.conf", response_class=Response)
async def get_server_config(
    tenant: TenantDep,
    claims: ClaimsDep,
    session: SessionDep,
    ctx: ContextDep,
    crl_path: Annotated[str, Query(min_length=1, max_length=255, pattern=r"^/[A-Za-z0-9._/-]+$")]
    | None = None,
) -> Response:
    """The OpenVPN server configuration of the tenant's endpoint (operator only: it holds a key)."""
    _operator(claims)
    path = crl_path or f"/etc/openvpn/server/{tenant.slug}/crl.pem"
    text = await domain.server_profile(session=session, ctx=ctx, tenant=_ref(tenant), crl_path=path)
    return Response(text, media_type="text/plain; charset=utf-8")


@tenant_router.get("/ca/phone-models")
async def list_phone_models(tenant: TenantDep) -> list[dict[str, str]]:
    """The phone models a bundle can be made for."""
    return [
        {"model": m.key, "vendor": m.vendor, "title": m.title, "filename": m.filename}
        for m in phone_models().values()
    ]


# -- certificates ---------------------------------------------------------------------


@tenant_router.get("/certificates", response_model=list[CertificatePublic])
async def list_certificates(
    tenant: TenantDep,
    session: SessionDep,
    device_id: uuid.UUID | None = None,
    kind: CertificateKind | None = None,
    status: CertificateStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[CertificatePublic]:
    """The tenant's certificates, newest first, a page at a time."""
    rows = await domain.list_certificates(
        session=session,
        tenant_id=tenant.tenant_id,
        device_id=device_id,
        kind=kind,
        status=status,
        limit=limit,
        offset=offset,
    )
    return [domain.certificate_public(c) for c in rows]


@tenant_router.post("/certificates", status_code=201, response_model=CertificatePublic)
async def issue_certificate(
    body: CertificateCreate,
    tenant: TenantDep,
    claims: ClaimsDep,
    session: SessionDep,
    ctx: ContextDep,
    outbox: OutboxDep,
) -> CertificatePublic:
    """Issues a device certificate ("slave"), from the phone's CSR or with a key made here."""
    _manager(claims, tenant)
    cert = await domain.issue_certificate(
        session=session, ctx=ctx, outbox=outbox, tenant=_ref(tenant), request=body
    )
    await session.commit()
    return domain.certificate_public(cert)


@tenant_router.get("/certificates/{certificate_id}", response_model=CertificatePublic)
async def get_certificate(
    certificate_id: uuid.UUID, tenant: TenantDep, session: SessionDep
) -> CertificatePublic:
    cert = await domain.get_certificate(
        session=session, tenant_id=tenant.tenant_id, certificate_id=certificate_id
    )
    return domain.certificate_public(cert)


@tenant_router.post(
    "/certificates/{certificate_id}/renew", status_code=201, response_model=CertificatePublic
)
async def renew_certificate(
    certificate_id: uuid.UUID,
    body: CertificateRenew,
    tenant: TenantDep,
    claims: ClaimsDep,
    session: SessionDep,
    ctx: ContextDep,
    outbox: OutboxDep,
) -> CertificatePublic:
    """A new certificate for the same device (optionally revoking the old one)."""
    _manager(claims, tenant)
    old = await domain.get_certificate(
        session=session, tenant_id=tenant.tenant_id, certificate_id=certificate_id
    )
    cert = await domain.renew_certificate(
        session=session, ctx=ctx, outbox=outbox, tenant=_ref(tenant), certificate=old, request=body
    )
    await session.commit()
    return domain.certificate_public(cert)


@tenant_router.post("/certificates/{certificate_id}/revoke", response_model=CertificatePublic)
async def revoke_certificate(
    certificate_id: uuid.UUID,
    body: CertificateRevoke,
    tenant: TenantDep,
    claims: ClaimsDep,
    session: SessionDep,
    ctx: ContextDep,
    outbox: OutboxDep,
) -> CertificatePublic:
    """Revokes a device certificate; the CRL is re-signed at once."""
    _manager(claims)
    cert = await domain.get_certificate(
        session=session, tenant_id=tenant.tenant_id, certificate_id=certificate_id
    )
    await domain.revoke_certificate(
        session=session, ctx=ctx, outbox=outbox, certificate=cert, reason=body.reason.value
    )
    await session.commit()
    return domain.certificate_public(cert)


@tenant_router.get("/certificates/{certificate_id}/bundle", response_class=Response)
async def download_bundle(
    certificate_id: uuid.UUID,
    tenant: TenantDep,
    claims: ClaimsDep,
    session: SessionDep,
    ctx: ContextDep,
    model: str = "generic",
) -> Response:
    """A device's provisioning bundle for a phone model, downloaded by an admin."""
    _manager(claims)
    provisioning.require_model(model.lower())
    cert = await domain.get_certificate(
        session=session, tenant_id=tenant.tenant_id, certificate_id=certificate_id
    )
    if cert.status_at(domain._now()) is not CertificateStatus.valid:
        raise Problem(409, "Certificate not usable", f"certificate {cert.serial} is not valid")
    endpoint, material = await domain.client_material(session=session, ctx=ctx, certificate=cert)
    try:
        bundle = build_bundle(phone_models()[model.lower()], endpoint, material)
    except IncompatibleModel as exc:
        raise Problem(409, "Phone model cannot join", str(exc)) from exc
    return _bundle_response(bundle)


def _bundle_response(bundle: provisioning.Bundle) -> Response:
    return Response(
        bundle.content,
        media_type=bundle.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{bundle.filename}"',
            "Cache-Control": "no-store",
        },
    )


# -- remote provisioning ------------------------------------------------------------------


@tenant_router.post("/provisioning-tokens", status_code=201, response_model=ProvisioningTokenIssued)
async def create_provisioning_token(
    body: ProvisioningTokenCreate,
    tenant: TenantDep,
    claims: ClaimsDep,
    session: SessionDep,
    ctx: ContextDep,
) -> ProvisioningTokenIssued:
    """A one-time, expiring URL from which the phone fetches its bundle."""
    _manager(claims, tenant)
    issued = await provisioning.create_token(
        session=session, ctx=ctx, tenant_id=tenant.tenant_id, request=body, created_by=claims.sub
    )
    await session.commit()
    return issued


@tenant_router.get("/provisioning-tokens", response_model=list[ProvisioningTokenPublic])
async def list_provisioning_tokens(
    tenant: TenantDep, session: SessionDep
) -> list[ProvisioningTokenPublic]:
    return await provisioning.list_tokens(session=session, tenant_id=tenant.tenant_id)


@tenant_router.get("/provisioning-tokens/{token_id}", response_model=ProvisioningTokenPublic)
async def get_provisioning_token(
    token_id: uuid.UUID, tenant: TenantDep, session: SessionDep
) -> ProvisioningTokenPublic:
    """A token and every fetch of its URL."""
    row, fetches = await provisioning.get_token(
        session=session, tenant_id=tenant.tenant_id, token_id=token_id
    )
    return provisioning.token_public(row, fetches)


@tenant_router.delete("/provisioning-tokens/{token_id}", status_code=204)
async def withdraw_provisioning_token(
    token_id: uuid.UUID, tenant: TenantDep, claims: ClaimsDep, session: SessionDep
) -> Response:
    """Withdraws an unused token: its URL answers 410 from now on."""
    _manager(claims)
    await provisioning.withdraw_token(
        session=session, tenant_id=tenant.tenant_id, token_id=token_id
    )
    await session.commit()
    return Response(status_code=204)


@router.get("/provisioning/{token}", response_class=Response, tags=["provisioning"])
async def fetch_bundle(
    token: str, request: Request, session: SessionDep, ctx: ContextDep
) -> Response:
    """Public, no bearer: the phone fetches its bundle once; used or expired tokens get 410."""
    result = await provisioning.redeem(
        session=session,
        ctx=ctx,
        token=token,
        remote_addr=request.client.host if request.client else None,
        forwarded_for=request.headers.get("x-forwarded-for"),
        user_agent=request.headers.get("user-agent"),
    )
    # The fetch log is kept whatever the answer.
    await session.commit()
    if isinstance(result, Problem):
        raise result
    return _bundle_response(result)


router.include_router(tenant_router)
