"""Resellers, tenants and users; tenant.* and user.* go out through the outbox."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from centralino_proto.auth import Claims, Role
from centralino_proto.bus import Outbox
from centralino_proto.events import (
    TenantCreated,
    TenantDeleted,
    TenantUpdated,
    UserCreated,
    UserDeleted,
    UserUpdated,
)
from centralino_proto.web import Problem

from .models import (
    TENANT_ROLES,
    RefreshToken,
    Reseller,
    ResellerCreate,
    ResellerUpdate,
    Tenant,
    TenantCreate,
    TenantUpdate,
    User,
    UserCreate,
    UserUpdate,
    utcnow,
)
from .security import hash_password

# -- resellers ----------------------------------------------------------------------


async def create_reseller(*, session: AsyncSession, data: ResellerCreate) -> Reseller:
    """Creates a reseller and its first (reseller-role) login."""
    await _email_free(session, data.admin_email)
    reseller = Reseller(name=data.name)
    session.add(reseller)
    await session.flush()
    session.add(
        User(
            email=data.admin_email.lower(),
            name=data.name,
            password_hash=hash_password(data.admin_password),
            role=Role.reseller.value,
            reseller_id=reseller.id,
        )
    )
    await session.flush()
    return reseller


async def list_resellers(
    *, session: AsyncSession, claims: Claims, limit: int, offset: int
) -> tuple[Sequence[Reseller], int]:
    """The resellers the caller may see: all for the operator, its own for a reseller."""
    query = select(Reseller)
    if claims.role is Role.reseller:
        query = query.where(col(Reseller.id) == claims.reseller_id)
    elif claims.role is not Role.operator:
        raise Problem(403, "Forbidden", "only the operator and resellers see resellers")
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(
        query.order_by(col(Reseller.created_at), col(Reseller.id)).limit(limit).offset(offset)
    )
    return rows.all(), total or 0


async def get_reseller(
    *, session: AsyncSession, claims: Claims, reseller_id: uuid.UUID
) -> Reseller:
    """One reseller, if the caller may see it."""
    reseller = await session.get(Reseller, reseller_id)
    allowed = claims.role is Role.operator or (
        claims.role is Role.reseller and claims.reseller_id == reseller_id
    )
    if reseller is None or not allowed:
        raise Problem(404, "Reseller not found", f"no reseller {reseller_id} visible to this token")
    return reseller


async def update_reseller(
    *, session: AsyncSession, reseller: Reseller, data: ResellerUpdate
) -> Reseller:
    """Renames or (de)activates a reseller."""
    for name, value in data.model_dump(exclude_unset=True).items():
        if value is not None:
            setattr(reseller, name, value)
    await session.flush()
    return reseller


# -- tenants ------------------------------------------------------------------------


def _tenant_event(tenant: Tenant) -> dict[str, object]:
    return {
        "tenant_id": tenant.id,
        "slug": tenant.slug,
        "name": tenant.name,
        "kind": tenant.kind,
        "reseller_id": tenant.reseller_id,
        "sip_realm": tenant.sip_realm,
        "timezone": tenant.timezone,
    }


async def create_tenant(
    *,
    session: AsyncSession,
    outbox: Outbox,
    claims: Claims,
    data: TenantCreate,
    realm_domain: str,
    tenant_id: uuid.UUID | None = None,
) -> Tenant:
    """Creates a tenant and publishes tenant.created (the other services provision from it)."""
    if claims.role is Role.reseller:
        if data.reseller_id not in (None, claims.reseller_id):
            raise Problem(403, "Forbidden", "a reseller creates tenants only for itself")
        reseller_id = claims.reseller_id
    elif claims.role is Role.operator:
        reseller_id = data.reseller_id
    else:
        raise Problem(403, "Forbidden", "only the operator and resellers create tenants")
    if reseller_id is not None:
        reseller = await session.get(Reseller, reseller_id)
        if reseller is None:
            raise Problem(422, "Unknown reseller", f"no reseller {reseller_id}")
        if not reseller.active:
            raise Problem(409, "Reseller inactive", f"reseller {reseller_id} is not active")
    realm = (data.sip_realm or f"{data.slug}.{realm_domain}").lower()
    taken = await session.scalar(
        select(col(Tenant.id)).where(
            or_(col(Tenant.slug) == data.slug, col(Tenant.sip_realm) == realm)
        )
    )
    if taken is not None:
        raise Problem(409, "Tenant exists", f"the slug {data.slug} or realm {realm} is taken")
    tenant = Tenant(
        id=tenant_id or uuid.uuid4(),
        slug=data.slug,
        name=data.name,
        kind=data.kind,
        timezone=data.timezone,
        reseller_id=reseller_id,
        sip_realm=realm,
    )
    session.add(tenant)
    await session.flush()
    await outbox.add(session, TenantCreated(**_tenant_event(tenant)), tenant_id=tenant.id)
    return tenant


async def list_tenants(
    *,
    session: AsyncSession,
    claims: Claims,
    limit: int,
    offset: int,
    q: str | None = None,
    reseller_id: uuid.UUID | None = None,
    kind: str | None = None,
    active: bool | None = None,
) -> tuple[Sequence[Tenant], int]:
    """The tenants the caller may see, filtered and paged."""
    query = select(Tenant).where(col(Tenant.deleted_at).is_(None))
    if claims.role is Role.reseller:
        query = query.where(col(Tenant.reseller_id) == claims.reseller_id)
    elif claims.role in TENANT_ROLES:
        query = query.where(col(Tenant.id) == claims.tenant_id)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(or_(col(Tenant.slug).ilike(pattern), col(Tenant.name).ilike(pattern)))
    if reseller_id is not None:
        query = query.where(col(Tenant.reseller_id) == reseller_id)
    if kind is not None:
        query = query.where(col(Tenant.kind) == kind)
    if active is not None:
        query = query.where(col(Tenant.active) == active)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(query.order_by(col(Tenant.slug)).limit(limit).offset(offset))
    return rows.all(), total or 0


async def update_tenant(
    *, session: AsyncSession, outbox: Outbox, claims: Claims, tenant: Tenant, data: TenantUpdate
) -> Tenant:
    """Changes a tenant's details and publishes tenant.updated."""
    if claims.role in TENANT_ROLES and data.active is not None:
        raise Problem(403, "Forbidden", "a tenant cannot suspend or reactivate itself")
    if claims.role is Role.tenant_user:
        raise Problem(403, "Forbidden", "a tenant user may not change the tenant")
    changes = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
    if not changes:
        return tenant
    for name, value in changes.items():
        setattr(tenant, name, value)
    tenant.updated_at = utcnow()
    await session.flush()
    await outbox.add(
        session,
        TenantUpdated(**_tenant_event(tenant), active=tenant.active),
        tenant_id=tenant.id,
    )
    return tenant


async def delete_tenant(
    *, session: AsyncSession, outbox: Outbox, claims: Claims, tenant: Tenant
) -> None:
    """Closes a tenant (kept for history, its logins and keys stop working); tenant.deleted."""
    if claims.role not in (Role.operator, Role.reseller):
        raise Problem(403, "Forbidden", "only the operator or the tenant's reseller deletes it")
    tenant.deleted_at = utcnow()
    tenant.active = False
    await session.execute(
        delete(RefreshToken).where(
            col(RefreshToken.user_id).in_(
                select(col(User.id)).where(col(User.tenant_id) == tenant.id)
            )
        )
    )
    await session.flush()
    await outbox.add(
        session, TenantDeleted(tenant_id=tenant.id, slug=tenant.slug), tenant_id=tenant.id
    )


# -- users --------------------------------------------------------------------------


async def _email_free(session: AsyncSession, email: str) -> None:
    if (
        await session.scalar(select(col(User.id)).where(col(User.email) == email.lower()))
        is not None
    ):
        raise Problem(409, "User exists", f"the email {email} is taken")


def _user_event(user: User) -> dict[str, object]:
    return {
        "user_id": user.id,
        "tenant_id": user.tenant_id,
        "email": user.email,
        "role": user.role,
        "extension": user.extension,
    }


async def create_user(
    *, session: AsyncSession, outbox: Outbox, tenant: Tenant, data: UserCreate
) -> User:
    """Adds a login to a tenant (tenant_admin or tenant_user); publishes user.created."""
    if data.role not in TENANT_ROLES:
        raise Problem(422, "Invalid role", "a tenant's users are tenant_admin or tenant_user")
    await _email_free(session, data.email)
    user = User(
        email=data.email.lower(),
        name=data.name,
        extension=data.extension,
        password_hash=hash_password(data.password),
        role=data.role.value,
        tenant_id=tenant.id,
    )
    session.add(user)
    await session.flush()
    await outbox.add(session, UserCreated(**_user_event(user)), tenant_id=tenant.id)
    return user


async def list_users(
    *, session: AsyncSession, tenant: Tenant, limit: int, offset: int, q: str | None = None
) -> tuple[Sequence[User], int]:
    """A tenant's users, paged."""
    query = select(User).where(col(User.tenant_id) == tenant.id)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(or_(col(User.email).ilike(pattern), col(User.name).ilike(pattern)))
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(query.order_by(col(User.email)).limit(limit).offset(offset))
    return rows.all(), total or 0


async def get_user(*, session: AsyncSession, tenant: Tenant, user_id: uuid.UUID) -> User:
    """One of a tenant's users."""
    user = await session.get(User, user_id)
    if user is None or user.tenant_id != tenant.id:
        raise Problem(404, "User not found", f"no user {user_id} in tenant {tenant.slug}")
    return user


async def update_user(
    *, session: AsyncSession, outbox: Outbox, user: User, data: UserUpdate
) -> User:
    """Changes a user; publishes user.updated."""
    changes = data.model_dump(exclude_unset=True)
    if changes.get("role") is not None and changes["role"] not in TENANT_ROLES:
        raise Problem(422, "Invalid role", "a tenant's users are tenant_admin or tenant_user")
    for name, value in changes.items():
        if name == "password":
            if value is not None:
                user.password_hash = hash_password(value)
        elif name == "role":
            if value is not None:
                user.role = Role(value).value
        elif name == "extension":
            user.extension = value
        elif value is not None:
            setattr(user, name, value)
    if user.active is False:
        await session.execute(delete(RefreshToken).where(col(RefreshToken.user_id) == user.id))
    await session.flush()
    await outbox.add(
        session,
        UserUpdated(**_user_event(user), active=user.active),
        tenant_id=user.tenant_id,
    )
    return user


async def delete_user(*, session: AsyncSession, outbox: Outbox, user: User) -> None:
    """Removes a user and its sessions; publishes user.deleted."""
    await session.execute(delete(RefreshToken).where(col(RefreshToken.user_id) == user.id))
    await session.delete(user)
    await session.flush()
    await outbox.add(
        session, UserDeleted(user_id=user.id, tenant_id=user.tenant_id), tenant_id=user.tenant_id
    )
