"""Events per second through outbox -> relay -> RabbitMQ -> idempotent consumer, with
each effect committed, against the same messages published straight with aio-pika
(publisher confirms) to a consumer that only acks. Prints both and the ratio.

uv run python bench/bus/run.py [--events 20000] [--producers 16]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import aio_pika
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from centralino_proto.bus import Consumer, Outbox, OutboxRelay
from centralino_proto.db import make_engine, make_sessionmaker, plumbing_metadata
from centralino_proto.events import Envelope, UserDeleted
from centralino_proto.testing import AMQP_URL, delete_bus, fresh_database, test_bus_names


async def through_outbox(events: int, producers: int) -> float:
    url = await fresh_database("bench_bus")
    engine = make_engine(url, pool_size=producers + 8)
    async with engine.begin() as conn:
        await conn.run_sync(plumbing_metadata.create_all)
        await conn.execute(text("CREATE TABLE effects (event_id uuid PRIMARY KEY)"))
    names = test_bus_names()
    sessions = make_sessionmaker(engine)
    consumer = Consumer(
        sessionmaker=sessions,
        amqp_url=AMQP_URL,
        exchange=names["bus_exchange"],
        queue_prefix=names["bus_queue_prefix"],
        prefetch=256,
    )

    async def apply(session: AsyncSession, envelope: Envelope[Any]) -> None:
        await session.execute(text("INSERT INTO effects VALUES (:id)"), {"id": envelope.id})

    consumer.subscribe(UserDeleted, apply)
    relay = OutboxRelay(
        engine=engine, database_url=url, amqp_url=AMQP_URL, exchange=names["bus_exchange"]
    )
    await consumer.start()
    await consumer.wait_started()
    await relay.start()
    outbox = Outbox(producer="bench")

    async def produce(n: int) -> None:
        for _ in range(n):  # one event per business transaction, as a service writes them
            async with sessions() as session, session.begin():
                await outbox.add(
                    session, UserDeleted(user_id=uuid.uuid4(), tenant_id=None), tenant_id=None
                )

    started = time.perf_counter()
    share = [events // producers + (1 if i < events % producers else 0) for i in range(producers)]
    await asyncio.gather(*(produce(n) for n in share))
    while True:
        async with engine.connect() as conn:
            if await conn.scalar(text("SELECT count(*) FROM effects")) >= events:
                break
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    await relay.stop()
    await consumer.stop()
    await engine.dispose()
    await delete_bus(names["bus_exchange"], names["bus_queue_prefix"])
    return events / elapsed


async def straight(events: int, producers: int) -> float:
    names = test_bus_names()
    connection = await aio_pika.connect_robust(AMQP_URL)
    publish_channel = await connection.channel(publisher_confirms=True)
    consume_channel = await connection.channel()
    await consume_channel.set_qos(prefetch_count=256)
    exchange = await publish_channel.declare_exchange(
        names["bus_exchange"], aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await consume_channel.declare_queue(
        f"{names['bus_queue_prefix']}.straight", durable=True
    )
    await queue.bind(names["bus_exchange"], routing_key="user.deleted")
    received = 0
    done = asyncio.Event()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal received
        await message.ack()
        received += 1
        if received >= events:
            done.set()

    await queue.consume(on_message)

    async def produce(n: int) -> None:
        for _ in range(n):
            envelope = Envelope.wrap(
                UserDeleted(user_id=uuid.uuid4(), tenant_id=None), producer="bench", tenant_id=None
            )
            await exchange.publish(
                aio_pika.Message(
                    envelope.model_dump_json().encode(),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    type="user.deleted",
                ),
                routing_key="user.deleted",
            )

    started = time.perf_counter()
    share = [events // producers + (1 if i < events % producers else 0) for i in range(producers)]
    await asyncio.gather(*(produce(n) for n in share))
    await done.wait()
    elapsed = time.perf_counter() - started
    await connection.close()
    await delete_bus(names["bus_exchange"], names["bus_queue_prefix"])
    return events / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--producers", type=int, default=16)
    args = parser.parse_args()
    outboxed = await through_outbox(args.events, args.producers)
    baseline = await straight(args.events, args.producers)
    print(f"bus: {args.events} events, {args.producers} concurrent producers")
    print(
        f"  outbox -> relay -> RabbitMQ -> idempotent consumer (effects committed): {outboxed:,.0f} events/s"
    )
    print(
        f"  straight aio-pika publish (confirms) -> consumer ack:                  {baseline:,.0f} events/s"
    )
    print(f"  ratio outbox/straight: {outboxed / baseline:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
