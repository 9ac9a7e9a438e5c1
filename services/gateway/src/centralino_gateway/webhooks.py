"""Webhook subscriptions and their delivery (Standard Webhooks signatures, retries, log)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import secrets
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from centralino_proto.events import Envelope, event_types
from centralino_proto.web import Problem

from .config import Settings
from .keys import Sealer
from .models import (
    Tenant,
    WebhookAttempt,
    WebhookCreate,
    WebhookDelivery,
    WebhookSubscription,
    WebhookUpdate,
    utcnow,
)

log = logging.getLogger("centralino.gateway.webhooks")

SECRET_PREFIX = "whsec_"  # noqa: S105


# -- signing (https://www.standardwebhooks.com) ------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One signature: "v1,<base64 HMAC-SHA256 of id.timestamp.body>"."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signatures(
    sealer: Sealer, sub: WebhookSubscription, msg_id: str, timestamp: int, body: bytes
) -> str:
    """The webhook-signature header: the current secret's, and the previous one's while it lasts."""
    secrets_ = [sealer.open(sub.secret_enc, context=sub.id.bytes).decode()]
    if (
        sub.previous_secret_enc is not None
        and sub.previous_secret_until is not None
        and sub.previous_secret_until > utcnow()
    ):
        secrets_.append(sealer.open(sub.previous_secret_enc, context=sub.id.bytes).decode())
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets_)


async def rotate_secret(
    *, session: AsyncSession, sealer: Sealer, sub: WebhookSubscription, overlap: timedelta
) -> str:
    """A new signing secret (returned once); the old one keeps signing for `overlap`."""
    secret = new_secret()
    sub.previous_secret_enc = sub.secret_enc
    sub.previous_secret_until = utcnow() + overlap
    sub.secret_enc = sealer.seal(secret.encode(), context=sub.id.bytes)
    sub.updated_at = utcnow()
    await session.flush()
    return secret


# -- URL policy ----------------------------------------------------------------------


async def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None)
    except (OSError, UnicodeError) as exc:
        raise Problem(422, "Invalid webhook URL", f"the host {host} does not resolve") from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


async def check_url(url: str, settings: Settings) -> None:
    """http(s) only, no credentials, no private or loopback address unless allow-listed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Problem(422, "Invalid webhook URL", str(exc)) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Problem(422, "Invalid webhook URL", "the URL must be http:// or https:// with a host")
    if parts.username is not None or parts.password is not None:
        raise Problem(422, "Invalid webhook URL", "credentials in the URL are not allowed")
    if port == 0:
        raise Problem(422, "Invalid webhook URL", "port 0 is not a port")
    host = parts.hostname.lower()
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise Problem(422, "Invalid webhook URL", "control characters or spaces in the URL")
    if host in settings.allowed_webhook_hosts():
        return
    for address in await _addresses(host):
        if not address.is_global or address.is_multicast:
            raise Problem(
                422,
                "Invalid webhook URL",
                f"{host} is a private, loopback or reserved address ({address}); "
                "the operator may allow-list it (WEBHOOK_ALLOWED_HOSTS)",
            )


def _check_types(types: Sequence[str]) -> list[str]:
    known = event_types()
    unknown = sorted(set(types) - set(known))
    if unknown:
        raise Problem(422, "Unknown event type", ", ".join(unknown), known=sorted(known))
    return sorted(set(types))


# -- subscriptions ---------------------------------------------------------------------


async def create_subscription(
    *,
    session: AsyncSession,
    sealer: Sealer,
    settings: Settings,
    tenant: Tenant,
    data: WebhookCreate,
) -> tuple[WebhookSubscription, str]:
    """A new subscription and its secret (returned once)."""
    await check_url(data.url, settings)
    secret = new_secret()
    sub_id = uuid.uuid4()
    sub = WebhookSubscription(
        id=sub_id,
        tenant_id=tenant.id,
        url=data.url,
        description=data.description,
        event_types=_check_types(data.event_types),
        secret_enc=sealer.seal(secret.encode(), context=sub_id.bytes),
    )
    session.add(sub)
    await session.flush()
    return sub, secret


async def get_subscription(
    *, session: AsyncSession, tenant: Tenant, subscription_id: uuid.UUID
) -> WebhookSubscription:
    """One of a tenant's subscriptions."""
    sub = await session.get(WebhookSubscription, subscription_id)
    if sub is None or sub.tenant_id != tenant.id:
        raise Problem(404, "Webhook not found", f"no webhook {subscription_id} in {tenant.slug}")
    return sub


async def list_subscriptions(
    *, session: AsyncSession, tenant: Tenant, limit: int, offset: int, active: bool | None = None
) -> tuple[Sequence[WebhookSubscription], int]:
    """A tenant's subscriptions, paged."""
    query = select(WebhookSubscription).where(col(WebhookSubscription.tenant_id) == tenant.id)
    if active is not None:
        query = query.where(col(WebhookSubscription.active) == active)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.scalars(
        query.order_by(col(WebhookSubscription.created_at)).limit(limit).offset(offset)
    )
    return rows.all(), total or 0


async def update_subscription(
    *, session: AsyncSession, settings: Settings, sub: WebhookSubscription, data: WebhookUpdate
) -> WebhookSubscription:
    """Changes a subscription; active=true re-enables one disabled after failures."""
    changes = data.model_dump(exclude_unset=True)
    if changes.get("url") is not None:
        await check_url(changes["url"], settings)
        sub.url = changes["url"]
    if changes.get("description") is not None:
        sub.description = changes["description"]
    if changes.get("event_types") is not None:
        sub.event_types = _check_types(changes["event_types"])
    if changes.get("active") is not None:
        sub.active = changes["active"]
        if sub.active:
            sub.disabled_reason = None
            sub.consecutive_failures = 0
            # What waited while it was disabled goes out now.
            await session.execute(
                update(WebhookDelivery)
                .where(
                    col(WebhookDelivery.subscription_id) == sub.id,
                    col(WebhookDelivery.status) == "pending",
                )
                .values(next_attempt_at=utcnow())
            )
        else:
            sub.disabled_reason = "disabled by the tenant"
    sub.updated_at = utcnow()
    await session.flush()
    return sub


async def list_attempts(
    *,
    session: AsyncSession,
    sub: WebhookSubscription,
    limit: int,
    offset: int,
    success: bool | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Every delivery attempt of a subscription, newest first."""
    query = (
        select(WebhookAttempt, col(WebhookDelivery.event_id), col(WebhookDelivery.event_type))
        .join(WebhookDelivery, col(WebhookDelivery.id) == WebhookAttempt.delivery_id)
        .where(col(WebhookAttempt.subscription_id) == sub.id)
    )
    if success is not None:
        query = query.where(col(WebhookAttempt.success) == success)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.execute(
        query.order_by(col(WebhookAttempt.at).desc()).limit(limit).offset(offset)
    )
    return [
        {**attempt.model_dump(), "event_id": event_id, "event_type": event_type}
        for attempt, event_id, event_type in rows.all()
    ], total or 0


# -- fan-out from the bus --------------------------------------------------------------


async def enqueue(session: AsyncSession, envelope: Envelope[Any]) -> None:
    """Queues an event for every active subscription of its tenant that wants it."""
    if envelope.tenant_id is None:
        return
    subs = await session.scalars(
        select(WebhookSubscription).where(col(WebhookSubscription.tenant_id) == envelope.tenant_id)
    )
    body = envelope.model_dump(mode="json", by_alias=True)
    for sub in subs.all():
        if sub.event_types and envelope.type not in sub.event_types:
            continue
        if envelope.occurred_at < sub.created_at:
            continue  # it happened before the subscription; the consumer is just late
        # Disabled subscriptions still queue: re-enabling one delivers what it missed.
        await session.execute(
            pg_insert(WebhookDelivery)
            .values(
                id=uuid.uuid4(),
                subscription_id=sub.id,
                tenant_id=envelope.tenant_id,
                event_id=envelope.id,
                event_type=envelope.type,
                envelope=body,
                status="pending",
                attempts=0,
                next_attempt_at=utcnow(),
                created_at=utcnow(),
            )
            .on_conflict_do_nothing()
        )


# -- delivery ------------------------------------------------------------------------------


def backoff(attempt: int, settings: Settings) -> float:
    """Seconds before attempt `attempt + 1`: exponential, capped, with jitter."""
    delay = min(
        settings.webhook_backoff_base_seconds * 2 ** (attempt - 1),
        settings.webhook_backoff_max_seconds,
    )
    return delay * random.uniform(0.8, 1.2)


class Deliverer:
    """Sends due deliveries, logs every attempt, reschedules failures, disables dead endpoints."""

    def __init__(
        self, *, sessionmaker: async_sessionmaker[AsyncSession], sealer: Sealer, settings: Settings
    ) -> None:
        self._sessionmaker = sessionmaker
        self._sealer = sealer
        self._settings = settings
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        # No redirects: a 3xx could point a delivery at a forbidden address.
        self._client = httpx.AsyncClient(
            timeout=self._settings.webhook_timeout_seconds, follow_redirects=False, trust_env=False
        )
        self._task = asyncio.create_task(self._run(), name="webhook-deliverer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client:
            await self._client.aclose()

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                sent = await self.deliver_due()
            except Exception:
                log.exception("webhook delivery pass failed")
                sent = 0
                await asyncio.sleep(1.0)
            if sent:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.webhook_poll_seconds)

    async def deliver_due(self) -> int:
        """One pass over due deliveries of active subscriptions; returns how many were tried.

        Rows are claimed with a lease in one short transaction, posted with no transaction
        open, and the outcome recorded in another; a crash in between only delays a retry.
        """
        lease = timedelta(seconds=self._settings.webhook_timeout_seconds + 5)
        async with self._sessionmaker() as session, session.begin():
            rows = (
                await session.execute(
                    select(WebhookDelivery, WebhookSubscription)
                    .join(
                        WebhookSubscription,
                        col(WebhookSubscription.id) == WebhookDelivery.subscription_id,
                    )
                    .where(
                        col(WebhookDelivery.status) == "pending",
                        col(WebhookDelivery.next_attempt_at) <= utcnow(),
                        col(WebhookSubscription.active).is_(True),
                    )
                    .order_by(col(WebhookDelivery.created_at))
                    .limit(self._settings.webhook_concurrency)
                    .with_for_update(of=WebhookDelivery, skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            for delivery, _ in rows:
                delivery.next_attempt_at = utcnow() + lease
        # One endpoint's events go in order; different endpoints in parallel.
        by_sub: dict[uuid.UUID, list[tuple[WebhookDelivery, WebhookSubscription]]] = {}
        for delivery, sub in rows:
            by_sub.setdefault(sub.id, []).append((delivery, sub))
        results = await asyncio.gather(*(self._send_in_order(batch) for batch in by_sub.values()))
        async with self._sessionmaker() as session, session.begin():
            for batch_results in results:
                for delivery, sub, attempt in batch_results:
                    fresh = await session.get(WebhookDelivery, delivery.id, with_for_update=True)
                    fresh_sub = await session.get(WebhookSubscription, sub.id, with_for_update=True)
                    if fresh is None or fresh_sub is None:
                        continue  # the subscription was deleted meanwhile
                    if attempt is None:
                        # Not tried: its endpoint had just failed in this pass.
                        fresh.next_attempt_at = utcnow() + timedelta(
                            seconds=backoff(1, self._settings)
                        )
                    else:
                        self._record(session, fresh, fresh_sub, attempt)
        return len(rows)

    async def _send_in_order(
        self, batch: list[tuple[WebhookDelivery, WebhookSubscription]]
    ) -> list[tuple[WebhookDelivery, WebhookSubscription, WebhookAttempt | None]]:
        out: list[tuple[WebhookDelivery, WebhookSubscription, WebhookAttempt | None]] = []
        failed = False
        for delivery, sub in batch:
            if failed:
                out.append((delivery, sub, None))  # the endpoint is down: wait for a retry
                continue
            attempt = await self._send(delivery, sub)
            failed = not attempt.success
            out.append((delivery, sub, attempt))
        return out

    async def _send(self, delivery: WebhookDelivery, sub: WebhookSubscription) -> WebhookAttempt:
        assert self._client is not None
        body = json.dumps(delivery.envelope, separators=(",", ":")).encode()
        msg_id = str(delivery.event_id)
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "Centralino-Webhooks/1",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signatures(self._sealer, sub, msg_id, timestamp, body),
        }
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            # Checked again at send time: DNS may have changed since the subscription.
            await check_url(sub.url, self._settings)
            response = await self._client.post(sub.url, content=body, headers=headers)
            status = response.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except Problem as exc:
            error = exc.detail or exc.title
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
        return WebhookAttempt(
            delivery_id=delivery.id,
            subscription_id=sub.id,
            attempt=delivery.attempts + 1,
            success=error is None,
            status_code=status,
            error=error,
            duration_ms=int((time.perf_counter() - started) * 1000),
        )

    def _record(
        self,
        session: AsyncSession,
        delivery: WebhookDelivery,
        sub: WebhookSubscription,
        attempt: WebhookAttempt,
    ) -> None:
        session.add(attempt)
        delivery.attempts = attempt.attempt
        now = utcnow()
        if attempt.success:
            delivery.status = "delivered"
            delivery.delivered_at = now
            sub.consecutive_failures = 0
            return
        sub.consecutive_failures += 1
        if delivery.attempts >= self._settings.webhook_max_attempts:
            delivery.status = "failed"
        else:
            delivery.next_attempt_at = now + timedelta(
                seconds=backoff(delivery.attempts, self._settings)
            )
        if sub.active and sub.consecutive_failures >= self._settings.webhook_disable_after_failures:
            sub.active = False
            sub.disabled_reason = (
                f"disabled after {sub.consecutive_failures} failed deliveries in a row "
                f"(last: {attempt.error})"
            )[:500]
            log.warning("webhook %s disabled: %s", sub.id, sub.disabled_reason)


async def delete_subscription(*, session: AsyncSession, sub: WebhookSubscription) -> None:
    """Removes a subscription with its queued deliveries and their log."""
    await session.execute(
        delete(WebhookAttempt).where(col(WebhookAttempt.subscription_id) == sub.id)
    )
    await session.execute(
        delete(WebhookDelivery).where(col(WebhookDelivery.subscription_id) == sub.id)
    )
    await session.delete(sub)
    await session.flush()
