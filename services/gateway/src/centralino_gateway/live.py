"""Live events for control panels: every replica sees every event, streams a tenant's own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

log = logging.getLogger("centralino.gateway.live")


class LiveHub:
    """An exclusive queue per replica (competing consumers would split a tenant's stream)."""

    def __init__(self, *, amqp_url: str, exchange: str, buffer: int = 256) -> None:
        self._amqp_url = amqp_url
        self._exchange = exchange
        self._buffer = buffer
        self._listeners: dict[uuid.UUID, set[asyncio.Queue[dict[str, Any]]]] = {}
        self._connection: AbstractRobustConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        """Connects in the background (retrying), so a late RabbitMQ does not stop the gateway."""
        self._task = asyncio.create_task(self._run(), name="live-hub")

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._connect()
                return
            except (OSError, aio_pika.exceptions.AMQPError) as exc:
                log.warning("live events: RabbitMQ not reachable (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _connect(self) -> None:
        self._connection = await aio_pika.connect_robust(
            self._amqp_url, client_properties={"connection_name": "gateway-live"}
        )
        channel = await self._connection.channel()
        exchange = await channel.declare_exchange(
            self._exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        # Live only: nothing is kept for a replica that is not there.
        queue = await channel.declare_queue(
            exclusive=True, auto_delete=True, arguments={"x-max-length": 10000}
        )
        await queue.bind(exchange, routing_key="#")
        await queue.consume(self._on_message, no_ack=True)
        self.ready.set()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._connection:
            with contextlib.suppress(Exception):
                await self._connection.close()
        self._connection = None
        self.ready.clear()

    def listeners(self, tenant_id: uuid.UUID) -> int:
        return len(self._listeners.get(tenant_id, ()))

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            envelope = json.loads(message.body)
            tenant_id = uuid.UUID(str(envelope["tenant_id"]))
        except (ValueError, KeyError, TypeError):
            return
        for queue in list(self._listeners.get(tenant_id, ())):
            try:
                queue.put_nowait(envelope)
            except asyncio.QueueFull:
                # A stalled reader loses events rather than holding memory for everyone.
                log.warning("live stream of tenant %s is behind; event dropped", tenant_id)

    @contextlib.asynccontextmanager
    async def listen(self, tenant_id: uuid.UUID) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue of the tenant's envelopes while the context lasts."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._buffer)
        self._listeners.setdefault(tenant_id, set()).add(queue)
        try:
            yield queue
        finally:
            listeners = self._listeners.get(tenant_id)
            if listeners is not None:
                listeners.discard(queue)
                if not listeners:
                    del self._listeners[tenant_id]
