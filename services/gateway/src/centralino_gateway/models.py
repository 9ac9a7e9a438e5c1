"""The gateway service's tables: accounts, credentials, signing keys, webhooks."""

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import field_validator
from sqlalchemy import Column, DateTime, LargeBinary, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

from centralino_proto.auth import Role
from centralino_proto.db import service_registry
from centralino_proto.events import TenantKind

# A DNS label: the slug is also the first label of the tenant's SIP realm.
SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(*, nullable: bool, now: bool = False, index: bool = False) -> Any:
    """A timestamptz column; `now` defaults it to the current time."""
    column = Column(DateTime(timezone=True), nullable=nullable, index=index)
    if now:
        return Field(default_factory=utcnow, sa_column=column)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(sa_column=column)


class Model(SQLModel, registry=service_registry()):
    """Base of this service's tables (its own MetaData, migrated by its own Alembic)."""


# -- resellers -----------------------------------------------------------------


class ResellerBase(Model):
    name: str = Field(min_length=1, max_length=200)


class ResellerCreate(ResellerBase):
    # The reseller's first login.
    admin_email: str = Field(schema_extra={"pattern": EMAIL_PATTERN}, max_length=254)
    admin_password: str = Field(min_length=8, max_length=200)


class ResellerUpdate(Model):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    active: bool | None = None


class Reseller(ResellerBase, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    active: bool = True
    created_at: datetime = _ts(nullable=False, now=True)


class ResellerPublic(ResellerBase):
    id: uuid.UUID
    active: bool
    created_at: datetime


# -- tenants -------------------------------------------------------------------


class TenantBase(Model):
    name: str = Field(min_length=1, max_length=200)
    kind: TenantKind = Field(
        default=TenantKind.company, sa_column=Column(String(20), nullable=False)
    )
    timezone: str = Field(default="Europe/Rome", max_length=64)


class TenantCreate(TenantBase):
    slug: str = Field(schema_extra={"pattern": SLUG_PATTERN}, max_length=63)
    # The operator may place a tenant under a reseller; a reseller's own tenants are its own.
    reseller_id: uuid.UUID | None = None
    # Defaults to "<slug>.<SIP_REALM_DOMAIN>".
    sip_realm: str | None = Field(default=None, max_length=255)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _check_timezone(value)


class TenantUpdate(Model):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    kind: TenantKind | None = None
    timezone: str | None = Field(default=None, max_length=64)
    active: bool | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return None if value is None else _check_timezone(value)


class Tenant(TenantBase, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    slug: str = Field(max_length=63, unique=True)
    reseller_id: uuid.UUID | None = Field(default=None, foreign_key="reseller.id", index=True)
    sip_realm: str = Field(max_length=255, unique=True)
    active: bool = True
    created_at: datetime = _ts(nullable=False, now=True)
    updated_at: datetime = _ts(nullable=False, now=True)
    deleted_at: datetime | None = _ts(nullable=True)


class TenantPublic(TenantBase):
    id: uuid.UUID
    slug: str
    reseller_id: uuid.UUID | None
    sip_realm: str
    active: bool
    created_at: datetime


def _check_timezone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


# -- users ---------------------------------------------------------------------

TENANT_ROLES = (Role.tenant_admin, Role.tenant_user)


class UserBase(Model):
    email: str = Field(schema_extra={"pattern": EMAIL_PATTERN}, max_length=254)
    name: str = Field(default="", max_length=200)
    # The user's own extension (e.g. for click-to-dial from a CRM).
    extension: str | None = Field(default=None, schema_extra={"pattern": r"^[0-9]{2,8}$"})


class UserCreate(UserBase):
    password: str = Field(min_length=8, max_length=200)
    role: Role = Role.tenant_user


class UserUpdate(Model):
    name: str | None = Field(default=None, max_length=200)
    extension: str | None = Field(default=None, schema_extra={"pattern": r"^[0-9]{2,8}$"})
    password: str | None = Field(default=None, min_length=8, max_length=200)
    role: Role | None = None
    active: bool | None = None


class User(UserBase, table=True):
    __tablename__ = "user_account"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    email: str = Field(max_length=254, unique=True)
    password_hash: str
    role: str = Field(max_length=20)
    tenant_id: uuid.UUID | None = Field(default=None, foreign_key="tenant.id", index=True)
    reseller_id: uuid.UUID | None = Field(default=None, foreign_key="reseller.id", index=True)
    active: bool = True
    created_at: datetime = _ts(nullable=False, now=True)


class UserPublic(UserBase):
    id: uuid.UUID
    role: str
    tenant_id: uuid.UUID | None
    reseller_id: uuid.UUID | None
    active: bool
    created_at: datetime


# -- sessions: refresh tokens, revoked access tokens, failed logins -------------


class RefreshToken(Model, table=True):
    __tablename__ = "refresh_token"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # SHA-256 of the opaque token; the token itself is never stored.
    token_hash: str = Field(max_length=64, unique=True)
    # Every rotation of one login shares a family; reuse of a spent token revokes it all.
    family_id: uuid.UUID = Field(index=True)
    user_id: uuid.UUID = Field(foreign_key="user_account.id", index=True)
    created_at: datetime = _ts(nullable=False, now=True)
    expires_at: datetime = _ts(nullable=False)
    used_at: datetime | None = _ts(nullable=True)
    revoked_at: datetime | None = _ts(nullable=True)


class RevokedAccessToken(Model, table=True):
    __tablename__ = "revoked_access_token"
    jti: str = Field(primary_key=True, max_length=64)
    expires_at: datetime = _ts(nullable=False)


class LoginFailure(Model, table=True):
    __tablename__ = "login_failure"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    username: str = Field(max_length=254, index=True)
    client: str = Field(max_length=64, index=True)
    at: datetime = _ts(nullable=False, now=True, index=True)


# -- API keys ------------------------------------------------------------------

# Scopes are "<resource>:read" or "<resource>:write" ("calls:write", "cdrs:read"), or "*".
SCOPE_PATTERN = r"^(\*|[a-z][a-z0-9-]*:(read|write|\*))$"


class ApiKeyBase(Model):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(
        default_factory=lambda: ["*"], sa_column=Column(ARRAY(String(64)), nullable=False)
    )
    expires_at: datetime | None = _ts(nullable=True)


class ApiKeyCreate(ApiKeyBase):
    role: Role = Role.tenant_user

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        import re

        for scope in value:
            if not re.fullmatch(SCOPE_PATTERN, scope):
                raise ValueError(f"scope {scope!r} is not '<resource>:read|write' or '*'")
        if not value:
            raise ValueError("at least one scope")
        return sorted(set(value))

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # A naive time is taken as UTC.
        return value.replace(tzinfo=UTC) if value and value.tzinfo is None else value


class ApiKey(ApiKeyBase, table=True):
    __tablename__ = "api_key"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True)
    # The public part of the key ("ck_<prefix>_<secret>"), for lookup.
    prefix: str = Field(max_length=16, unique=True)
    secret_hash: str = Field(max_length=64)
    role: str = Field(max_length=20)
    created_by: str = Field(max_length=200)
    created_at: datetime = _ts(nullable=False, now=True)
    last_used_at: datetime | None = _ts(nullable=True)
    revoked_at: datetime | None = _ts(nullable=True)


class ApiKeyPublic(ApiKeyBase):
    id: uuid.UUID
    tenant_id: uuid.UUID
    prefix: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    # Shown once, at creation.
    key: str


# -- JWT signing keys ------------------------------------------------------------


class SigningKey(Model, table=True):
    __tablename__ = "signing_key"
    kid: str = Field(primary_key=True, max_length=64)
    algorithm: str = Field(max_length=10)
    public_jwk: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    # PKCS#8 PEM, AES-256-GCM encrypted under the key-encryption key.
    private_key_enc: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = _ts(nullable=False, now=True)
    # No longer signs from this moment; still verifies until `expires_at`.
    retired_at: datetime | None = _ts(nullable=True)
    expires_at: datetime | None = _ts(nullable=True)


class SigningKeyPublic(Model):
    kid: str
    algorithm: str
    created_at: datetime
    retired_at: datetime | None
    expires_at: datetime | None


# -- webhooks --------------------------------------------------------------------


class WebhookBase(Model):
    url: str = Field(max_length=2000)
    description: str = Field(default="", max_length=500)
    # Empty: every event type.
    event_types: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(String(100)), nullable=False)
    )


class WebhookCreate(WebhookBase):
    pass


class WebhookUpdate(Model):
    url: str | None = Field(default=None, max_length=2000)
    description: str | None = Field(default=None, max_length=500)
    event_types: list[str] | None = None
    # true re-enables a subscription disabled after repeated failures.
    active: bool | None = None


class WebhookSubscription(WebhookBase, table=True):
    __tablename__ = "webhook_subscription"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True)
    secret_enc: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # After a rotation the old secret also signs for a while, so receivers can switch over.
    previous_secret_enc: bytes | None = Field(
        default=None, sa_column=Column(LargeBinary, nullable=True)
    )
    previous_secret_until: datetime | None = _ts(nullable=True)
    active: bool = True
    disabled_reason: str | None = Field(default=None, max_length=500)
    consecutive_failures: int = 0
    created_at: datetime = _ts(nullable=False, now=True)
    updated_at: datetime = _ts(nullable=False, now=True)


class WebhookPublic(WebhookBase):
    id: uuid.UUID
    tenant_id: uuid.UUID
    active: bool
    disabled_reason: str | None
    consecutive_failures: int
    created_at: datetime


class WebhookCreated(WebhookPublic):
    # "whsec_..." (Standard Webhooks); shown once, at creation.
    secret: str


class WebhookDelivery(Model, table=True):
    __tablename__ = "webhook_delivery"
    __table_args__ = (UniqueConstraint("subscription_id", "event_id"),)
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    subscription_id: uuid.UUID = Field(foreign_key="webhook_subscription.id", index=True)
    tenant_id: uuid.UUID = Field(index=True)
    event_id: uuid.UUID
    event_type: str = Field(max_length=100)
    envelope: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    # pending -> delivered | failed (gave up after the last attempt)
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = _ts(nullable=False, now=True, index=True)
    created_at: datetime = _ts(nullable=False, now=True)
    delivered_at: datetime | None = _ts(nullable=True)


class WebhookAttempt(Model, table=True):
    __tablename__ = "webhook_attempt"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    delivery_id: uuid.UUID = Field(foreign_key="webhook_delivery.id", index=True)
    subscription_id: uuid.UUID = Field(index=True)
    attempt: int
    at: datetime = _ts(nullable=False, now=True)
    success: bool
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=500)
    duration_ms: int


class WebhookAttemptPublic(Model):
    id: uuid.UUID
    delivery_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    attempt: int
    at: datetime
    success: bool
    status_code: int | None
    error: str | None
    duration_ms: int


# -- Idempotency-Key ---------------------------------------------------------------


class IdempotencyRecord(Model, table=True):
    __tablename__ = "idempotency_record"
    # The caller (hash of its credential) and its key.
    principal: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=255)
    method: str = Field(max_length=10)
    path: str = Field(max_length=2000)
    request_hash: str = Field(max_length=64)
    # None while the first request is still running.
    status_code: int | None = None
    headers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    body: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    created_at: datetime = _ts(nullable=False, now=True, index=True)


class Page(Model):
    """One page of a list."""

    total: int
    limit: int
    offset: int
