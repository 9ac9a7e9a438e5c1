"""The vpn-ca service's tables: tenant CAs, certificates, provisioning tokens and their fetches."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum

import pydantic
from pydantic import BaseModel, field_validator
from sqlalchemy import BigInteger, Column, DateTime, Identity, LargeBinary, String
from sqlmodel import Field, SQLModel

from centralino_proto.db import service_registry

from .pki import REVOCATION_REASONS


class Model(SQLModel, registry=service_registry()):
    """Base of this service's tables (its own MetaData, migrated by its own Alembic)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(**kwargs: object) -> Column:
    return Column(DateTime(timezone=True), **kwargs)  # type: ignore[arg-type]


class KeyAlgorithm(StrEnum):
    ecdsa_p256 = "ecdsa-p256"
    rsa_2048 = "rsa-2048"
    rsa_3072 = "rsa-3072"


class VpnProtocol(StrEnum):
    udp = "udp"
    tcp = "tcp"


class TlsWrap(StrEnum):
    """How the OpenVPN control channel is wrapped with the tenant's static key."""

    tls_crypt = "tls-crypt"
    tls_auth = "tls-auth"
    none = "none"


# -- the tenant CA ("master" certificate) -------------------------------------


class VpnEndpoint(BaseModel):
    """Where a tenant's phones reach its OpenVPN server, and what the tunnel carries."""

    remote_host: str
    port: int
    protocol: VpnProtocol
    subnet: str
    sip_edge: str
    tls_wrap: TlsWrap


class VpnEndpointUpdate(BaseModel):
    remote_host: str | None = pydantic.Field(
        None,
        min_length=1,
        max_length=253,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9.:-]*$",
        description="host name or IP address the phones connect to",
    )
    port: int | None = pydantic.Field(None, ge=1, le=65535)
    protocol: VpnProtocol | None = None
    subnet: str | None = pydantic.Field(None, description="private IPv4 CIDR, /16 to /29")
    sip_edge: str | None = pydantic.Field(
        None, description="IPv4 address pushed to clients as a route"
    )
    tls_wrap: TlsWrap | None = pydantic.Field(
        None, description="tls-crypt (default), tls-auth for older firmwares, none"
    )


class CertificateAuthorityCreate(BaseModel):
    key_algorithm: KeyAlgorithm | None = None
    endpoint: VpnEndpointUpdate | None = None


class CertificateAuthorityUpdate(BaseModel):
    endpoint: VpnEndpointUpdate


class CertificateAuthority(Model, table=True):
    __tablename__ = "certificate_authority"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # One CA per tenant.
    tenant_id: uuid.UUID = Field(unique=True)
    subject: str
    key_algorithm: str = Field(max_length=20)
    serial: str = Field(max_length=64)
    certificate_pem: str
    # The issuer's chain above this CA (the operator root), empty when self-signed.
    chain_pem: str = ""
    # PKCS#8 DER sealed under the KEK; never leaves the service.
    sealed_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    kek_id: str = Field(max_length=16)
    tls_crypt_sealed: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    not_before: datetime = Field(sa_column=_ts(nullable=False))
    not_after: datetime = Field(sa_column=_ts(nullable=False))
    crl_number: int = 0
    crl_pem: str
    crl_next_update: datetime = Field(sa_column=_ts(nullable=False))
    server_certificate_id: uuid.UUID | None = None
    vpn_remote_host: str = Field(max_length=253)
    vpn_port: int
    vpn_protocol: str = Field(max_length=3)
    vpn_subnet: str = Field(max_length=18, unique=True)
    sip_edge: str = Field(max_length=45)
    tls_wrap: str = Field(default="tls-crypt", max_length=10)
    created_at: datetime = Field(default_factory=_now, sa_column=_ts(nullable=False))


class CertificateAuthorityPublic(SQLModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    subject: str
    key_algorithm: str
    serial: str
    fingerprint_sha256: str
    certificate_pem: str
    chain_pem: str
    not_before: datetime
    not_after: datetime
    crl_number: int
    crl_next_update: datetime
    endpoint: VpnEndpoint
    created_at: datetime


# -- device and server certificates ("slave" certificates) ---------------------


class CertificateKind(StrEnum):
    device = "device"
    server = "server"


class CertificateStatus(StrEnum):
    valid = "valid"
    revoked = "revoked"
    expired = "expired"


class RevocationReason(StrEnum):
    unspecified = "unspecified"
    key_compromise = "key_compromise"
    affiliation_changed = "affiliation_changed"
    superseded = "superseded"
    cessation_of_operation = "cessation_of_operation"
    privilege_withdrawn = "privilege_withdrawn"


assert {r.value for r in RevocationReason} == set(REVOCATION_REASONS)


class CertificateBase(BaseModel):
    common_name: str | None = pydantic.Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$",
        description="defaults to the CSR's CN, else the device id, else the certificate id",
    )
    device_id: uuid.UUID | None = pydantic.Field(None, description="the registrar's SIP device")
    extension: str | None = pydantic.Field(
        None, min_length=1, max_length=32, pattern=r"^[0-9A-Za-z*#+_.-]+$"
    )


class CertificateCreate(CertificateBase):
    csr: str | None = pydantic.Field(
        None, max_length=16384, description="PEM CSR made by the phone; else a key is made here"
    )
    key_algorithm: KeyAlgorithm | None = None
    validity_days: int | None = pydantic.Field(None, ge=1, le=3650)


class CertificateRenew(BaseModel):
    csr: str | None = pydantic.Field(
        None, max_length=16384, description="a new CSR; else the same public key, or a new key"
    )
    validity_days: int | None = pydantic.Field(None, ge=1, le=3650)
    revoke_previous: bool = False


class CertificateRevoke(BaseModel):
    reason: RevocationReason = RevocationReason.unspecified


class Certificate(Model, table=True):
    __tablename__ = "certificate"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(index=True)
    ca_id: uuid.UUID = Field(foreign_key="certificate_authority.id", index=True)
    kind: str = Field(max_length=10)
    serial: str = Field(max_length=64, unique=True)
    common_name: str = Field(max_length=64)
    subject: str
    device_id: uuid.UUID | None = Field(None, index=True)
    extension: str | None = Field(None, max_length=32)
    key_algorithm: str = Field(max_length=20)
    # "generated" keys are sealed here so bundles can carry them; "csr" keys never came here.
    key_origin: str = Field(max_length=10)
    sealed_key: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    certificate_pem: str
    not_before: datetime = Field(sa_column=_ts(nullable=False))
    not_after: datetime = Field(sa_column=_ts(nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    revocation_reason: str | None = Field(default=None, max_length=32)
    renewed_from_id: uuid.UUID | None = Field(None, foreign_key="certificate.id")
    created_at: datetime = Field(default_factory=_now, sa_column=_ts(nullable=False))

    def status_at(self, when: datetime) -> CertificateStatus:
        if self.revoked_at is not None:
            return CertificateStatus.revoked
        return CertificateStatus.expired if self.not_after <= when else CertificateStatus.valid


class CertificatePublic(SQLModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    kind: CertificateKind
    serial: str
    common_name: str
    subject: str
    device_id: uuid.UUID | None
    extension: str | None
    key_algorithm: str
    key_origin: str
    status: CertificateStatus
    certificate_pem: str
    fingerprint_sha256: str
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    revocation_reason: str | None
    renewed_from_id: uuid.UUID | None
    created_at: datetime


# -- remote provisioning --------------------------------------------------------


class ProvisioningTokenCreate(BaseModel):
    certificate_id: uuid.UUID
    model: str = pydantic.Field("generic", min_length=1, max_length=40)
    ttl_seconds: int | None = pydantic.Field(None, ge=60, le=30 * 86400)

    @field_validator("model")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()


class ProvisioningToken(Model, table=True):
    __tablename__ = "provisioning_token"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(index=True)
    certificate_id: uuid.UUID = Field(foreign_key="certificate.id", index=True)
    model: str = Field(max_length=40)
    # SHA-256 of the token: a database dump does not hand out bundles.
    token_hash: str = Field(max_length=64, unique=True)
    expires_at: datetime = Field(sa_column=_ts(nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=_now, sa_column=_ts(nullable=False))


class ProvisioningFetch(Model, table=True):
    """Every fetch of /v1/provisioning/{token}, served or refused."""

    __tablename__ = "provisioning_fetch"

    id: int | None = Field(
        default=None, sa_column=Column(BigInteger, Identity(always=True), primary_key=True)
    )
    token_id: uuid.UUID | None = Field(None, foreign_key="provisioning_token.id", index=True)
    tenant_id: uuid.UUID | None = None
    outcome: str = Field(sa_column=Column(String(10), nullable=False))
    status: int
    remote_addr: str | None = Field(None, max_length=64)
    # The phone's own address as the gateway in front saw it.
    forwarded_for: str | None = Field(None, max_length=64)
    user_agent: str | None = Field(None, max_length=300)
    at: datetime = Field(default_factory=_now, sa_column=_ts(nullable=False))


class ProvisioningFetchPublic(SQLModel):
    outcome: str
    status: int
    remote_addr: str | None
    forwarded_for: str | None
    user_agent: str | None
    at: datetime


class ProvisioningTokenPublic(SQLModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    certificate_id: uuid.UUID
    model: str
    expires_at: datetime
    used_at: datetime | None
    created_by: str
    created_at: datetime
    fetches: list[ProvisioningFetchPublic] = []


class ProvisioningTokenIssued(ProvisioningTokenPublic):
    """Returned once, at creation: the token itself is not stored."""

    token: str
    url: str
