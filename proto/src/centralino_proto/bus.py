"""The event bus on RabbitMQ: transactional outbox, relay, idempotent consumers.

Producers never publish directly: `Outbox.add` writes the envelope in the caller's
transaction and a NOTIFY wakes the relay, which publishes with publisher confirms
and marks the rows sent. Consumers record each handled event id in the inbox in the
same transaction as the handler's effects, so a redelivery takes effect once.
A handler that fails goes to `<queue>.retry` (a TTL queue that dead-letters back)
and, after `max_attempts`, to `<queue>.dlq`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import aio_pika
import aiormq
import aiormq.abc
import asyncpg
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind
from pamqp.commands import Basic
from prometheus_client import Counter, Histogram
from sqlalchemy import Text, delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .db import inbox, outbox
from .events.base import Envelope, Event
from .settings import libpq_url

log = logging.getLogger("centralino.bus")
tracer = trace.get_tracer("centralino.bus")

NOTIFY_CHANNEL = "centralino_outbox"

EVENTS_PUBLISHED = Counter("centralino_bus_published_total", "Events published", ["routing_key"])
EVENTS_HANDLED = Counter("centralino_bus_handled_total", "Events consumed", ["queue", "outcome"])
HANDLE_SECONDS = Histogram("centralino_bus_handle_seconds", "Handler time", ["queue"])

E = TypeVar("E", bound=Event)
Handler = Callable[[AsyncSession, Envelope[Any]], Awaitable[None]]


def _current_trace_headers() -> dict[str, Any]:
    carrier: dict[str, Any] = {}
    propagate.inject(carrier)
    return carrier


def _correlation_default() -> str | None:
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


class Outbox:
    """Writes events in the producer's own transaction."""

    def __init__(self, *, producer: str) -> None:
        self.producer = producer

    async def add(
        self,
        session: AsyncSession,
        event: E,
        *,
        tenant_id: uuid.UUID | None,
        correlation_id: str | None = None,
    ) -> Envelope[E]:
        """Adds an event to the outbox; it is published only if the transaction commits."""
        [envelope] = await self.add_many(
            session, [(event, tenant_id)], correlation_id=correlation_id
        )
        return envelope

    async def add_many(
        self,
        session: AsyncSession,
        events: Iterable[tuple[Event, uuid.UUID | None]],
        *,
        correlation_id: str | None = None,
    ) -> list[Envelope[Any]]:
        """Adds several (event, tenant_id) in one statement; for hot paths that group commits."""
        envelopes = self.wrap(events, correlation_id=correlation_id)
        if not envelopes:
            return envelopes
        headers = _current_trace_headers()
        await session.execute(
            insert(outbox),
            [
                {
                    "event_id": envelope.id,
                    "routing_key": envelope.type,
                    "envelope": envelope.model_dump(mode="json", by_alias=True),
                    "headers": headers,
                }
                for envelope in envelopes
            ],
        )
        await session.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))
        return envelopes

    def wrap(
        self,
        events: Iterable[tuple[Event, uuid.UUID | None]],
        *,
        correlation_id: str | None = None,
    ) -> list[Envelope[Any]]:
        correlation_id = correlation_id or _correlation_default()
        return [
            Envelope.wrap(
                event, producer=self.producer, tenant_id=tenant_id, correlation_id=correlation_id
            )
            for event, tenant_id in events
        ]

    @staticmethod
    def insert_sql(first: int) -> str:
        """The outbox INSERT for a driver-level statement (a hot path writing without the
        ORM): four parameters from $`first` on, the values of `insert_params`."""
        ids, keys, bodies, headers = (f"${first + i}" for i in range(4))
        return (
            "INSERT INTO outbox (event_id, routing_key, envelope, headers) "
            f"SELECT e, r, v::jsonb, {headers}::text::jsonb "
            f"FROM unnest({ids}::uuid[], {keys}::text[], {bodies}::text[]) AS t(e, r, v)"
        )

    def insert_params(self, envelopes: list[Envelope[Any]]) -> list[Any]:
        return [
            [envelope.id for envelope in envelopes],
            [envelope.type for envelope in envelopes],
            [envelope.model_dump_json(by_alias=True) for envelope in envelopes],
            json.dumps(_current_trace_headers()),
        ]


async def _connect_with_retry(
    url: str, what: str, stopping: asyncio.Event
) -> AbstractRobustConnection:
    delay = 0.5
    while True:
        try:
            return await aio_pika.connect_robust(url, client_properties={"connection_name": what})
        except (OSError, aio_pika.exceptions.AMQPError) as exc:
            if stopping.is_set():
                raise
            log.warning("%s: RabbitMQ not reachable (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def declare_exchange(channel: AbstractChannel, name: str) -> AbstractExchange:
    """The one durable topic exchange all events go through."""
    return await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)


class OutboxRelay:
    """Publishes committed outbox rows with publisher confirms, then marks them sent."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        database_url: str,
        amqp_url: str,
        exchange: str,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        retention: timedelta = timedelta(hours=1),
    ) -> None:
        self._engine = engine
        self._database_url = database_url
        self._amqp_url = amqp_url
        self._exchange_name = exchange
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retention = retention
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.connected.is_set()

    async def start(self) -> None:
        """Runs the relay in the background until `stop`."""
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._connection:
            await self._connection.close()
            self._connection = None

    async def _run(self) -> None:
        self._connection = await _connect_with_retry(self._amqp_url, "outbox-relay", self._stopping)
        self._channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await declare_exchange(self._channel, self._exchange_name)
        listener = await self._listen()
        passes = 0
        try:
            while not self._stopping.is_set():
                try:
                    sent = await self.relay_once()
                except Exception:
                    log.exception("outbox relay pass failed; rows stay unsent")
                    sent = 0
                    await asyncio.sleep(1.0)
                passes += 1
                if passes % 600 == 0:
                    await self._purge_sent()
                if sent >= self.batch_size:
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
        finally:
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()

    async def _listen(self) -> asyncpg.Connection | None:
        # LISTEN only lowers latency; polling keeps working without it.
        try:
            conn = await asyncpg.connect(libpq_url(self._database_url))
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
            return conn
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("outbox relay: LISTEN unavailable (%s); polling only", exc)
            return None

    async def relay_once(self) -> int:
        """Publishes one batch of unsent rows; returns how many were published."""
        if self._exchange is None or self._channel is None:
            return 0
        async with self._engine.begin() as conn:
            rows = (
                await conn.execute(
                    # The envelope as text: it is published as it was written, not decoded
                    # and encoded again.
                    select(
                        outbox.c.seq,
                        outbox.c.event_id,
                        outbox.c.routing_key,
                        outbox.c.envelope.cast(Text),
                        outbox.c.headers,
                    )
                    .where(outbox.c.sent_at.is_(None))
                    .order_by(outbox.c.seq)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            channel = await self._channel.get_underlay_channel()
            async with asyncio.timeout(30):
                await asyncio.gather(
                    *(self._publish(channel, str(r[1]), r[2], r[3], r[4]) for r in rows)
                )
            await conn.execute(
                update(outbox)
                .where(outbox.c.seq.in_([r.seq for r in rows]))
                .values(sent_at=func.now())
            )
        return len(rows)

    async def _publish(
        self,
        channel: aiormq.abc.AbstractChannel,
        event_id: str,
        routing_key: str,
        body: str,
        headers: dict[str, str],
    ) -> None:
        parent = propagate.extract(headers)
        if not trace.get_current_span(parent).get_span_context().is_valid:
            # Written outside any trace (the registrar's SIP loop): a publish span would be
            # a one-span trace per event, so the event goes without one.
            await self._send(channel, event_id, routing_key, body, {})
        else:
            with tracer.start_as_current_span(
                f"{routing_key} publish", context=parent, kind=SpanKind.PRODUCER
            ) as span:
                span.set_attribute("messaging.system", "rabbitmq")
                span.set_attribute("messaging.destination.name", self._exchange_name)
                span.set_attribute("messaging.message.id", event_id)
                await self._send(channel, event_id, routing_key, body, _current_trace_headers())
        EVENTS_PUBLISHED.labels(routing_key).inc()

    async def _send(
        self,
        channel: aiormq.abc.AbstractChannel,
        event_id: str,
        routing_key: str,
        body: str,
        headers: dict[str, Any],
    ) -> None:
        # Straight to the AMQP channel: aio-pika's Message and Exchange layers cost a
        # third of the relay's time per event and add nothing to a publish.
        confirmation = await channel.basic_publish(
            body.encode(),
            exchange=self._exchange_name,
            routing_key=routing_key,
            properties=aiormq.spec.Basic.Properties(
                content_type="application/json",
                delivery_mode=2,  # persistent
                message_id=event_id,
                message_type=routing_key,
                headers=headers,
            ),
            # Not mandatory: an event no service is bound to yet is not an error, and a
            # returned message must not wedge the outbox behind it.
            mandatory=False,
        )
        _raise_unless_acked(confirmation, routing_key)

    async def _purge_sent(self) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(outbox).where(outbox.c.sent_at < func.now() - self.retention))


def _raise_unless_acked(confirmation: object, what: str) -> None:
    if not isinstance(confirmation, Basic.Ack):
        raise RuntimeError(f"broker did not confirm {what}: {confirmation!r}")


@dataclass(frozen=True)
class Subscription:
    queue: str
    events: Mapping[str, type[Event]]
    handler: Handler


class Consumer:
    """Consumes events by class, each taking effect exactly once (inbox in the same transaction)."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        amqp_url: str,
        exchange: str,
        queue_prefix: str,
        prefetch: int = 64,
        max_attempts: int = 5,
        retry_delay_ms: int = 2000,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._amqp_url = amqp_url
        self._exchange_name = exchange
        self._queue_prefix = queue_prefix
        self.prefetch = prefetch
        self.max_attempts = max_attempts
        self.retry_delay_ms = retry_delay_ms
        self._subscriptions: list[Subscription] = []
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._stopping = asyncio.Event()
        self._started = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def subscriptions(self) -> list[Subscription]:
        return list(self._subscriptions)

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.connected.is_set()

    def subscribe(
        self,
        events: type[Event] | Iterable[type[Event]],
        handler: Handler,
        *,
        name: str | None = None,
    ) -> Subscription:
        """Binds a handler to one or more event classes on one durable queue."""
        classes = [events] if isinstance(events, type) else list(events)
        if not classes:
            raise ValueError("subscribe needs at least one event class")
        if name is None:
            if len(classes) > 1:
                raise ValueError("name the queue when subscribing to several event types")
            name = classes[0].event_type
        sub = Subscription(
            queue=f"{self._queue_prefix}.{name}",
            events={cls.event_type: cls for cls in classes},
            handler=handler,
        )
        self._subscriptions.append(sub)
        return sub

    async def start(self) -> None:
        """Connects (retrying in the background) and starts consuming."""
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="bus-consumer")

    async def wait_started(self, timeout: float = 30) -> None:
        """Waits until every queue is declared and consumed."""
        await asyncio.wait_for(self._started.wait(), timeout)

    async def stop(self) -> None:
        self._stopping.set()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._connection:
            await self._connection.close()
            self._connection = None
        self._started.clear()

    async def _run(self) -> None:
        self._connection = await _connect_with_retry(self._amqp_url, "consumer", self._stopping)
        self._publish_channel = await self._connection.channel(publisher_confirms=True)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        exchange = await declare_exchange(channel, self._exchange_name)
        for sub in self._subscriptions:
            queue = await channel.declare_queue(sub.queue, durable=True)
            await channel.declare_queue(
                f"{sub.queue}.retry",
                durable=True,
                arguments={
                    "x-message-ttl": self.retry_delay_ms,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": sub.queue,
                },
            )
            await channel.declare_queue(f"{sub.queue}.dlq", durable=True)
            for routing_key in sub.events:
                await queue.bind(exchange, routing_key=routing_key)
            await queue.consume(self._callback(sub))
        self._started.set()
        await self._stopping.wait()

    def _callback(self, sub: Subscription) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def on_message(message: AbstractIncomingMessage) -> None:
            await self._handle(sub, message)

        return on_message

    async def _handle(self, sub: Subscription, message: AbstractIncomingMessage) -> None:
        parent = propagate.extract({k: str(v) for k, v in (message.headers or {}).items()})
        token = otel_context.attach(parent)
        try:
            with tracer.start_as_current_span(
                f"{message.type or 'event'} process", kind=SpanKind.CONSUMER
            ) as span:
                span.set_attribute("messaging.system", "rabbitmq")
                span.set_attribute("messaging.destination.name", sub.queue)
                try:
                    envelope = self._parse(sub, message.body)
                except (ValueError, KeyError) as exc:
                    # Poison: retrying cannot help.
                    await self._dead_letter(sub, message, f"unparseable: {exc}")
                    return
                span.set_attribute("messaging.message.id", str(envelope.id))
                try:
                    with HANDLE_SECONDS.labels(sub.queue).time():
                        outcome = await self._apply(sub, envelope)
                except Exception as exc:
                    span.record_exception(exc)
                    log.exception("handler for %s failed on event %s", sub.queue, envelope.id)
                    await self._retry_or_dead_letter(sub, message, exc)
                    return
                await message.ack()
                EVENTS_HANDLED.labels(sub.queue, outcome).inc()
        finally:
            otel_context.detach(token)

    @staticmethod
    def _parse(sub: Subscription, body: bytes) -> Envelope[Any]:
        raw = json.loads(body)
        cls = sub.events[raw["type"]]
        return Envelope[cls].model_validate(raw)  # type: ignore[valid-type]

    async def _apply(self, sub: Subscription, envelope: Envelope[Any]) -> str:
        async with self._sessionmaker() as session, session.begin():
            first = await session.execute(
                pg_insert(inbox)
                .values(consumer=sub.queue, event_id=envelope.id)
                .on_conflict_do_nothing()
                .returning(inbox.c.event_id)
            )
            if first.first() is None:
                return "duplicate"
            await sub.handler(session, envelope)
        return "handled"

    async def _retry_or_dead_letter(
        self, sub: Subscription, message: AbstractIncomingMessage, exc: BaseException
    ) -> None:
        attempts = int(str((message.headers or {}).get("x-attempts") or 0)) + 1
        reason = f"{type(exc).__name__}: {exc}"[:500]
        if attempts >= self.max_attempts:
            await self._dead_letter(sub, message, reason, attempts=attempts)
        else:
            await self._republish(message, f"{sub.queue}.retry", reason, attempts)
            await message.ack()
            EVENTS_HANDLED.labels(sub.queue, "retry").inc()

    async def _dead_letter(
        self, sub: Subscription, message: AbstractIncomingMessage, reason: str, attempts: int = 1
    ) -> None:
        log.error("event %s dead-lettered from %s: %s", message.message_id, sub.queue, reason)
        await self._republish(message, f"{sub.queue}.dlq", reason, attempts)
        await message.ack()
        EVENTS_HANDLED.labels(sub.queue, "dead_letter").inc()

    async def _republish(
        self, message: AbstractIncomingMessage, queue: str, reason: str, attempts: int
    ) -> None:
        assert self._publish_channel is not None
        headers = dict(message.headers or {})
        headers.update({"x-attempts": attempts, "x-last-error": reason})
        confirmation = await self._publish_channel.default_exchange.publish(
            aio_pika.Message(
                body=message.body,
                content_type=message.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message.message_id,
                type=message.type,
                headers=headers,
            ),
            routing_key=queue,
            timeout=10,
        )
        _raise_unless_acked(confirmation, queue)


async def purge_inbox(engine: AsyncEngine, older_than: timedelta = timedelta(days=14)) -> None:
    """Forgets handled ids older than any redelivery could be."""
    async with engine.begin() as conn:
        await conn.execute(delete(inbox).where(inbox.c.handled_at < func.now() - older_than))


class RelayProcess:
    """The outbox relay in a child process of the service.

    Publishing costs the producer nothing then: the registrar's SIP loop spent a fifth of
    its time under REGISTER load on the relay (AMQP frames, JSON, a span per event). The
    child is the same OutboxRelay on its own connections; the outbox table is the only
    thing the two processes share, so a crash of either loses nothing. The parent
    restarts a child that died and reports it in readiness until it is connected again.
    """

    def __init__(
        self, *, database_url: str, amqp_url: str, exchange: str, service_name: str
    ) -> None:
        self._args = (database_url, amqp_url, exchange, service_name)
        self._context = multiprocessing.get_context("spawn")
        self._connected = self._context.Event()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self.restarts = 0

    @property
    def connected(self) -> bool:
        return self._process is not None and self._process.is_alive() and self._connected.is_set()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name="outbox-relay-process")

    def _spawn(self) -> None:
        self._connected.clear()
        self._process = self._context.Process(
            target=_relay_process_main,
            args=(*self._args, logging.getLogger().level, os.getpid(), self._connected),
            name=f"{self._args[3]}-outbox-relay",
            daemon=True,
        )
        self._process.start()

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._process is not None and not self._process.is_alive():
                log.warning(
                    "outbox relay process exited (%s); starting another", self._process.exitcode
                )
                self.restarts += 1
                self._spawn()

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        process, self._process = self._process, None
        if process is None or not process.is_alive():
            return
        process.terminate()  # SIGTERM: the child stops its relay and closes its connections
        await asyncio.to_thread(process.join, 15)
        if process.is_alive():
            process.kill()
            await asyncio.to_thread(process.join, 5)


def _relay_process_main(
    database_url: str,
    amqp_url: str,
    exchange: str,
    service_name: str,
    log_level: int,
    parent_pid: int,
    connected: Any,
) -> None:
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from .telemetry import setup_tracing

    setup_tracing(service_name)
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(_relay_process(database_url, amqp_url, exchange, parent_pid, connected))


async def _relay_process(
    database_url: str, amqp_url: str, exchange: str, parent_pid: int, connected: Any
) -> None:
    from .db import make_engine

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    engine = make_engine(database_url)
    relay = OutboxRelay(
        engine=engine, database_url=database_url, amqp_url=amqp_url, exchange=exchange
    )
    await relay.start()
    try:
        # An orphan (the service was SIGKILLed) stops: the next service start relays.
        while not stopping.is_set() and os.getppid() == parent_pid:
            if relay.connected:
                connected.set()
            else:
                connected.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 0.5)
    finally:
        connected.clear()
        await relay.stop()
        await engine.dispose()
