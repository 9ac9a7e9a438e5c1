"""One service's runtime (database, bus, token verifier) and its FastAPI app factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from . import migrations
from .auth import JWKSVerifier
from .bus import Consumer, Outbox, OutboxRelay, RelayProcess
from .db import make_engine, make_sessionmaker
from .settings import ServiceSettings
from .telemetry import instrument_app, setup_tracing
from .tenancy import subscribe_tenant_directory
from .web import (
    ReadinessCheck,
    database_check,
    health_router,
    install_metrics,
    install_problem_handlers,
)

log = logging.getLogger("centralino.service")

Hook = Callable[["ServiceRuntime"], Awaitable[None]]


@dataclass
class ServiceRuntime:
    """What a running service holds: its database, its side of the bus, its token verifier."""

    settings: ServiceSettings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    outbox: Outbox
    # In the service's loop, or its child process (settings.outbox_relay).
    relay: OutboxRelay | RelayProcess
    consumer: Consumer
    verifier: JWKSVerifier
    extras: dict[str, object] = field(default_factory=dict)

    @classmethod
    def create(
        cls, settings: ServiceSettings, *, verifier: JWKSVerifier | None = None
    ) -> ServiceRuntime:
        engine = make_engine(settings.database_url)
        sessionmaker = make_sessionmaker(engine)
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            outbox=Outbox(producer=settings.service_name),
            relay=RelayProcess(
                database_url=settings.database_url,
                amqp_url=settings.amqp_url,
                exchange=settings.bus_exchange,
                service_name=settings.service_name,
            )
            if settings.outbox_relay == "process"
            else OutboxRelay(
                engine=engine,
                database_url=settings.database_url,
                amqp_url=settings.amqp_url,
                exchange=settings.bus_exchange,
            ),
            consumer=Consumer(
                sessionmaker=sessionmaker,
                amqp_url=settings.amqp_url,
                exchange=settings.bus_exchange,
                queue_prefix=settings.bus_queue_prefix,
                prefetch=settings.bus_prefetch,
                max_attempts=settings.bus_max_attempts,
                retry_delay_ms=settings.bus_retry_delay_ms,
            ),
            verifier=verifier
            or JWKSVerifier(
                jwks_url=settings.jwks_url,
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
            ),
        )

    async def bus_check(self) -> str | None:
        if not self.relay.connected:
            return "outbox relay not connected to RabbitMQ"
        if self.consumer.subscriptions and not self.consumer.connected:
            return "consumer not connected to RabbitMQ"
        return None

    async def db_check(self) -> str | None:
        async with self.sessionmaker() as session:
            return await database_check(session)


async def migrate(settings: ServiceSettings, migrations_dir: Path) -> None:
    """Creates the service database if missing and upgrades it to head."""
    await migrations.ensure_database(settings.database_url)
    await asyncio.to_thread(migrations.upgrade, migrations_dir, settings.database_url)


def create_service_app(
    *,
    settings: ServiceSettings,
    migrations_dir: Path,
    routers: Sequence[APIRouter],
    description: str,
    subscribe: Callable[[ServiceRuntime], None] | None = None,
    on_start: Hook | None = None,
    on_stop: Hook | None = None,
    tenant_directory: bool = True,
    verifier: JWKSVerifier | None = None,
    readiness: dict[str, Callable[[ServiceRuntime], Awaitable[str | None]]] | None = None,
) -> FastAPI:
    """A service app: lifespan (migrate, bus, hooks), problem+json, probes, metrics, tracing."""
    setup_tracing(settings.service_name)
    runtime = ServiceRuntime.create(settings, verifier=verifier)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await migrate(settings, migrations_dir)
        if tenant_directory:
            subscribe_tenant_directory(runtime.consumer)
        if subscribe:
            subscribe(runtime)
        await runtime.relay.start()
        await runtime.consumer.start()
        try:
            if on_start:
                await on_start(runtime)
            yield
        finally:
            if on_stop:
                await on_stop(runtime)
            await runtime.consumer.stop()
            await runtime.relay.stop()
            await runtime.engine.dispose()

    app = FastAPI(
        title=f"Centralino {settings.service_name}",
        description=description,
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_problem_handlers(app)
    install_metrics(app, settings.service_name)
    checks: dict[str, ReadinessCheck] = {"database": runtime.db_check, "bus": runtime.bus_check}
    for name, check in (readiness or {}).items():
        checks[name] = lambda check=check: check(runtime)  # type: ignore[misc]
    app.include_router(health_router(checks))
    for router in routers:
        app.include_router(router)
    instrument_app(app)
    return app
