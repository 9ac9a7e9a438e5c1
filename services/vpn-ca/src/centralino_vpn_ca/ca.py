"""The tenant CA's domain: create it, issue/renew/revoke certificates, keep the CRL, profiles."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from centralino_proto.bus import Outbox
from centralino_proto.events import CertIssued, CertRevoked
from centralino_proto.web import Problem

from . import pki
from .config import Settings
from .models import (
    Certificate,
    CertificateAuthority,
    CertificateAuthorityPublic,
    CertificateCreate,
    CertificateKind,
    CertificatePublic,
    CertificateRenew,
    CertificateStatus,
    KeyAlgorithm,
    TlsWrap,
    VpnEndpoint,
    VpnEndpointUpdate,
    VpnProtocol,
)
from .openvpn import ClientMaterial, Endpoint, new_tls_crypt_key, server_config
from .vault import KeyVault

log = logging.getLogger("centralino.vpn_ca")

KEY_ALGORITHMS = tuple(a.value for a in KeyAlgorithm)


@dataclass(frozen=True)
class CaContext:
    """What signing needs beyond the database: settings, the KEK vault, the operator root."""

    settings: Settings
    vault: KeyVault
    root: pki.Issuer | None = None

    @property
    def root_pem(self) -> str:
        return pki.cert_to_pem(self.root.certificate) if self.root else ""


def load_context(settings: Settings) -> CaContext:
    """Builds the signing context, loading the operator root when one is configured."""
    previous = settings.ca_kek_previous
    vault = KeyVault(
        settings.ca_kek.get_secret_value(),
        previous=(previous.get_secret_value(),) if previous else (),
    )
    root = None
    if settings.root_ca_cert_file and settings.root_ca_key_file:
        certificate = x509.load_pem_x509_certificate(Path(settings.root_ca_cert_file).read_bytes())
        passphrase = settings.root_ca_key_passphrase
        key = serialization.load_pem_private_key(
            Path(settings.root_ca_key_file).read_bytes(),
            password=passphrase.get_secret_value().encode() if passphrase else None,
        )
        if not isinstance(key, pki.PrivateKey):
            raise ValueError("the operator root key must be ECDSA or RSA")
        root = pki.Issuer(certificate=certificate, key=key)
    return CaContext(settings=settings, vault=vault, root=root)


@dataclass(frozen=True)
class TenantRef:
    tenant_id: uuid.UUID
    slug: str
    name: str
    sip_realm: str


def _now() -> datetime:
    return datetime.now(UTC)


# -- the CA ---------------------------------------------------------------------------


async def find_ca(*, session: AsyncSession, tenant_id: uuid.UUID) -> CertificateAuthority | None:
    """The tenant's CA, if it has one."""
    result = await session.execute(
        select(CertificateAuthority).where(CertificateAuthority.tenant_id == tenant_id)
    )
    return result.scalar_one_or_none()


async def require_ca(
    *, session: AsyncSession, tenant_id: uuid.UUID, for_update: bool = False
) -> CertificateAuthority:
    """The tenant's CA; 404 when it has none yet."""
    statement = select(CertificateAuthority).where(CertificateAuthority.tenant_id == tenant_id)
    if for_update:
        statement = statement.with_for_update()
    ca = (await session.execute(statement)).scalar_one_or_none()
    if ca is None:
        raise Problem(404, "No CA", "this tenant has no VPN certificate authority yet")
    return ca


def issuer_of(*, ctx: CaContext, ca: CertificateAuthority) -> pki.Issuer:
    """The CA's certificate and its key, unsealed for one signing."""
    der = ctx.vault.open(ca.sealed_key, context=f"ca:{ca.id}")
    return pki.Issuer(certificate=pki.cert_from_pem(ca.certificate_pem), key=pki.key_from_der(der))


def endpoint_of(ca: CertificateAuthority) -> Endpoint:
    return Endpoint(
        remote_host=ca.vpn_remote_host,
        port=ca.vpn_port,
        protocol=ca.vpn_protocol,
        subnet=ca.vpn_subnet,
        sip_edge=ca.sip_edge,
        tls_wrap=ca.tls_wrap,
    )


def ca_public(ca: CertificateAuthority) -> CertificateAuthorityPublic:
    endpoint = endpoint_of(ca)
    return CertificateAuthorityPublic(
        id=ca.id,
        tenant_id=ca.tenant_id,
        subject=ca.subject,
        key_algorithm=ca.key_algorithm,
        serial=ca.serial,
        fingerprint_sha256=pki.fingerprint(pki.cert_from_pem(ca.certificate_pem)),
        certificate_pem=ca.certificate_pem,
        chain_pem=ca.chain_pem,
        not_before=ca.not_before,
        not_after=ca.not_after,
        crl_number=ca.crl_number,
        crl_next_update=ca.crl_next_update,
        endpoint=VpnEndpoint(
            remote_host=endpoint.remote_host,
            port=endpoint.port,
            protocol=VpnProtocol(endpoint.protocol),
            subnet=endpoint.subnet,
            sip_edge=endpoint.sip_edge,
            tls_wrap=TlsWrap(endpoint.tls_wrap),
        ),
        created_at=ca.created_at,
    )


def _ipv4(value: str, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(value)
    except ValueError as exc:
        raise Problem(422, "Invalid endpoint", f"{what} {value!r} is not an IPv4 address") from exc


async def _subnets_taken(
    *, session: AsyncSession, but: uuid.UUID | None = None
) -> list[ipaddress.IPv4Network]:
    statement = select(CertificateAuthority.vpn_subnet)
    if but is not None:
        statement = statement.where(CertificateAuthority.id != but)
    return [ipaddress.IPv4Network(s) for s in (await session.execute(statement)).scalars()]


def _checked_subnet(value: str, taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    try:
        subnet = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise Problem(422, "Invalid endpoint", f"subnet {value!r}: {exc}") from exc
    if not subnet.is_private or not 16 <= subnet.prefixlen <= 29:
        raise Problem(422, "Invalid endpoint", "the subnet must be private, /16 to /29")
    clash = next((t for t in taken if t.overlaps(subnet)), None)
    if clash:
        raise Problem(409, "Subnet in use", f"{subnet} overlaps another tenant's {clash}")
    return subnet


async def update_endpoint(
    *, session: AsyncSession, tenant_id: uuid.UUID, requested: VpnEndpointUpdate
) -> CertificateAuthority:
    """Changes where the tenant's VPN endpoint is; profiles made from now on carry it."""
    ca = await require_ca(session=session, tenant_id=tenant_id, for_update=True)
    old = endpoint_of(ca)
    if requested.subnet and requested.subnet != ca.vpn_subnet:
        taken = await _subnets_taken(session=session, but=ca.id)
        subnet = _checked_subnet(requested.subnet, taken)
        ca.vpn_subnet = str(subnet)
        if ca.sip_edge == old.server_address and not requested.sip_edge:
            # The edge was the server's own tunnel address: it moves with the subnet.
            ca.sip_edge = str(next(subnet.hosts()))
    if requested.sip_edge:
        ca.sip_edge = str(_ipv4(requested.sip_edge, "sip_edge"))
    if requested.remote_host:
        ca.vpn_remote_host = requested.remote_host
    if requested.port:
        ca.vpn_port = requested.port
    if requested.protocol:
        ca.vpn_protocol = requested.protocol.value
    if requested.tls_wrap:
        ca.tls_wrap = requested.tls_wrap.value
    session.add(ca)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Problem(409, "Subnet in use", f"{ca.vpn_subnet} was just taken") from exc
    return ca


async def allocate_endpoint(
    *, session: AsyncSession, settings: Settings, requested: VpnEndpointUpdate | None
) -> Endpoint:
    """The tenant's VPN endpoint: what was asked for, else the next free subnet of the pool."""
    requested = requested or VpnEndpointUpdate()
    taken = await _subnets_taken(session=session)
    if requested.subnet:
        subnet = _checked_subnet(requested.subnet, taken)
        index = 0
    else:
        pool = ipaddress.IPv4Network(settings.vpn_subnet_pool)
        free = (
            (i, s)
            for i, s in enumerate(pool.subnets(new_prefix=settings.vpn_subnet_prefix))
            if not any(t.overlaps(s) for t in taken)
        )
        found = next(free, None)
        if found is None:
            raise Problem(409, "VPN pool exhausted", f"no free subnet left in {pool}")
        index, subnet = found
    # Tenants sharing one OpenVPN host get one port each, in the order of their subnets.
    port = requested.port or settings.vpn_port_base + index
    server_address = str(next(subnet.hosts()))
    sip_edge = requested.sip_edge or settings.sip_edge or server_address
    _ipv4(sip_edge, "sip_edge")
    return Endpoint(
        remote_host=requested.remote_host or settings.vpn_remote_host,
        port=port,
        protocol=str(requested.protocol or settings.vpn_protocol),
        subnet=str(subnet),
        sip_edge=sip_edge,
        tls_wrap=(requested.tls_wrap or TlsWrap.tls_crypt).value,
    )


async def create_ca(
    *,
    session: AsyncSession,
    ctx: CaContext,
    outbox: Outbox,
    tenant: TenantRef,
    key_algorithm: str | None = None,
    endpoint: VpnEndpointUpdate | None = None,
) -> CertificateAuthority:
    """Creates the tenant's CA, its VPN server certificate, tls-crypt key and first CRL."""
    if await find_ca(session=session, tenant_id=tenant.tenant_id):
        raise Problem(409, "CA exists", f"tenant {tenant.slug} already has a VPN CA")
    settings = ctx.settings
    algorithm = key_algorithm or settings.key_algorithm
    where = await allocate_endpoint(session=session, settings=settings, requested=endpoint)
    key = await asyncio.to_thread(pki.generate_key, algorithm)
    certificate = pki.build_ca(
        key=key,
        common_name=f"{tenant.name} VPN CA"[:64],
        organization="Centralino",
        unit=tenant.slug,
        days=settings.ca_validity_days,
        parent=ctx.root,
    )
    ca = CertificateAuthority(
        tenant_id=tenant.tenant_id,
        subject=certificate.subject.rfc4514_string(),
        key_algorithm=algorithm,
        serial=pki.serial_hex(certificate.serial_number),
        certificate_pem=pki.cert_to_pem(certificate),
        chain_pem=ctx.root_pem,
        sealed_key=b"",
        kek_id=ctx.vault.kek_id.hex(),
        tls_crypt_sealed=b"",
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        crl_number=0,
        crl_pem="",
        crl_next_update=_now(),
        vpn_remote_host=where.remote_host,
        vpn_port=where.port,
        vpn_protocol=where.protocol,
        vpn_subnet=where.subnet,
        sip_edge=where.sip_edge,
        tls_wrap=where.tls_wrap,
    )
    ca.sealed_key = ctx.vault.seal(pki.key_to_der(key), context=f"ca:{ca.id}")
    ca.tls_crypt_sealed = ctx.vault.seal(new_tls_crypt_key().encode(), context=f"tls-crypt:{ca.id}")
    session.add(ca)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        # Lost a race with another creation for this tenant or for the same subnet.
        raise Problem(
            409, "CA exists", f"tenant {tenant.slug} or subnet {where.subnet} is taken"
        ) from exc
    issuer = pki.Issuer(certificate=certificate, key=key)
    await _write_crl(session=session, ctx=ctx, ca=ca, issuer=issuer)
    server = await _sign(
        session=session,
        ctx=ctx,
        outbox=outbox,
        ca=ca,
        issuer=issuer,
        tenant=tenant,
        kind="server",
        common_name=f"vpn.{tenant.sip_realm}"[:64],
        key_algorithm=algorithm,
        days=settings.server_validity_days,
        hostname=where.remote_host,
    )
    ca.server_certificate_id = server.id
    await session.flush()
    log.info("created VPN CA for tenant %s (%s, %s)", tenant.slug, algorithm, where.subnet)
    return ca


async def renew_server_certificate(
    *, session: AsyncSession, ctx: CaContext, outbox: Outbox, tenant: TenantRef
) -> Certificate:
    """A new VPN server certificate (and key); the old one stays valid until it expires."""
    ca = await require_ca(session=session, tenant_id=tenant.tenant_id, for_update=True)
    old = (
        await session.get(Certificate, ca.server_certificate_id)
        if ca.server_certificate_id
        else None
    )
    server = await _sign(
        session=session,
        ctx=ctx,
        outbox=outbox,
        ca=ca,
        issuer=issuer_of(ctx=ctx, ca=ca),
        tenant=tenant,
        kind="server",
        common_name=old.common_name if old else f"vpn.{tenant.sip_realm}"[:64],
        key_algorithm=ca.key_algorithm,
        days=ctx.settings.server_validity_days,
        hostname=ca.vpn_remote_host,
        renewed_from=old,
    )
    ca.server_certificate_id = server.id
    session.add(ca)
    await session.flush()
    return server


# -- certificates -----------------------------------------------------------------------


def certificate_public(cert: Certificate) -> CertificatePublic:
    return CertificatePublic(
        **cert.model_dump(exclude={"sealed_key", "ca_id"}),
        status=cert.status_at(_now()),
        fingerprint_sha256=pki.fingerprint(pki.cert_from_pem(cert.certificate_pem)),
    )


async def _sign(
    *,
    session: AsyncSession,
    ctx: CaContext,
    outbox: Outbox,
    ca: CertificateAuthority,
    issuer: pki.Issuer,
    tenant: TenantRef,
    kind: pki.CertKind,
    common_name: str,
    days: int,
    key_algorithm: str | None = None,
    public_key: pki.PublicKey | None = None,
    device_id: uuid.UUID | None = None,
    extension: str | None = None,
    hostname: str | None = None,
    renewed_from: Certificate | None = None,
) -> Certificate:
    """Signs one certificate (generating its key unless a public key is given) and records it."""
    row_id = uuid.uuid4()
    key: pki.PrivateKey | None = None
    if public_key is None:
        key = await asyncio.to_thread(pki.generate_key, key_algorithm or ctx.settings.key_algorithm)
        public_key = key.public_key()
    ip_addresses: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    if hostname:
        try:
            ip_addresses = (str(ipaddress.ip_address(hostname)),)
        except ValueError:
            dns_names = (hostname,)
    certificate = pki.issue(
        issuer=issuer,
        public_key=public_key,
        kind=kind,
        common_name=common_name,
        organization=tenant.name[:64],
        unit=f"ext {extension}" if extension else None,
        days=days,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        uri=pki.device_uri(device_id) if device_id else None,
    )
    cert = Certificate(
        id=row_id,
        tenant_id=tenant.tenant_id,
        ca_id=ca.id,
        kind=kind,
        serial=pki.serial_hex(certificate.serial_number),
        common_name=common_name,
        subject=certificate.subject.rfc4514_string(),
        device_id=device_id,
        extension=extension,
        key_algorithm=pki.key_algorithm_of(public_key),
        key_origin="generated" if key else "csr",
        sealed_key=ctx.vault.seal(pki.key_to_der(key), context=f"cert:{row_id}") if key else None,
        certificate_pem=pki.cert_to_pem(certificate),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        renewed_from_id=renewed_from.id if renewed_from else None,
    )
    session.add(cert)
    await session.flush()
    await outbox.add(
        session,
        CertIssued(
            tenant_id=tenant.tenant_id,
            certificate_id=cert.id,
            device_id=device_id,
            serial=cert.serial,
            subject=cert.subject,
            not_after=cert.not_after,
            kind=kind,
            extension=extension,
            renewed_from=cert.renewed_from_id,
        ),
        tenant_id=tenant.tenant_id,
    )
    return cert


def _csr_public_key(csr_pem: str) -> tuple[pki.PublicKey, str | None]:
    try:
        csr = pki.load_csr(csr_pem)
    except pki.CsrError as exc:
        raise Problem(422, "Invalid CSR", str(exc)) from exc
    key = csr.public_key()
    assert isinstance(key, pki.PublicKey)
    return key, pki.csr_common_name(csr)


async def _common_name_in_use(
    *, session: AsyncSession, tenant_id: uuid.UUID, common_name: str, device_id: uuid.UUID | None
) -> bool:
    # OpenVPN keys clients by CN: two live devices sharing one would evict each other.
    rows = await session.execute(
        select(Certificate).where(
            Certificate.tenant_id == tenant_id,
            Certificate.common_name == common_name,
            Certificate.revoked_at.is_(None),  # type: ignore[union-attr]
            Certificate.not_after > _now(),
        )
    )
    return any(c.device_id is None or c.device_id != device_id for c in rows.scalars())


async def issue_certificate(
    *,
    session: AsyncSession,
    ctx: CaContext,
    outbox: Outbox,
    tenant: TenantRef,
    request: CertificateCreate,
) -> Certificate:
    """Issues a device certificate, from the phone's CSR or with a key made here."""
    ca = await require_ca(session=session, tenant_id=tenant.tenant_id)
    public_key, csr_cn = _csr_public_key(request.csr) if request.csr else (None, None)
    row_hint = uuid.uuid4().hex[:16]
    common_name = (
        request.common_name
        or csr_cn
        or (str(request.device_id) if request.device_id else f"cert-{row_hint}")
    )
    if (
        not common_name
        or len(common_name) > 64
        or not all(c.isalnum() or c in "._@-" for c in common_name)
    ):
        raise Problem(422, "Invalid common name", f"{common_name!r}: letters, digits and ._@- only")
    if await _common_name_in_use(
        session=session,
        tenant_id=tenant.tenant_id,
        common_name=common_name,
        device_id=request.device_id,
    ):
        raise Problem(
            409, "Common name in use", f"a valid certificate already has CN {common_name}"
        )
    return await _sign(
        session=session,
        ctx=ctx,
        outbox=outbox,
        ca=ca,
        issuer=issuer_of(ctx=ctx, ca=ca),
        tenant=tenant,
        kind="device",
        common_name=common_name,
        days=request.validity_days or ctx.settings.device_validity_days,
        key_algorithm=request.key_algorithm,
        public_key=public_key,
        device_id=request.device_id,
        extension=request.extension,
    )


async def list_certificates(
    *,
    session: AsyncSession,
    tenant_id: uuid.UUID,
    device_id: uuid.UUID | None,
    kind: CertificateKind | None,
    status: CertificateStatus | None,
    limit: int,
    offset: int,
) -> list[Certificate]:
    """A page of the tenant's certificates, newest first."""
    statement = select(Certificate).where(Certificate.tenant_id == tenant_id)
    if device_id:
        statement = statement.where(Certificate.device_id == device_id)
    if kind:
        statement = statement.where(Certificate.kind == kind.value)
    now = _now()
    revoked_at, not_after = col(Certificate.revoked_at), col(Certificate.not_after)
    if status is CertificateStatus.revoked:
        statement = statement.where(revoked_at.is_not(None))
    elif status is CertificateStatus.expired:
        statement = statement.where(revoked_at.is_(None), not_after <= now)
    elif status is CertificateStatus.valid:
        statement = statement.where(revoked_at.is_(None), not_after > now)
    statement = statement.order_by(col(Certificate.created_at).desc(), col(Certificate.id))
    return list((await session.execute(statement.limit(limit).offset(offset))).scalars())


async def get_certificate(
    *, session: AsyncSession, tenant_id: uuid.UUID, certificate_id: uuid.UUID
) -> Certificate:
    """One of the tenant's certificates; 404 otherwise."""
    cert = await session.get(Certificate, certificate_id)
    if cert is None or cert.tenant_id != tenant_id:
        raise Problem(404, "Certificate not found", f"no certificate {certificate_id}")
    return cert


async def renew_certificate(
    *,
    session: AsyncSession,
    ctx: CaContext,
    outbox: Outbox,
    tenant: TenantRef,
    certificate: Certificate,
    request: CertificateRenew,
) -> Certificate:
    """A new certificate for the same device: a new CSR, the same public key, or a new key."""
    if certificate.revoked_at is not None:
        raise Problem(409, "Certificate revoked", "a revoked certificate cannot be renewed")
    if certificate.kind != "device":
        raise Problem(
            409, "Not a device certificate", "the VPN server certificate goes with its CA"
        )
    ca = await require_ca(session=session, tenant_id=tenant.tenant_id)
    public_key: pki.PublicKey | None = None
    if request.csr:
        public_key, _ = _csr_public_key(request.csr)
    elif certificate.key_origin == "csr":
        # The key stays on the phone: re-certify the same public key.
        old_key = pki.cert_from_pem(certificate.certificate_pem).public_key()
        assert isinstance(old_key, pki.PublicKey)
        public_key = old_key
    renewed = await _sign(
        session=session,
        ctx=ctx,
        outbox=outbox,
        ca=ca,
        issuer=issuer_of(ctx=ctx, ca=ca),
        tenant=tenant,
        kind="device",
        common_name=certificate.common_name,
        days=request.validity_days or ctx.settings.device_validity_days,
        # A new key of the same kind (a CSR-born key of another kind keeps its public key).
        key_algorithm=certificate.key_algorithm
        if certificate.key_algorithm in KEY_ALGORITHMS
        else None,
        public_key=public_key,
        device_id=certificate.device_id,
        extension=certificate.extension,
        renewed_from=certificate,
    )
    if request.revoke_previous:
        await revoke_certificates(
            session=session,
            ctx=ctx,
            outbox=outbox,
            ca=ca,
            certificates=[certificate],
            reason="superseded",
        )
    return renewed


async def revoke_certificates(
    *,
    session: AsyncSession,
    ctx: CaContext,
    outbox: Outbox,
    ca: CertificateAuthority,
    certificates: list[Certificate],
    reason: str,
) -> None:
    """Revokes certificates of one CA, re-signs its CRL once, and announces each."""
    if not certificates:
        return
    # Serialises CRL numbering between concurrent revocations of the same CA.
    await session.refresh(ca, with_for_update=True)
    now = _now()
    for cert in certificates:
        cert.revoked_at = now
        cert.revocation_reason = reason
        session.add(cert)
    await session.flush()
    await _write_crl(session=session, ctx=ctx, ca=ca, issuer=issuer_of(ctx=ctx, ca=ca))
    for cert in certificates:
        await outbox.add(
            session,
            CertRevoked(
                tenant_id=cert.tenant_id,
                certificate_id=cert.id,
                serial=cert.serial,
                reason=reason,
                revoked_at=now,
                device_id=cert.device_id,
                crl_number=ca.crl_number,
            ),
            tenant_id=cert.tenant_id,
        )


async def revoke_certificate(
    *,
    session: AsyncSession,
    ctx: CaContext,
    outbox: Outbox,
    certificate: Certificate,
    reason: str,
) -> None:
    """Revokes one device certificate."""
    if certificate.revoked_at is not None:
        raise Problem(409, "Already revoked", f"certificate {certificate.serial} is revoked")
    if certificate.kind != "device":
        raise Problem(
            409, "Not a device certificate", "the VPN server certificate goes with its CA"
        )
    ca = await require_ca(session=session, tenant_id=certificate.tenant_id)
    await revoke_certificates(
        session=session, ctx=ctx, outbox=outbox, ca=ca, certificates=[certificate], reason=reason
    )


async def revoke_device(
    *,
    session: AsyncSession,
    ctx: CaContext,
    outbox: Outbox,
    tenant_id: uuid.UUID,
    device_id: uuid.UUID,
) -> list[Certificate]:
    """Revokes every live certificate of a SIP device (it was deleted)."""
    rows = await session.execute(
        select(Certificate).where(
            Certificate.tenant_id == tenant_id,
            Certificate.device_id == device_id,
            Certificate.revoked_at.is_(None),  # type: ignore[union-attr]
        )
    )
    certificates = list(rows.scalars())
    ca = await find_ca(session=session, tenant_id=tenant_id)
    if ca is None or not certificates:
        return []
    await revoke_certificates(
        session=session,
        ctx=ctx,
        outbox=outbox,
        ca=ca,
        certificates=certificates,
        reason="cessation_of_operation",
    )
    return certificates


# -- the CRL ----------------------------------------------------------------------------


async def _write_crl(
    *, session: AsyncSession, ctx: CaContext, ca: CertificateAuthority, issuer: pki.Issuer
) -> None:
    now = _now()
    rows = await session.execute(
        select(Certificate.serial, Certificate.revoked_at, Certificate.revocation_reason).where(
            Certificate.ca_id == ca.id,
            Certificate.revoked_at.is_not(None),  # type: ignore[union-attr]
            # An expired certificate fails verification anyway (RFC 5280 5.1.2.6).
            Certificate.not_after > now,
        )
    )
    revoked = [
        pki.Revoked(serial=int(serial, 16), revoked_at=at, reason=reason or "unspecified")
        for serial, at, reason in rows.all()
    ]
    ca.crl_number += 1
    crl = pki.build_crl(
        issuer=issuer,
        number=ca.crl_number,
        revoked=revoked,
        days=ctx.settings.crl_validity_days,
        now=now,
    )
    ca.crl_pem = pki.crl_to_pem(crl)
    ca.crl_next_update = crl.next_update_utc or now
    session.add(ca)
    await session.flush()


async def fresh_crl(
    *, session: AsyncSession, ctx: CaContext, tenant_id: uuid.UUID
) -> CertificateAuthority:
    """The tenant's CA with a CRL re-signed if it is past half its lifetime."""
    ca = await require_ca(session=session, tenant_id=tenant_id)
    half = timedelta(days=ctx.settings.crl_validity_days) / 2
    if ca.crl_next_update - _now() < half:
        await session.refresh(ca, with_for_update=True)
        if ca.crl_next_update - _now() < half:
            await _write_crl(session=session, ctx=ctx, ca=ca, issuer=issuer_of(ctx=ctx, ca=ca))
    return ca


# -- OpenVPN profiles ------------------------------------------------------------------------


async def server_profile(
    *, session: AsyncSession, ctx: CaContext, tenant: TenantRef, crl_path: str
) -> str:
    """The OpenVPN server configuration for the tenant's endpoint (holds the server key)."""
    ca = await require_ca(session=session, tenant_id=tenant.tenant_id)
    if ca.server_certificate_id is None:
        raise Problem(409, "No server certificate", "the CA has no VPN server certificate")
    server = await session.get(Certificate, ca.server_certificate_id)
    assert server is not None and server.sealed_key is not None
    key = pki.key_from_der(ctx.vault.open(server.sealed_key, context=f"cert:{server.id}"))
    return server_config(
        tenant_slug=tenant.slug,
        endpoint=endpoint_of(ca),
        ca_pem=ca.certificate_pem + ca.chain_pem,
        cert_pem=server.certificate_pem,
        key_pem=pki.key_to_pem(key),
        tls_crypt_key=ctx.vault.open(ca.tls_crypt_sealed, context=f"tls-crypt:{ca.id}").decode(),
        crl_path=crl_path,
    )


async def client_material(
    *, session: AsyncSession, ctx: CaContext, certificate: Certificate
) -> tuple[Endpoint, ClientMaterial]:
    """Everything a device's profile carries: CA chain, its certificate and key, tls-crypt."""
    if certificate.kind != "device":
        raise Problem(409, "Not a device certificate", "profiles are made for device certificates")
    if certificate.sealed_key is None:
        raise Problem(
            409,
            "Key held by the device",
            "this certificate was issued from a CSR: the phone keeps its key, so no bundle carries it",
        )
    ca = await require_ca(session=session, tenant_id=certificate.tenant_id)
    server = await session.get(Certificate, ca.server_certificate_id)
    assert server is not None
    key = pki.key_from_der(ctx.vault.open(certificate.sealed_key, context=f"cert:{certificate.id}"))
    return endpoint_of(ca), ClientMaterial(
        common_name=certificate.common_name,
        server_name=server.common_name,
        ca_pem=ca.certificate_pem + ca.chain_pem,
        cert_pem=certificate.certificate_pem,
        key_pem=pki.key_to_pem(key),
        tls_crypt_key=ctx.vault.open(ca.tls_crypt_sealed, context=f"tls-crypt:{ca.id}").decode(),
    )


# -- KEK rotation -----------------------------------------------------------------------


async def reseal_all(*, session: AsyncSession, ctx: CaContext) -> int:
    """Re-seals every key still under a previous KEK; returns how many blobs changed."""
    vault, changed = ctx.vault, 0
    for ca in (await session.execute(select(CertificateAuthority).with_for_update())).scalars():
        if vault.needs_reseal(ca.sealed_key):
            ca.sealed_key = vault.reseal(ca.sealed_key, context=f"ca:{ca.id}")
            changed += 1
        if vault.needs_reseal(ca.tls_crypt_sealed):
            ca.tls_crypt_sealed = vault.reseal(ca.tls_crypt_sealed, context=f"tls-crypt:{ca.id}")
            changed += 1
        ca.kek_id = vault.kek_id.hex()
        session.add(ca)
    certificates = await session.execute(
        select(Certificate).where(Certificate.sealed_key.is_not(None)).with_for_update()  # type: ignore[union-attr]
    )
    for cert in certificates.scalars():
        assert cert.sealed_key is not None
        if vault.needs_reseal(cert.sealed_key):
            cert.sealed_key = vault.reseal(cert.sealed_key, context=f"cert:{cert.id}")
            session.add(cert)
            changed += 1
    await session.flush()
    return changed
