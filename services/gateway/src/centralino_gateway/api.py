"""The gateway's own HTTP API: auth, JWKS, resellers, tenants, users, API keys, webhooks, live events."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func, select
from sqlmodel import col
from sse_starlette import EventSourceResponse, ServerSentEvent

from centralino_proto.auth import Claims, Role
from centralino_proto.events import event_types
from centralino_proto.web import Problem, SessionDep

from . import accounts, sessions, webhooks
from .deps import (
    PrincipalDep,
    TenantDep,
    keyring_of,
    require_manager,
    require_role,
    require_scope,
    revocations_of,
    runtime_of,
    scopes_of,
    settings_of,
)
from .keys import Sealer
from .live import LiveHub
from .models import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    ResellerCreate,
    ResellerPublic,
    ResellerUpdate,
    SigningKey,
    SigningKeyPublic,
    TenantCreate,
    TenantPublic,
    TenantUpdate,
    User,
    UserCreate,
    UserPublic,
    UserUpdate,
    WebhookAttemptPublic,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
    WebhookUpdate,
    utcnow,
)
from .proxy import forward
from .security import new_api_key

T = TypeVar("T")

router = APIRouter(prefix="/v1")
wellknown = APIRouter()

Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="items to skip")]


class Paged(BaseModel, Generic[T]):
    """One page of a list: `items`, and `total` matching the filters."""

    items: list[T]
    total: int
    limit: int
    offset: int


def _page(
    items: Any, total: int, limit: int, offset: int, model: type[BaseModel]
) -> dict[str, Any]:
    return {
        "items": [model.model_validate(i, from_attributes=True) for i in items],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


# -- auth ------------------------------------------------------------------------------


class TokenRequest(BaseModel):
    """OAuth 2 token request (RFC 6749): password, refresh_token or client_credentials."""

    model_config = ConfigDict(extra="ignore")

    grant_type: Literal["password", "refresh_token", "client_credentials"] | None = None
    username: str | None = Field(default=None, max_length=254)
    password: str | None = Field(default=None, max_length=200)
    refresh_token: str | None = Field(default=None, max_length=200)
    client_id: str | None = Field(default=None, max_length=100)
    client_secret: str | None = Field(default=None, max_length=500)
    scope: str | None = Field(default=None, max_length=500)


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int
    refresh_token: str | None = None


class RevokeRequest(BaseModel):
    token: str = Field(min_length=1, max_length=4000)
    token_type_hint: str | None = Field(default=None, max_length=50)


_TOKEN_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": TokenRequest.model_json_schema()},
            "application/x-www-form-urlencoded": {"schema": TokenRequest.model_json_schema()},
        },
    }
}


async def _token_request(request: Request) -> TokenRequest:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if (
            content_type == "application/x-www-form-urlencoded"
            or content_type == "multipart/form-data"
        ):
            form = await request.form()
            raw: Any = {k: v for k, v in form.items() if isinstance(v, str)}
        else:
            raw = json.loads(await request.body() or b"null")
        return TokenRequest.model_validate(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        errors = exc.errors() if isinstance(exc, ValidationError) else []
        raise Problem(
            422,
            "Invalid request",
            "expected a JSON object or form fields: grant_type, username, password, ...",
            error="invalid_request",
            errors=[{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors],
        ) from exc


@router.post(
    "/auth/token",
    response_model=TokenResponse,
    openapi_extra=_TOKEN_BODY,
    tags=["auth"],
    responses={
        401: {"description": "wrong credentials"},
        429: {"description": "too many failures"},
    },
)
async def issue_token(request: Request, session: SessionDep) -> dict[str, Any]:
    """Logs in (password), refreshes (refresh_token) or issues a service token (client_credentials)."""
    body = await _token_request(request)
    settings = settings_of(request)
    keyring = keyring_of(request)
    grant = body.grant_type or (
        "refresh_token" if body.refresh_token and not body.username else "password"
    )
    if grant == "client_credentials":
        if not body.client_id or body.client_secret is None:
            raise Problem(
                422,
                "Invalid request",
                "client_id and client_secret are required",
                error="invalid_request",
            )
        return sessions.client_credentials_grant(
            keyring=keyring,
            settings=settings,
            client_id=body.client_id,
            client_secret=body.client_secret,
        )
    if grant == "refresh_token":
        if not body.refresh_token:
            raise Problem(
                422, "Invalid request", "refresh_token is required", error="invalid_request"
            )
        tokens = await sessions.refresh_grant(
            session=session, keyring=keyring, settings=settings, refresh_token=body.refresh_token
        )
    else:
        if not body.username or body.password is None:
            raise Problem(
                422,
                "Invalid request",
                "username and password are required",
                error="invalid_request",
            )
        client = request.client.host if request.client else "unknown"
        tokens = await sessions.password_grant(
            session=session,
            keyring=keyring,
            settings=settings,
            username=body.username,
            password=body.password,
            client=client,
        )
    await session.commit()
    return tokens


@router.post("/auth/revoke", status_code=200, tags=["auth"])
async def revoke_token(
    body: RevokeRequest, request: Request, session: SessionDep
) -> dict[str, str]:
    """Revokes a refresh token (and its session) or an access token; unknown tokens are ignored."""
    jti = await sessions.revoke(session=session, keyring=keyring_of(request), token=body.token)
    await session.commit()
    if jti:
        revocations_of(request).add(jti)
    return {"status": "revoked"}


@router.get("/auth/me", response_model=Claims, tags=["auth"])
async def whoami(principal: PrincipalDep) -> Claims:
    """The claims of the caller's token."""
    return principal.claims


@router.get("/auth/signing-keys", response_model=list[SigningKeyPublic], tags=["auth"])
async def list_signing_keys(principal: PrincipalDep, session: SessionDep) -> Any:
    """The JWT signing keys, newest first (operator)."""
    require_role(principal, Role.operator)
    rows = await session.scalars(select(SigningKey).order_by(col(SigningKey.created_at).desc()))
    return rows.all()


@router.post("/auth/signing-keys/rotate", status_code=201, tags=["auth"])
async def rotate_signing_key(request: Request, principal: PrincipalDep) -> dict[str, str]:
    """Starts signing with a new key; the old one verifies until its grace period ends (operator)."""
    require_role(principal, Role.operator)
    return {"kid": await keyring_of(request).rotate()}


@wellknown.get("/.well-known/jwks.json", tags=["auth"])
async def jwks(request: Request) -> Response:
    """The public keys every service verifies tokens with."""
    keyring = keyring_of(request)
    await keyring.fresh()
    return Response(
        json.dumps(keyring.jwks()),
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=60"},
    )


# -- resellers ---------------------------------------------------------------------------


@router.get("/resellers", response_model=Paged[ResellerPublic], tags=["resellers"])
async def list_resellers(
    principal: PrincipalDep, session: SessionDep, limit: Limit = 50, offset: Offset = 0
) -> Any:
    """Resellers: all for the operator, its own for a reseller."""
    rows, total = await accounts.list_resellers(
        session=session, claims=principal.claims, limit=limit, offset=offset
    )
    return _page(rows, total, limit, offset, ResellerPublic)


@router.post("/resellers", response_model=ResellerPublic, status_code=201, tags=["resellers"])
async def create_reseller(
    data: ResellerCreate, principal: PrincipalDep, session: SessionDep
) -> Any:
    """Creates a reseller and its first login (operator)."""
    require_role(principal, Role.operator)
    reseller = await accounts.create_reseller(session=session, data=data)
    await session.commit()
    return reseller


@router.get("/resellers/{reseller_id}", response_model=ResellerPublic, tags=["resellers"])
async def get_reseller(reseller_id: uuid.UUID, principal: PrincipalDep, session: SessionDep) -> Any:
    """One reseller."""
    return await accounts.get_reseller(
        session=session, claims=principal.claims, reseller_id=reseller_id
    )


@router.patch("/resellers/{reseller_id}", response_model=ResellerPublic, tags=["resellers"])
async def update_reseller(
    reseller_id: uuid.UUID, data: ResellerUpdate, principal: PrincipalDep, session: SessionDep
) -> Any:
    """Renames or (de)activates a reseller (operator)."""
    reseller = await accounts.get_reseller(
        session=session, claims=principal.claims, reseller_id=reseller_id
    )
    require_role(principal, Role.operator)
    reseller = await accounts.update_reseller(session=session, reseller=reseller, data=data)
    await session.commit()
    return reseller


# -- tenants -----------------------------------------------------------------------------


@router.get("/tenants", response_model=Paged[TenantPublic], tags=["tenants"])
async def list_tenants(
    principal: PrincipalDep,
    session: SessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
    q: Annotated[str | None, Query(max_length=100, description="in slug or name")] = None,
    reseller_id: uuid.UUID | None = None,
    kind: Annotated[str | None, Query(max_length=20)] = None,
    active: bool | None = None,
) -> Any:
    """The tenants the caller may see (a reseller: its own; a tenant: itself)."""
    require_scope(principal, "tenant", "read")
    rows, total = await accounts.list_tenants(
        session=session,
        claims=principal.claims,
        limit=limit,
        offset=offset,
        q=q,
        reseller_id=reseller_id,
        kind=kind,
        active=active,
    )
    return _page(rows, total, limit, offset, TenantPublic)


@router.post("/tenants", response_model=TenantPublic, status_code=201, tags=["tenants"])
async def create_tenant(
    data: TenantCreate, request: Request, principal: PrincipalDep, session: SessionDep
) -> Any:
    """Creates a tenant (operator or reseller) and publishes tenant.created."""
    tenant = await accounts.create_tenant(
        session=session,
        outbox=runtime_of(request).outbox,
        claims=principal.claims,
        data=data,
        realm_domain=settings_of(request).sip_realm_domain,
    )
    await session.commit()
    return tenant


@router.get("/tenants/{tenant}", response_model=TenantPublic, tags=["tenants"])
async def get_tenant(tenant: TenantDep, principal: PrincipalDep) -> Any:
    """One tenant, by id or slug."""
    require_scope(principal, "tenant", "read")
    return tenant


@router.patch("/tenants/{tenant}", response_model=TenantPublic, tags=["tenants"])
async def update_tenant(
    tenant: TenantDep,
    data: TenantUpdate,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
) -> Any:
    """Changes a tenant; publishes tenant.updated."""
    require_scope(principal, "tenant", "write")
    tenant = await accounts.update_tenant(
        session=session,
        outbox=runtime_of(request).outbox,
        claims=principal.claims,
        tenant=tenant,
        data=data,
    )
    await session.commit()
    scopes_of(request).forget(tenant)
    return tenant


@router.delete("/tenants/{tenant}", status_code=204, tags=["tenants"])
async def delete_tenant(
    tenant: TenantDep, request: Request, principal: PrincipalDep, session: SessionDep
) -> Response:
    """Closes a tenant (operator or its reseller); publishes tenant.deleted."""
    require_scope(principal, "tenant", "write")
    await accounts.delete_tenant(
        session=session, outbox=runtime_of(request).outbox, claims=principal.claims, tenant=tenant
    )
    await session.commit()
    scopes_of(request).forget(tenant)
    return Response(status_code=204)


# -- users -------------------------------------------------------------------------------


@router.get("/tenants/{tenant}/users", response_model=Paged[UserPublic], tags=["users"])
async def list_users(
    tenant: TenantDep,
    principal: PrincipalDep,
    session: SessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
    q: Annotated[str | None, Query(max_length=100)] = None,
) -> Any:
    """A tenant's users."""
    require_manager(principal, "users", "read")
    rows, total = await accounts.list_users(
        session=session, tenant=tenant, limit=limit, offset=offset, q=q
    )
    return _page(rows, total, limit, offset, UserPublic)


@router.post("/tenants/{tenant}/users", response_model=UserPublic, status_code=201, tags=["users"])
async def create_user(
    tenant: TenantDep,
    data: UserCreate,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
) -> Any:
    """Adds a user to a tenant; publishes user.created."""
    require_manager(principal, "users")
    user = await accounts.create_user(
        session=session, outbox=runtime_of(request).outbox, tenant=tenant, data=data
    )
    await session.commit()
    return user


@router.get("/tenants/{tenant}/users/{user_id}", response_model=UserPublic, tags=["users"])
async def get_user(
    tenant: TenantDep, user_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> Any:
    """One user (a tenant user may read only itself)."""
    if principal.claims.sub != str(user_id):
        require_manager(principal, "users", "read")
    return await accounts.get_user(session=session, tenant=tenant, user_id=user_id)


@router.patch("/tenants/{tenant}/users/{user_id}", response_model=UserPublic, tags=["users"])
async def update_user(
    tenant: TenantDep,
    user_id: uuid.UUID,
    data: UserUpdate,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
) -> Any:
    """Changes a user; publishes user.updated."""
    require_manager(principal, "users")
    user = await accounts.get_user(session=session, tenant=tenant, user_id=user_id)
    user = await accounts.update_user(
        session=session, outbox=runtime_of(request).outbox, user=user, data=data
    )
    await session.commit()
    return user


@router.delete("/tenants/{tenant}/users/{user_id}", status_code=204, tags=["users"])
async def delete_user(
    tenant: TenantDep,
    user_id: uuid.UUID,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
) -> Response:
    """Removes a user; publishes user.deleted."""
    require_manager(principal, "users")
    user = await accounts.get_user(session=session, tenant=tenant, user_id=user_id)
    await accounts.delete_user(session=session, outbox=runtime_of(request).outbox, user=user)
    await session.commit()
    return Response(status_code=204)


# -- API keys ------------------------------------------------------------------------------


def _no_api_key(principal: PrincipalDep) -> None:
    if principal.api_key_id is not None:
        raise Problem(403, "Forbidden", "an API key cannot manage API keys")


@router.get("/tenants/{tenant}/api-keys", response_model=Paged[ApiKeyPublic], tags=["api keys"])
async def list_api_keys(
    tenant: TenantDep,
    principal: PrincipalDep,
    session: SessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
    revoked: bool | None = None,
) -> Any:
    """A tenant's API keys (never the secrets)."""
    _no_api_key(principal)
    require_manager(principal, "api-keys", "read")
    query = select(ApiKey).where(col(ApiKey.tenant_id) == tenant.id)
    if revoked is not None:
        query = query.where(
            col(ApiKey.revoked_at).is_not(None) if revoked else col(ApiKey.revoked_at).is_(None)
        )
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(query.order_by(col(ApiKey.created_at)).limit(limit).offset(offset))
    return _page(rows.all(), total or 0, limit, offset, ApiKeyPublic)


@router.post(
    "/tenants/{tenant}/api-keys", response_model=ApiKeyCreated, status_code=201, tags=["api keys"]
)
async def create_api_key(
    tenant: TenantDep, data: ApiKeyCreate, principal: PrincipalDep, session: SessionDep
) -> Any:
    """A new API key for a CRM; the key is in this answer only."""
    _no_api_key(principal)
    require_manager(principal, "api-keys")
    if data.role not in (Role.tenant_admin, Role.tenant_user):
        raise Problem(422, "Invalid role", "an API key acts as tenant_admin or tenant_user")
    if data.expires_at is not None and data.expires_at <= utcnow():
        raise Problem(422, "Invalid expiry", "expires_at is in the past")
    key, prefix, digest = new_api_key()
    row = ApiKey(
        tenant_id=tenant.id,
        name=data.name,
        scopes=data.scopes,
        expires_at=data.expires_at,
        role=data.role.value,
        prefix=prefix,
        secret_hash=digest,
        created_by=principal.claims.sub,
    )
    session.add(row)
    await session.commit()
    return {**ApiKeyPublic.model_validate(row, from_attributes=True).model_dump(), "key": key}


@router.delete("/tenants/{tenant}/api-keys/{key_id}", status_code=204, tags=["api keys"])
async def revoke_api_key(
    tenant: TenantDep, key_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> Response:
    """Revokes an API key at once."""
    _no_api_key(principal)
    require_manager(principal, "api-keys")
    row = await session.get(ApiKey, key_id)
    if row is None or row.tenant_id != tenant.id:
        raise Problem(404, "API key not found", f"no API key {key_id} in {tenant.slug}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        await session.commit()
    return Response(status_code=204)


# -- webhooks ------------------------------------------------------------------------------


def _sealer(request: Request) -> Sealer:
    sealer: Sealer = runtime_of(request).extras["sealer"]
    return sealer


@router.get("/event-types", tags=["webhooks"])
async def list_event_types() -> dict[str, list[str]]:
    """The event types a webhook may subscribe to."""
    return {"items": sorted(event_types())}


@router.get("/tenants/{tenant}/webhooks", response_model=Paged[WebhookPublic], tags=["webhooks"])
async def list_webhooks(
    tenant: TenantDep,
    principal: PrincipalDep,
    session: SessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
    active: bool | None = None,
) -> Any:
    """A tenant's webhook subscriptions."""
    require_manager(principal, "webhooks", "read")
    rows, total = await webhooks.list_subscriptions(
        session=session, tenant=tenant, limit=limit, offset=offset, active=active
    )
    return _page(rows, total, limit, offset, WebhookPublic)


@router.post(
    "/tenants/{tenant}/webhooks", response_model=WebhookCreated, status_code=201, tags=["webhooks"]
)
async def create_webhook(
    tenant: TenantDep,
    data: WebhookCreate,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
) -> Any:
    """Subscribes a URL to the tenant's events; the signing secret is in this answer only."""
    require_manager(principal, "webhooks")
    sub, secret = await webhooks.create_subscription(
        session=session,
        sealer=_sealer(request),
        settings=settings_of(request),
        tenant=tenant,
        data=data,
    )
    await session.commit()
    return {
        **WebhookPublic.model_validate(sub, from_attributes=True).model_dump(),
        "secret": secret,
    }


@router.get(
    "/tenants/{tenant}/webhooks/{webhook_id}", response_model=WebhookPublic, tags=["webhooks"]
)
async def get_webhook(
    tenant: TenantDep, webhook_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> Any:
    """One subscription."""
    require_manager(principal, "webhooks", "read")
    return await webhooks.get_subscription(
        session=session, tenant=tenant, subscription_id=webhook_id
    )


@router.patch(
    "/tenants/{tenant}/webhooks/{webhook_id}", response_model=WebhookPublic, tags=["webhooks"]
)
async def update_webhook(
    tenant: TenantDep,
    webhook_id: uuid.UUID,
    data: WebhookUpdate,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
) -> Any:
    """Changes a subscription; `{"active": true}` re-enables a disabled one."""
    require_manager(principal, "webhooks")
    sub = await webhooks.get_subscription(
        session=session, tenant=tenant, subscription_id=webhook_id
    )
    sub = await webhooks.update_subscription(
        session=session, settings=settings_of(request), sub=sub, data=data
    )
    await session.commit()
    deliverer = runtime_of(request).extras.get("deliverer")
    if isinstance(deliverer, webhooks.Deliverer):
        deliverer.wake()
    return sub


@router.delete("/tenants/{tenant}/webhooks/{webhook_id}", status_code=204, tags=["webhooks"])
async def delete_webhook(
    tenant: TenantDep, webhook_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> Response:
    """Removes a subscription and its delivery log."""
    require_manager(principal, "webhooks")
    sub = await webhooks.get_subscription(
        session=session, tenant=tenant, subscription_id=webhook_id
    )
    await webhooks.delete_subscription(session=session, sub=sub)
    await session.commit()
    return Response(status_code=204)


class WebhookSecret(BaseModel):
    secret: str
    previous_valid_until: datetime


@router.post(
    "/tenants/{tenant}/webhooks/{webhook_id}/rotate-secret",
    response_model=WebhookSecret,
    tags=["webhooks"],
)
async def rotate_webhook_secret(
    tenant: TenantDep,
    webhook_id: uuid.UUID,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
) -> Any:
    """A new signing secret, shown once; deliveries carry both signatures until the old one lapses."""
    require_manager(principal, "webhooks")
    sub = await webhooks.get_subscription(
        session=session, tenant=tenant, subscription_id=webhook_id
    )
    overlap = timedelta(seconds=settings_of(request).webhook_secret_overlap_seconds)
    secret = await webhooks.rotate_secret(
        session=session, sealer=_sealer(request), sub=sub, overlap=overlap
    )
    until = sub.previous_secret_until
    await session.commit()
    return {"secret": secret, "previous_valid_until": until}


@router.get(
    "/tenants/{tenant}/webhooks/{webhook_id}/attempts",
    response_model=Paged[WebhookAttemptPublic],
    tags=["webhooks"],
)
async def list_webhook_attempts(
    tenant: TenantDep,
    webhook_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
    success: bool | None = None,
) -> Any:
    """Every delivery attempt to this subscription, newest first."""
    require_manager(principal, "webhooks", "read")
    sub = await webhooks.get_subscription(
        session=session, tenant=tenant, subscription_id=webhook_id
    )
    rows, total = await webhooks.list_attempts(
        session=session, sub=sub, limit=limit, offset=offset, success=success
    )
    return {"items": rows, "total": total, "limit": limit, "offset": offset}


# -- click-to-dial and live events -------------------------------------------------------------


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


class CallRequest(BaseModel):
    """Rings `extension` first, then calls `destination` (RFC 3725 third-party call control)."""

    extension: str = Field(pattern=r"^[0-9]{2,8}$")
    destination: str = Field(pattern=r"^\+?[0-9*#]{2,32}$")


@router.post(
    "/tenants/{tenant}/calls",
    status_code=202,
    tags=["calls"],
    response_class=Response,
    responses={202: {"description": 'the registrar\'s answer: {"call_id": ...}'}},
)
async def click_to_dial(
    data: CallRequest,
    tenant: TenantDep,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
) -> Response:
    """Click-to-dial: asks the registrar to originate (JWT or API key with calls:write)."""
    require_scope(principal, "calls", "write")
    if principal.claims.role is Role.tenant_user and principal.api_key_id is None:
        # A tenant user rings its own phone, not a colleague's.
        user_id = _uuid_or_none(principal.claims.sub)
        user = await session.get(User, user_id) if user_id else None
        if user is None or user.extension != data.extension:
            raise Problem(
                403, "Forbidden", "a tenant user may click-to-dial only from its own extension"
            )
    await session.close()
    return await forward(
        request,
        owner="registrar",
        authorization=principal.authorization,
        body=data.model_dump_json().encode(),
    )


@router.get(
    "/tenants/{tenant}/events",
    tags=["events"],
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
)
async def live_events(
    tenant: TenantDep,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    types: Annotated[
        str | None, Query(max_length=2000, description="comma-separated event types")
    ] = None,
) -> EventSourceResponse:
    """Server-sent events: the tenant's own events as they happen (line status, calls, spend)."""
    require_scope(principal, "events", "read")
    wanted = {t.strip() for t in types.split(",") if t.strip()} if types else set()
    unknown = wanted - set(event_types())
    if unknown:
        raise Problem(422, "Unknown event type", ", ".join(sorted(unknown)))
    hub: LiveHub = runtime_of(request).extras["live"]
    tenant_id = tenant.id
    await session.close()
    try:
        await asyncio.wait_for(hub.ready.wait(), 10)
    except TimeoutError as exc:
        raise Problem(
            503,
            "Live events unavailable",
            "not connected to the bus yet",
            headers={"Retry-After": "5"},
        ) from exc

    async def stream() -> AsyncIterator[ServerSentEvent]:
        async with hub.listen(tenant_id) as queue:
            yield ServerSentEvent(comment="subscribed")
            while True:
                try:
                    envelope = await asyncio.wait_for(queue.get(), 15.0)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    continue
                if wanted and envelope.get("type") not in wanted:
                    continue
                yield ServerSentEvent(
                    data=json.dumps(envelope, separators=(",", ":")),
                    event=envelope.get("type"),
                    id=str(envelope.get("id")),
                )

    return EventSourceResponse(
        stream(), ping=15, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
