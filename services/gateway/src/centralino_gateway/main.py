"""The gateway service's app factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from sqlalchemy import event as sa_event
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from centralino_proto.auth import JWKSVerifier
from centralino_proto.events import Envelope, event_types
from centralino_proto.service import ServiceRuntime, create_service_app
from centralino_proto.web import Problem

from . import sessions, webhooks
from .api import router, wellknown
from .caches import RevocationList, TenantScopes
from .config import Settings
from .idempotency import IdempotencyMiddleware, purge_idempotency
from .keys import GatewayVerifier, Keyring, Sealer
from .live import LiveHub
from .proxy import facade_router
from .security import configure_hasher

MIGRATIONS = Path(__file__).parent / "migrations"

log = logging.getLogger("centralino.gateway")


def _subscribe(runtime: ServiceRuntime) -> None:
    deliverer: webhooks.Deliverer = runtime.extras["deliverer"]

    async def on_event(session: AsyncSession, envelope: Envelope[Any]) -> None:
        await webhooks.enqueue(session, envelope)
        sa_event.listen(
            session.sync_session, "after_commit", lambda _s: deliverer.wake(), once=True
        )

    # Every declared event: a tenant's webhooks may ask for any of them.
    runtime.consumer.subscribe(list(event_types().values()), on_event, name="webhooks")


async def _housekeeping(runtime: ServiceRuntime, settings: Settings) -> None:
    while True:
        await asyncio.sleep(600)
        try:
            async with runtime.sessionmaker() as session, session.begin():
                await sessions.purge_expired(session=session, settings=settings)
                await purge_idempotency(session=session)
        except Exception:
            log.exception("housekeeping failed")


def create_app(
    settings: Settings | None = None, *, verifier: JWKSVerifier | None = None
) -> FastAPI:
    """Builds the gateway app; `verifier` (tests) is trusted besides the gateway's own keys."""
    settings = settings or Settings()
    sealer = Sealer(settings.key_encryption_key.get_secret_value())
    configure_hasher(
        time_cost=settings.password_hash_time_cost, memory_kib=settings.password_hash_memory_kib
    )
    tasks: list[asyncio.Task[None]] = []

    async def on_start(runtime: ServiceRuntime) -> None:
        keyring: Keyring = runtime.extras["keyring"]
        await keyring.load()
        runtime.extras["http"] = httpx.AsyncClient(
            timeout=settings.upstream_timeout_seconds,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            trust_env=False,
        )
        live: LiveHub = runtime.extras["live"]
        await live.start()
        deliverer: webhooks.Deliverer = runtime.extras["deliverer"]
        await deliverer.start()
        tasks.append(asyncio.create_task(_housekeeping(runtime, settings), name="housekeeping"))

    async def on_stop(runtime: ServiceRuntime) -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        tasks.clear()
        await runtime.extras["deliverer"].stop()
        await runtime.extras["live"].stop()
        client = runtime.extras.pop("http", None)
        if isinstance(client, httpx.AsyncClient):
            await client.aclose()

    app = create_service_app(
        settings=settings,
        migrations_dir=MIGRATIONS,
        routers=[wellknown, router, facade_router()],
        description=(
            "Public API: operator, reseller, tenant and user accounts, API keys, JWT signing "
            "keys (JWKS), webhook subscriptions and their delivery log; proxies to the owning "
            "services."
        ),
        subscribe=_subscribe,
        on_start=on_start,
        on_stop=on_stop,
        tenant_directory=False,
        verifier=verifier,
    )
    runtime: ServiceRuntime = app.state.runtime
    keyring = Keyring(
        sessionmaker=runtime.sessionmaker,
        sealer=sealer,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        grace=timedelta(seconds=settings.signing_key_grace_seconds),
    )
    runtime.extras.update(
        revocations=RevocationList(runtime.sessionmaker),
        tenant_scopes=TenantScopes(runtime.sessionmaker),
        keyring=keyring,
        sealer=sealer,
        live=LiveHub(amqp_url=settings.amqp_url, exchange=settings.bus_exchange),
        deliverer=webhooks.Deliverer(
            sessionmaker=runtime.sessionmaker, sealer=sealer, settings=settings
        ),
    )
    # The gateway verifies its own tokens from its keyring: no HTTP call to itself.
    runtime.verifier = GatewayVerifier(keyring, trusted=verifier)
    app.add_middleware(IdempotencyMiddleware)
    install_database_problems(app)
    return app


def install_database_problems(app: FastAPI) -> None:
    """What PostgreSQL refuses is the caller's problem (4xx), not a crash (5xx)."""

    @app.exception_handler(IntegrityError)
    async def _conflict(request: Request, exc: IntegrityError) -> Response:
        # Two requests raced for the same unique name; the loser is told so.
        return Problem(409, "Conflict", "the change conflicts with existing data").response(
            request.url.path
        )

    @app.exception_handler(DBAPIError)
    async def _data(request: Request, exc: DBAPIError) -> Response:
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if sqlstate and str(sqlstate).startswith("22"):
            # Class 22, data exception: NUL bytes, values out of range...
            return Problem(422, "Invalid value", "a value cannot be stored as given").response(
                request.url.path
            )
        log.error("database error on %s %s: %s", request.method, request.url.path, exc)
        return Problem(500, "Internal error").response(request.url.path)
