"""Who is calling (JWT or API key) and which tenant they may act on."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from centralino_proto.auth import Claims, InvalidToken, Role
from centralino_proto.service import ServiceRuntime
from centralino_proto.web import Problem, SessionDep

from .caches import RevocationList, TenantScopes
from .config import Settings
from .keys import Keyring
from .models import ApiKey, Tenant, utcnow
from .security import same_digest, split_api_key

_bearer = HTTPBearer(auto_error=False, description="An access token, or an API key (ck_...)")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False)


@dataclass(frozen=True)
class Principal:
    """The verified caller, and the Authorization header to carry to the owning service."""

    claims: Claims
    authorization: str
    api_key_id: uuid.UUID | None = None

    def has_scope(self, resource: str, action: str) -> bool:
        """API keys carry scopes; a user's own token may do what its role allows."""
        if self.api_key_id is None:
            return True
        granted = set(self.claims.scopes)
        return bool({"*", f"{resource}:*", f"{resource}:{action}"} & granted)


def runtime_of(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


def keyring_of(request: Request) -> Keyring:
    keyring: Keyring = runtime_of(request).extras["keyring"]
    return keyring


def revocations_of(request: Request) -> RevocationList:
    revocations: RevocationList = runtime_of(request).extras["revocations"]
    return revocations


def scopes_of(request: Request) -> TenantScopes:
    scopes: TenantScopes = runtime_of(request).extras["tenant_scopes"]
    return scopes


def settings_of(request: Request) -> Settings:
    settings: Settings = runtime_of(request).settings
    return settings


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


async def _from_api_key(request: Request, session: AsyncSession, key: str) -> Principal:
    parts = split_api_key(key)
    if parts is None:
        raise _unauthorized("malformed API key")
    prefix, secret = parts
    row = (await session.scalars(select(ApiKey).where(col(ApiKey.prefix) == prefix))).first()
    now = utcnow()
    if (
        row is None
        or not same_digest(secret, row.secret_hash)
        or row.revoked_at is not None
        or (row.expires_at is not None and row.expires_at <= now)
    ):
        raise _unauthorized("unknown, revoked or expired API key")
    tenant = await session.get(Tenant, row.tenant_id)
    if tenant is None or not tenant.active or tenant.deleted_at is not None:
        raise _unauthorized("the API key's tenant is not active")
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        # Coarse on purpose: one write a minute per key, not one per request.
        await session.execute(
            update(ApiKey).where(col(ApiKey.id) == row.id).values(last_used_at=now)
        )
        await session.commit()
    token, claims = keyring_of(request).sign(
        sub=f"apikey:{row.id}",
        role=Role(row.role),
        tenant_id=row.tenant_id,
        scopes=list(row.scopes),
        ttl=settings_of(request).api_key_token_seconds,
    )
    return Principal(claims=claims, authorization=f"Bearer {token}", api_key_id=row.id)


async def get_principal(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """The caller: a bearer JWT, or an API key (as bearer or in X-API-Key); 401 otherwise."""
    if api_key:
        return await _from_api_key(request, session, api_key)
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("a bearer token or an API key is required")
    token = credentials.credentials
    if split_api_key(token) is not None:
        return await _from_api_key(request, session, token)
    try:
        claims = await runtime_of(request).verifier.verify(token)
    except InvalidToken as exc:
        raise _unauthorized(str(exc)) from exc
    if claims.jti and await revocations_of(request).contains(claims.jti):
        raise _unauthorized("token revoked")
    return Principal(claims=claims, authorization=f"Bearer {token}")


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def find_tenant(session: AsyncSession, ref: str) -> Tenant | None:
    """A live tenant by id or slug."""
    try:
        tenant = await session.get(Tenant, uuid.UUID(ref))
    except ValueError:
        tenant = (
            await session.scalars(select(Tenant).where(col(Tenant.slug) == ref.lower()))
        ).first()
    if tenant is None or tenant.deleted_at is not None:
        return None
    return tenant


def visible(principal: Principal, tenant: Tenant) -> bool:
    return principal.claims.may_access(tenant_id=tenant.id, tenant_reseller_id=tenant.reseller_id)


async def tenant_for(session: AsyncSession, principal: Principal, ref: str) -> Tenant:
    """The tenant the caller names, if it may act on it; 404 otherwise (no probing)."""
    tenant = await find_tenant(session, ref)
    if tenant is None or not visible(principal, tenant):
        raise Problem(404, "Tenant not found", f"no tenant {ref} visible to this token")
    return tenant


async def current_tenant(tenant: str, principal: PrincipalDep, session: SessionDep) -> Tenant:
    return await tenant_for(session, principal, tenant)


TenantDep = Annotated[Tenant, Depends(current_tenant)]


def require_scope(principal: Principal, resource: str, action: str) -> None:
    if not principal.has_scope(resource, action):
        raise Problem(403, "Forbidden", f"this API key lacks the scope {resource}:{action}")


def require_manager(principal: Principal, resource: str, action: str = "write") -> None:
    """Managing a tenant's users, keys and webhooks: its admins, its reseller, the operator."""
    require_scope(principal, resource, action)
    if principal.claims.role is Role.tenant_user:
        raise Problem(403, "Forbidden", f"a tenant user may not manage {resource}")


def require_role(principal: Principal, *roles: Role) -> None:
    if principal.claims.role not in roles:
        raise Problem(403, "Forbidden", "this needs the role " + " or ".join(str(r) for r in roles))
