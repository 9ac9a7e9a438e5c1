"""Logins and tokens: password, refresh_token and client_credentials grants; revocation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from centralino_proto.auth import InvalidToken, Role
from centralino_proto.web import Problem

from .config import SERVICE_CLIENTS, Settings
from .keys import Keyring
from .models import (
    LoginFailure,
    RefreshToken,
    Reseller,
    RevokedAccessToken,
    Tenant,
    User,
    utcnow,
)
from .security import (
    REFRESH_TOKEN_PREFIX,
    is_service_secret,
    new_refresh_token,
    token_digest,
    verify_password,
)


def _grant_error(error: str, detail: str, status: int = 401) -> Problem:
    # RFC 6749 error codes ride along as an extension of the problem.
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return Problem(status, "Authentication failed", detail, error=error, headers=headers)


async def _failures(session: AsyncSession, since: datetime, column: Any, value: str) -> int:
    return (
        await session.scalar(
            select(func.count())
            .select_from(LoginFailure)
            .where(col(LoginFailure.at) > since, column == value)
        )
    ) or 0


async def _check_rate(
    session: AsyncSession, settings: Settings, username: str, client: str
) -> None:
    since = utcnow() - timedelta(seconds=settings.login_window_seconds)
    by_user = await _failures(session, since, col(LoginFailure.username), username)
    by_client = await _failures(session, since, col(LoginFailure.client), client)
    if (
        by_user >= settings.login_max_failures
        or by_client >= settings.login_max_failures_per_client
    ):
        raise Problem(
            429,
            "Too many failed logins",
            f"try again in {settings.login_window_seconds} seconds",
            error="slow_down",
            headers={"Retry-After": str(settings.login_window_seconds)},
        )


async def record_failure(*, session: AsyncSession, username: str, client: str) -> None:
    """Counts a failed login (committed even though the login itself fails)."""
    session.add(LoginFailure(username=username[:254], client=client[:64]))
    await session.commit()


async def _account_live(session: AsyncSession, user: User) -> bool:
    if not user.active:
        return False
    if user.tenant_id is not None:
        tenant = await session.get(Tenant, user.tenant_id)
        return tenant is not None and tenant.active and tenant.deleted_at is None
    if user.reseller_id is not None:
        reseller = await session.get(Reseller, user.reseller_id)
        return reseller is not None and reseller.active
    return True


async def _issue(
    *,
    session: AsyncSession,
    keyring: Keyring,
    settings: Settings,
    user: User,
    family_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    token, _ = keyring.sign(
        sub=str(user.id),
        role=Role(user.role),
        tenant_id=user.tenant_id,
        reseller_id=user.reseller_id,
        ttl=settings.access_token_seconds,
    )
    refresh = new_refresh_token()
    session.add(
        RefreshToken(
            token_hash=token_digest(refresh),
            family_id=family_id or uuid.uuid4(),
            user_id=user.id,
            expires_at=utcnow() + timedelta(seconds=settings.refresh_token_seconds),
        )
    )
    await session.flush()
    return {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": settings.access_token_seconds,
        "refresh_token": refresh,
    }


async def password_grant(
    *,
    session: AsyncSession,
    keyring: Keyring,
    settings: Settings,
    username: str,
    password: str,
    client: str,
) -> dict[str, Any]:
    """Tokens for a user's email and password; failures are counted and rate-limited."""
    username = username.strip().lower()
    await _check_rate(session, settings, username, client)
    user = (await session.scalars(select(User).where(col(User.email) == username))).first()
    if not verify_password(password, user.password_hash if user else None) or user is None:
        await record_failure(session=session, username=username, client=client)
        raise _grant_error("invalid_grant", "wrong username or password")
    if not await _account_live(session, user):
        raise _grant_error("invalid_grant", "this account is disabled")
    return await _issue(session=session, keyring=keyring, settings=settings, user=user)


async def refresh_grant(
    *, session: AsyncSession, keyring: Keyring, settings: Settings, refresh_token: str
) -> dict[str, Any]:
    """New tokens for a refresh token, which is spent; reusing a spent one ends the session."""
    row = (
        await session.scalars(
            select(RefreshToken)
            .where(col(RefreshToken.token_hash) == token_digest(refresh_token))
            .with_for_update()
        )
    ).first()
    now = utcnow()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise _grant_error("invalid_grant", "unknown, revoked or expired refresh token")
    if row.used_at is not None:
        # Replay of a rotated token: someone else holds the family; end it (OAuth 2 BCP).
        await session.execute(
            update(RefreshToken)
            .where(col(RefreshToken.family_id) == row.family_id)
            .values(revoked_at=now)
        )
        await session.commit()
        raise _grant_error("invalid_grant", "refresh token already used; the session is revoked")
    user = await session.get(User, row.user_id)
    if user is None or not await _account_live(session, user):
        raise _grant_error("invalid_grant", "this account is disabled")
    row.used_at = now
    return await _issue(
        session=session, keyring=keyring, settings=settings, user=user, family_id=row.family_id
    )


def client_credentials_grant(
    *, keyring: Keyring, settings: Settings, client_id: str, client_secret: str
) -> dict[str, Any]:
    """A role=service token for one of the platform's services."""
    expected = settings.service_client_secret.get_secret_value()
    if client_id not in SERVICE_CLIENTS or not is_service_secret(client_secret, expected):
        raise _grant_error("invalid_client", "unknown client or wrong secret")
    token, _ = keyring.sign(sub=client_id, role=Role.service, ttl=settings.service_token_seconds)
    return {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": settings.service_token_seconds,
    }


async def revoke(*, session: AsyncSession, keyring: Keyring, token: str) -> str | None:
    """Revokes a refresh token (its whole session) or an access token (RFC 7009: silent)."""
    now = utcnow()
    if token.startswith(REFRESH_TOKEN_PREFIX):
        row = (
            await session.scalars(
                select(RefreshToken).where(col(RefreshToken.token_hash) == token_digest(token))
            )
        ).first()
        if row is not None:
            await session.execute(
                update(RefreshToken)
                .where(col(RefreshToken.family_id) == row.family_id)
                .values(revoked_at=now)
            )
        return None
    try:
        claims = await keyring.verifier().verify(token)
    except InvalidToken:
        return None
    if claims.jti:
        await session.execute(
            pg_insert(RevokedAccessToken)
            .values(jti=claims.jti, expires_at=datetime.fromtimestamp(claims.exp, UTC))
            .on_conflict_do_nothing()
        )
    return claims.jti


async def purge_expired(*, session: AsyncSession, settings: Settings) -> None:
    """Forgets what can no longer matter: old failures, expired tokens."""
    now = utcnow()
    await session.execute(
        delete(RevokedAccessToken).where(col(RevokedAccessToken.expires_at) < now)
    )
    await session.execute(delete(RefreshToken).where(col(RefreshToken.expires_at) < now))
    await session.execute(
        delete(LoginFailure).where(
            col(LoginFailure.at) < now - timedelta(seconds=settings.login_window_seconds)
        )
    )
