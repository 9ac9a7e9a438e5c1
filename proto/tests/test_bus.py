"""The bus's promises, against the real PostgreSQL and RabbitMQ: each committed event
takes effect exactly once, whatever dies in between; nothing rolled back is published;
a handler that keeps failing ends in the dead-letter queue."""

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from centralino_proto.bus import Consumer, Outbox, OutboxRelay, RelayProcess
from centralino_proto.db import make_engine, make_sessionmaker
from centralino_proto.events import Envelope, UserDeleted
from centralino_proto.testing import AMQP_URL, BusProbe, until

ACTOR = Path(__file__).with_name("bus_actor.py")


@pytest.fixture
async def engine(bus_db: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(bus_db)
    yield engine
    await engine.dispose()


async def effect_counts(engine: AsyncEngine) -> tuple[int, int]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT count(*), count(DISTINCT event_id) FROM effects"))
        ).one()
    return int(row[0]), int(row[1])


async def unsent(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            await conn.scalar(text("SELECT count(*) FROM outbox WHERE sent_at IS NULL")) or 0
        )


async def write_events(engine: AsyncEngine, count: int) -> list[uuid.UUID]:
    sessions = make_sessionmaker(engine)
    outbox = Outbox(producer="test")
    ids = []
    for _ in range(count):
        async with sessions() as session, session.begin():
            envelope = await outbox.add(
                session, UserDeleted(user_id=uuid.uuid4(), tenant_id=None), tenant_id=None
            )
            ids.append(envelope.id)
    return ids


async def drain(engine: AsyncEngine, db: str, exchange: str, amqp_url: str = AMQP_URL) -> None:
    """Runs a relay until the outbox is empty."""
    relay = OutboxRelay(engine=engine, database_url=db, amqp_url=amqp_url, exchange=exchange)
    await relay.start()
    try:

        async def empty() -> bool:
            return await unsent(engine) == 0

        await until(empty, timeout=30, message="outbox drained")
    finally:
        await relay.stop()


def recording_consumer(
    engine: AsyncEngine, names: dict[str, str], amqp_url: str = AMQP_URL, **kw: Any
) -> Consumer:
    consumer = Consumer(
        sessionmaker=make_sessionmaker(engine),
        amqp_url=amqp_url,
        exchange=names["bus_exchange"],
        queue_prefix=names["bus_queue_prefix"],
        **kw,
    )

    async def record(session: AsyncSession, envelope: Envelope[Any]) -> None:
        await session.execute(
            text("INSERT INTO effects (event_id) VALUES (:id)"), {"id": envelope.id}
        )

    consumer.subscribe(UserDeleted, record)
    return consumer


async def actor(
    role: str, db: str, names: dict[str, str], *extra: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(ACTOR),
        role,
        "--db",
        db,
        "--exchange",
        names["bus_exchange"],
        "--prefix",
        names["bus_queue_prefix"],
        *extra,
        stdout=asyncio.subprocess.PIPE,
    )


async def test_consumer_killed_mid_batch_applies_each_event_once(
    bus_db: str, engine: AsyncEngine, bus_names: dict[str, str]
) -> None:
    first = await actor("consume", bus_db, bus_names, "--delay", "0.02", "--prefetch", "20")
    assert first.stdout is not None
    assert (await asyncio.wait_for(first.stdout.readline(), 60)).strip() == b"consuming"
    await write_events(engine, 200)
    await drain(engine, bus_db, bus_names["bus_exchange"])

    async def some_done() -> bool:
        return (await effect_counts(engine))[0] >= 30

    await until(some_done, timeout=60)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    done_before_kill = (await effect_counts(engine))[1]
    assert 0 < done_before_kill < 200, "the kill must land mid-batch"

    second = await actor("consume", bus_db, bus_names, "--prefetch", "50")
    try:

        async def all_done() -> bool:
            return (await effect_counts(engine))[1] == 200

        await until(all_done, timeout=90, message="all 200 effects")
        await asyncio.sleep(0.5)  # a late duplicate would show up now
        assert await effect_counts(engine) == (200, 200)
    finally:
        second.kill()
        await second.wait()


async def test_relay_publishes_what_a_dead_producer_committed(
    bus_db: str, engine: AsyncEngine, bus_names: dict[str, str]
) -> None:
    consumer = recording_consumer(engine, bus_names)
    await consumer.start()
    await consumer.wait_started()
    try:
        producer = await actor("produce", bus_db, bus_names, "--count", "50")
        assert await producer.wait() == 0
        assert await unsent(engine) == 50, (
            "the producer died with its events committed, unpublished"
        )
        relay = await actor("relay", bus_db, bus_names)
        assert await asyncio.wait_for(relay.wait(), 60) == 0

        async def all_done() -> bool:
            return (await effect_counts(engine))[1] == 50

        await until(all_done, timeout=30)
        assert await effect_counts(engine) == (50, 50)
    finally:
        await consumer.stop()


async def test_events_survive_a_broker_restart(
    bus_db: str, engine: AsyncEngine, bus_names: dict[str, str], private_broker: Any
) -> None:
    url = private_broker.amqp_url
    consumer = recording_consumer(engine, bus_names, amqp_url=url)
    await consumer.start()  # declares the durable queues, then goes away
    await consumer.wait_started()
    await consumer.stop()

    await write_events(engine, 60)
    await drain(engine, bus_db, bus_names["bus_exchange"], amqp_url=url)
    await private_broker.restart()  # published, not yet consumed

    # A relay that lives through a second restart keeps publishing afterwards.
    relay = OutboxRelay(
        engine=engine, database_url=bus_db, amqp_url=url, exchange=bus_names["bus_exchange"]
    )
    await relay.start()
    consumer = recording_consumer(engine, bus_names, amqp_url=url)
    await consumer.start()
    try:

        async def first_batch() -> bool:
            return (await effect_counts(engine))[1] == 60

        await until(first_batch, timeout=60, message="the 60 events from before the restart")
        await private_broker.restart()
        await write_events(engine, 40)

        async def all_done() -> bool:
            return (await effect_counts(engine))[1] == 100

        await until(all_done, timeout=90, message="the 40 events after the second restart")
        await asyncio.sleep(0.5)
        assert await effect_counts(engine) == (100, 100)
    finally:
        await consumer.stop()
        await relay.stop()


async def test_rolled_back_transaction_publishes_nothing(
    bus_db: str, engine: AsyncEngine, bus_names: dict[str, str]
) -> None:
    sessions = make_sessionmaker(engine)
    outbox = Outbox(producer="test")
    async with BusProbe(bus_names["bus_exchange"]) as probe:
        with pytest.raises(RuntimeError):
            async with sessions() as session, session.begin():
                await outbox.add(
                    session, UserDeleted(user_id=uuid.uuid4(), tenant_id=None), tenant_id=None
                )
                raise RuntimeError("the change failed")
        marker = (await write_events(engine, 1))[0]
        await drain(engine, bus_db, bus_names["bus_exchange"])
        await probe.wait_for("user.deleted")
        await asyncio.sleep(0.3)
        assert [e.id for e in probe.envelopes] == [marker]


async def test_failing_handler_lands_in_dead_letter_queue_after_max_attempts(
    bus_db: str, engine: AsyncEngine, bus_names: dict[str, str]
) -> None:
    calls: list[uuid.UUID] = []
    consumer = Consumer(
        sessionmaker=make_sessionmaker(engine),
        amqp_url=AMQP_URL,
        exchange=bus_names["bus_exchange"],
        queue_prefix=bus_names["bus_queue_prefix"],
        max_attempts=3,
        retry_delay_ms=200,
    )

    async def broken(session: AsyncSession, envelope: Envelope[Any]) -> None:
        calls.append(envelope.id)
        await session.execute(
            text("INSERT INTO effects (event_id) VALUES (:id)"), {"id": envelope.id}
        )
        raise ValueError("downstream refuses")

    sub = consumer.subscribe(UserDeleted, broken)
    await consumer.start()
    await consumer.wait_started()
    try:
        [event_id] = await write_events(engine, 1)
        await drain(engine, bus_db, bus_names["bus_exchange"])
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            dlq = await channel.declare_queue(f"{sub.queue}.dlq", durable=True)

            async def dead() -> aio_pika.abc.AbstractIncomingMessage | None:
                return await dlq.get(fail=False)

            message = await until(dead, timeout=30, message="the event in the DLQ")
            await message.ack()
        assert message.message_id == str(event_id)
        assert message.headers["x-attempts"] == 3
        assert "downstream refuses" in str(message.headers["x-last-error"])
        assert calls == [event_id] * 3
        assert await effect_counts(engine) == (0, 0), "a failed handler's effects roll back"
    finally:
        await consumer.stop()


async def test_same_event_delivered_twice_takes_effect_once(
    bus_db: str, engine: AsyncEngine, bus_names: dict[str, str]
) -> None:
    consumer = recording_consumer(engine, bus_names)
    await consumer.start()
    await consumer.wait_started()
    try:
        envelope = Envelope.wrap(
            UserDeleted(user_id=uuid.uuid4(), tenant_id=None), producer="test", tenant_id=None
        )
        body = envelope.model_dump_json().encode()
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(bus_names["bus_exchange"])
            for _ in range(3):  # at-least-once delivery may hand us the same event again
                await exchange.publish(
                    aio_pika.Message(body, type="user.deleted"), routing_key="user.deleted"
                )

        async def seen() -> bool:
            return (await effect_counts(engine))[0] >= 1

        await until(seen, timeout=20)
        await asyncio.sleep(1.0)
        assert await effect_counts(engine) == (1, 1)
    finally:
        await consumer.stop()


async def test_an_event_nobody_subscribes_to_does_not_wedge_the_outbox(
    bus_db: str, engine: AsyncEngine, bus_names: dict[str, str]
) -> None:
    from centralino_proto.events import TenantDeleted

    sessions = make_sessionmaker(engine)
    outbox = Outbox(producer="test")
    async with BusProbe(bus_names["bus_exchange"], ["user.deleted"]) as probe:
        async with sessions() as session, session.begin():  # no queue is bound to tenant.deleted
            await outbox.add(
                session, TenantDeleted(tenant_id=uuid.uuid4(), slug="gone"), tenant_id=None
            )
        marker = (await write_events(engine, 1))[0]
        await drain(engine, bus_db, bus_names["bus_exchange"])
        assert [e.id for e in await probe.wait_for("user.deleted")] == [marker]


async def test_relay_process_restarted_after_a_kill_loses_nothing(
    bus_db: str, engine: AsyncEngine, bus_names: dict[str, str]
) -> None:
    consumer = recording_consumer(engine, bus_names)
    await consumer.start()
    await consumer.wait_started()
    relay = RelayProcess(
        database_url=bus_db,
        amqp_url=AMQP_URL,
        exchange=bus_names["bus_exchange"],
        service_name="test",
    )
    await relay.start()
    try:
        await until(lambda: relay.connected, timeout=60, message="relay process connected")
        await write_events(engine, 50)

        async def effects(n: int) -> bool:
            return (await effect_counts(engine))[1] == n

        await until(lambda: effects(50), timeout=60, message="50 effects")
        killed = relay.pid
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        # Readiness sees the relay gone before the supervisor has replaced it.
        await until(lambda: not relay.connected, timeout=5, message="relay seen down")
        await write_events(engine, 50)  # committed while no relay runs
        await until(
            lambda: relay.connected and relay.pid != killed,
            timeout=60,
            message="relay process restarted",
        )
        await until(lambda: effects(100), timeout=60, message="100 effects")
        assert relay.restarts == 1
        assert await effect_counts(engine) == (100, 100)
    finally:
        await relay.stop()
        await consumer.stop()


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in state


async def test_relay_process_of_a_killed_service_exits(
    bus_db: str, bus_names: dict[str, str], tmp_path: Path
) -> None:
    pid_file = tmp_path / "relay.pid"
    service = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import asyncio, pathlib\n"
        "from centralino_proto.bus import RelayProcess\n"
        "async def main():\n"
        f"    relay = RelayProcess(database_url={bus_db!r}, amqp_url={AMQP_URL!r},\n"
        f"        exchange={bus_names['bus_exchange']!r}, service_name='test')\n"
        "    await relay.start()\n"
        f"    pathlib.Path({str(pid_file)!r}).write_text(str(relay.pid))\n"
        "    await asyncio.sleep(300)\n"
        "asyncio.run(main())\n",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await until(pid_file.exists, timeout=60, message="relay process started")
    child = int(pid_file.read_text())
    try:
        assert not _gone(child)
        service.send_signal(signal.SIGKILL)
        await service.wait()
        await until(lambda: _gone(child), timeout=10, message="orphaned relay exited")
    finally:
        if not _gone(child):
            os.kill(child, signal.SIGKILL)
