"""A producer, relay or consumer in its own process, so tests can kill it for real.

python bus_actor.py produce|relay|consume --db URL --exchange X --prefix P [...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from centralino_proto.bus import Consumer, Outbox, OutboxRelay
from centralino_proto.db import make_engine, make_sessionmaker
from centralino_proto.events import Envelope, UserDeleted


async def produce(args: argparse.Namespace) -> None:
    """Commits events to the outbox and dies before any relay publishes them."""
    engine = make_engine(args.db)
    sessions = make_sessionmaker(engine)
    outbox = Outbox(producer="bus-actor")
    for _ in range(args.count):
        async with sessions() as session, session.begin():
            await outbox.add(
                session, UserDeleted(user_id=uuid.uuid4(), tenant_id=None), tenant_id=None
            )
    print("committed", flush=True)
    os._exit(0)  # no clean shutdown: nothing else runs after the commits


async def relay(args: argparse.Namespace) -> None:
    """Publishes whatever is unsent, then exits."""
    engine = make_engine(args.db)
    relay = OutboxRelay(
        engine=engine, database_url=args.db, amqp_url=args.amqp, exchange=args.exchange
    )
    await relay.start()
    while True:
        async with engine.connect() as conn:
            left = await conn.scalar(text("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))
        if left == 0:
            break
        await asyncio.sleep(0.1)
    await relay.stop()
    await engine.dispose()


async def consume(args: argparse.Namespace) -> None:
    """Records each event's effect; slow on purpose, so a kill lands mid-batch."""
    engine = make_engine(args.db)
    consumer = Consumer(
        sessionmaker=make_sessionmaker(engine),
        amqp_url=args.amqp,
        exchange=args.exchange,
        queue_prefix=args.prefix,
        prefetch=args.prefetch,
    )

    async def record(session: AsyncSession, envelope: Envelope[Any]) -> None:
        await session.execute(
            text("INSERT INTO effects (event_id) VALUES (:id)"), {"id": envelope.id}
        )
        await asyncio.sleep(args.delay)

    consumer.subscribe(UserDeleted, record)
    await consumer.start()
    await consumer.wait_started()
    print("consuming", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["produce", "relay", "consume"])
    parser.add_argument("--db", required=True)
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--prefix", default="actor")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--prefetch", type=int, default=10)
    args = parser.parse_args()
    asyncio.run({"produce": produce, "relay": relay, "consume": consume}[args.role](args))


if __name__ == "__main__":
    main()
