"""Keeps this replica's compiled plans in step with the database.

Each replica binds its own exclusive queue to `dialplan.changed` (every replica
must see every signal, unlike the service's shared work queues) and rebuilds the
named tenants. A sweep compares plan versions every few seconds, so a signal
lost while the replica was disconnected only delays convergence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterable

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from centralino_proto.bus import declare_exchange
from centralino_proto.events.routing import DialplanChanged
from centralino_proto.service import ServiceRuntime

from .decide import Router
from .plan import DialPlans, build_plans, stored_versions

log = logging.getLogger("centralino.routing.replica")

PLAN_REBUILDS = Counter("centralino_routing_plan_rebuilds_total", "Tenant plans rebuilt", ["why"])
PLAN_TENANTS = Gauge("centralino_routing_plan_tenants", "Tenants in the compiled plan")
PLAN_BUILD_SECONDS = Histogram("centralino_routing_plan_build_seconds", "Plan build time")


class PlanKeeper:
    """The compiled plans of one replica and what keeps them current."""

    def __init__(self, runtime: ServiceRuntime, *, sweep_seconds: float = 5.0) -> None:
        self.runtime = runtime
        self.plans = DialPlans()
        self.router = Router(self.plans)
        self.sweep_seconds = sweep_seconds
        self.instance = uuid.uuid4().hex[:12]
        self._connection: AbstractRobustConnection | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._retry: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Listens for change signals, then loads every plan (so no change falls in between)."""
        try:
            await asyncio.wait_for(self._listen(), timeout=15)
        except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as exc:
            # Decisions do not need the bus: serve from the database's plans, sweep, retry.
            log.warning("dialplan.changed not bound (%s); relying on the sweep meanwhile", exc)
            self._retry = asyncio.create_task(self._listen_later(), name="dialplan-listen")
        await self.load_all()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="dialplan-sweep")

    async def _listen_later(self) -> None:
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            try:
                await self._listen()
                await self.sweep()
                return
            except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as exc:
                log.warning("dialplan.changed still not bound (%s)", exc)
                delay = min(delay * 2, 30.0)

    async def stop(self) -> None:
        for task in (self._sweeper, self._retry):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def load_all(self) -> None:
        """Builds every tenant's plan."""
        started = time.perf_counter()
        async with self.runtime.sessionmaker() as session, session.begin():
            plans = await build_plans(session)
        self.plans.install(plans)
        self.plans.loaded = True
        PLAN_TENANTS.set(len(self.plans.tenants))
        PLAN_BUILD_SECONDS.observe(time.perf_counter() - started)
        log.info(
            "dial plans of %d tenants loaded in %.2fs", len(plans), time.perf_counter() - started
        )

    async def commit(self, session: AsyncSession, tenant_ids: Iterable[uuid.UUID]) -> None:
        """Commits a dial-plan change, then recompiles the tenants it touched on this replica
        (the others follow on dialplan.changed)."""
        await session.commit()
        await self.refresh(tenant_ids, why="write")

    async def refresh(self, tenant_ids: Iterable[uuid.UUID], *, why: str = "signal") -> None:
        """Rebuilds some tenants' plans from the database."""
        ids = set(tenant_ids)
        if not ids:
            return
        async with self._lock:
            async with self.runtime.sessionmaker() as session, session.begin():
                plans = await build_plans(session, ids)
            self.plans.install(plans, known=ids)
        PLAN_REBUILDS.labels(why).inc(len(ids))
        PLAN_TENANTS.set(len(self.plans.tenants))

    async def sweep(self) -> int:
        """Rebuilds tenants whose stored version differs from ours; returns how many."""
        async with self.runtime.sessionmaker() as session:
            stored = await stored_versions(session)
        ours = self.plans.versions()
        stale = {t for t, v in stored.items() if ours.get(t) != v}
        stale |= set(ours) - set(stored)
        if stale:
            await self.refresh(stale, why="sweep")
        return len(stale)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_seconds)
            try:
                await self.sweep()
            except Exception:
                log.exception("dial plan sweep failed; retrying")

    async def _listen(self) -> None:
        settings = self.runtime.settings
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
        self._connection = await aio_pika.connect_robust(
            settings.amqp_url,
            client_properties={"connection_name": f"routing-plan-{self.instance}"},
        )
        channel = await self._connection.channel()
        exchange = await declare_exchange(channel, settings.bus_exchange)
        queue = await channel.declare_queue(
            f"{settings.bus_queue_prefix}.dialplan.{self.instance}",
            exclusive=True,
            auto_delete=True,
        )
        await queue.bind(exchange, routing_key=DialplanChanged.event_type)
        await queue.consume(self._on_signal)

    async def _on_signal(self, message: AbstractIncomingMessage) -> None:
        async with message.process(requeue=False, ignore_processed=True):
            try:
                ids = [uuid.UUID(t) for t in json.loads(message.body)["data"]["tenant_ids"]]
            except (ValueError, KeyError, TypeError):
                log.error("unreadable dialplan.changed signal %s", message.message_id)
                return
            try:
                await self.refresh(ids)
            except Exception:
                # The sweep catches up; a signal is only a shortcut.
                log.exception("rebuilding %s failed", ids)
