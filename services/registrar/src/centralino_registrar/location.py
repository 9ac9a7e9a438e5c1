"""The location service: bindings in memory, persisted to PostgreSQL, swept on expiry.

A change to the set of bindings of an address-of-record (a binding appears or goes) is
written in one transaction with its event before the REGISTER is answered, several
REGISTERs sharing one commit (group commit). A refresh only touches memory; the writer
flushes refreshed bindings every few seconds (write-back), so a restart keeps every
binding that has not expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import ipaddress
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import Executable, Table, delete, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker
from sqlmodel import col

from centralino_proto.bus import NOTIFY_CHANNEL, Outbox
from centralino_proto.events import DeviceRegistered, DeviceUnregistered, Event, Transport
from centralino_proto.events import UnregisterReason as Reason

from .models import BindingRow, Device

log = logging.getLogger("centralino.registrar.location")

BINDINGS = Gauge("centralino_sip_bindings", "Current SIP bindings")
WRITER_FAILURES = Counter("centralino_sip_location_write_failures_total", "Failed location writes")

AorKey = tuple[uuid.UUID, str]
# Core statements on the hot path (the ORM's bulk machinery costs milliseconds per batch).
BINDING_TABLE: Table = BindingRow.__table__  # type: ignore[attr-defined]


@functools.cache
def _upsert() -> Executable:
    """INSERT ... ON CONFLICT DO UPDATE of every column, built once: constructing it
    (the `excluded` alias and its columns) cost more than executing a small batch."""
    statement = pg_insert(BINDING_TABLE)
    return statement.on_conflict_do_update(
        index_elements=["binding_id"],
        set_={
            c.name: statement.excluded[c.name] for c in BINDING_TABLE.c if c.name != "binding_id"
        },
    )


_COLUMNS = [c.name for c in BINDING_TABLE.c]


@functools.cache
def _registrations_sql() -> str:
    """Deletes ($1), upserts (a column array each) and their events, in one statement."""
    table = BINDING_TABLE.name
    dialect = postgresql.dialect()
    arrays = ", ".join(
        f"${i}::{c.type.compile(dialect=dialect)}[]" for i, c in enumerate(BINDING_TABLE.c, 2)
    )
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in _COLUMNS if name != "binding_id")
    events = len(_COLUMNS) + 2
    return (
        f"WITH gone AS (DELETE FROM {table} WHERE binding_id = ANY($1::uuid[])), "
        f"kept AS (INSERT INTO {table} ({', '.join(_COLUMNS)}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT (binding_id) DO UPDATE SET {updates}), "
        f"announced AS ({Outbox.insert_sql(events)}) "
        f"SELECT pg_notify('{NOTIFY_CHANNEL}', '') WHERE cardinality(${events}::uuid[]) > 0"
    )


@dataclass(slots=True)
class Binding:
    """One contact of an address-of-record, with where it really came from (RFC 3581)."""

    binding_id: uuid.UUID
    tenant_id: uuid.UUID
    device_id: uuid.UUID
    username: str
    extension: str
    aor: str
    contact: str
    expires_at: float
    registered_at: float
    call_id: str
    cseq: int
    source_ip: str
    source_port: int
    transport: str
    q: float | None = None
    user_agent: str | None = None
    instance: str | None = None
    connection_id: int | None = None

    @property
    def key(self) -> AorKey:
        return (self.tenant_id, self.extension)

    def expires_in(self, now: float | None = None) -> int:
        return max(0, round(self.expires_at - (now or time.time())))

    def destination(self, contact_host: str, contact_port: int | None) -> tuple[str, str, int]:
        """Where requests for this binding go: the source address when the contact is
        not reachable as given (behind NAT, or a connection-oriented transport)."""
        if self.transport != "udp":
            return self.transport, self.source_ip, self.source_port
        host = contact_host.strip("[]")
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(host)
            if address.is_private or address.is_loopback or address.is_link_local:
                if (host, contact_port or 5060) != (self.source_ip, self.source_port):
                    return self.transport, self.source_ip, self.source_port
            return self.transport, host, contact_port or 5060
        return self.transport, self.source_ip, self.source_port

    def row(self) -> dict[str, Any]:
        return {
            "binding_id": self.binding_id,
            "tenant_id": self.tenant_id,
            "device_id": self.device_id,
            "extension": self.extension,
            "aor": self.aor,
            "contact": self.contact,
            "expires_at": datetime.fromtimestamp(self.expires_at, UTC),
            "registered_at": datetime.fromtimestamp(self.registered_at, UTC),
            "call_id": self.call_id,
            "cseq": self.cseq,
            "q": self.q,
            "user_agent": self.user_agent,
            "source_ip": self.source_ip,
            "source_port": self.source_port,
            "transport": self.transport,
            "instance": self.instance,
        }


def registered_event(b: Binding) -> DeviceRegistered:
    return DeviceRegistered(
        tenant_id=b.tenant_id,
        device_id=b.device_id,
        extension=b.extension,
        username=b.username,
        aor=b.aor,
        contact=b.contact,
        source=f"{b.source_ip}:{b.source_port}",
        transport=Transport(b.transport),
        user_agent=b.user_agent,
        expires_at=datetime.fromtimestamp(b.expires_at, UTC),
    )


def unregistered_event(b: Binding, reason: Reason) -> DeviceUnregistered:
    return DeviceUnregistered(
        tenant_id=b.tenant_id,
        device_id=b.device_id,
        extension=b.extension,
        aor=b.aor,
        contact=b.contact,
        reason=reason,
    )


class AorLock(asyncio.Lock):
    """An asyncio.Lock that a synchronous caller can also take when it is free."""

    def try_acquire(self) -> bool:
        """Takes the lock if nobody holds or waits for it, without yielding to the loop
        (what `acquire` does in that case, minus the coroutine)."""
        if self.locked() or self._waiters:
            return False
        self._locked = True
        return True


@dataclass
class Change:
    """What one REGISTER (or sweep, or removal) does to the stored location."""

    upserts: list[Binding] = field(default_factory=list)
    deletes: list[Binding] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # Other statements that belong with the events (the dialog of a call event).
    statements: list[Executable] = field(default_factory=list)
    # A binding change need not wait for the WAL to reach disk: the commit stays atomic
    # (binding and event together, or neither), a PostgreSQL crash can only lose the last
    # fraction of a second of them, and the phone registers again at its next refresh.
    # Waiting for fsync put checkpoint stalls straight into REGISTER response times.
    # Call records (billing) stay durable.
    durable: bool = True


class Location:
    """Bindings by address-of-record, in memory; the writer keeps PostgreSQL in step."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        writeback_interval: float = 5.0,
        sweep_interval: float = 1.0,
        commit_linger: float = 0.0,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.outbox = outbox
        self.writeback_interval = writeback_interval
        self.sweep_interval = sweep_interval
        self.commit_linger = commit_linger
        self.aors: dict[AorKey, dict[uuid.UUID, Binding]] = {}
        self._locks: dict[AorKey, AorLock] = {}
        self._heap: list[tuple[float, uuid.UUID, AorKey]] = []
        self._dirty: dict[uuid.UUID, Binding] = {}
        self._pending: list[tuple[Change, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Test hook: a storage failure injected in the writer (proves the 500 path).
        self.fail_writes: Callable[[], Awaitable[None]] | None = None
        self.count = 0
        self.engine = sessionmaker.kw["bind"]
        self._connection: AsyncConnection | None = None

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        await self.load()
        self._tasks = [
            asyncio.create_task(self._writer(), name="location-writer"),
            asyncio.create_task(self._sweeper(), name="location-sweeper"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        # Last write-back (and whatever waits for a commit), so a clean restart loses nothing.
        pending, self._pending = self._pending, []
        try:
            await self._flush(pending)
        except Exception as exc:
            for _, future in pending:
                if not future.done():
                    future.set_exception(exc)
        else:
            for _, future in pending:
                if not future.done():
                    future.set_result(None)
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    async def load(self) -> None:
        """Loads the bindings that have not expired (and whose device still exists)."""
        now = datetime.now(UTC)
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                delete(BindingRow).where(
                    (col(BindingRow.expires_at) <= now)
                    | col(BindingRow.device_id).notin_(select(col(Device.id)))
                )
            )
            rows = (
                await session.execute(
                    select(BindingRow, col(Device.username)).join(
                        Device, col(Device.id) == col(BindingRow.device_id)
                    )
                )
            ).all()
        for row, username in rows:
            self._put(
                Binding(
                    binding_id=row.binding_id,
                    tenant_id=row.tenant_id,
                    device_id=row.device_id,
                    username=username,
                    extension=row.extension,
                    aor=row.aor,
                    contact=row.contact,
                    expires_at=row.expires_at.timestamp(),
                    registered_at=row.registered_at.timestamp(),
                    call_id=row.call_id,
                    cseq=row.cseq,
                    q=row.q,
                    user_agent=row.user_agent,
                    source_ip=row.source_ip,
                    source_port=row.source_port,
                    transport=row.transport,
                    instance=row.instance,
                )
            )
        log.info("location: %d bindings loaded", self.count)

    # -- reads ----------------------------------------------------------------

    def lock(self, key: AorKey) -> AorLock:
        """The lock that orders changes to one AoR's bindings."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = AorLock()
        return lock

    def bindings(self, key: AorKey) -> list[Binding]:
        now = time.time()
        return [b for b in self.aors.get(key, {}).values() if b.expires_at > now]

    def of_tenant(self, tenant_id: uuid.UUID) -> list[Binding]:
        now = time.time()
        return [
            b
            for key, bindings in self.aors.items()
            if key[0] == tenant_id
            for b in bindings.values()
            if b.expires_at > now
        ]

    # -- writes ---------------------------------------------------------------

    def _put(self, b: Binding) -> None:
        bindings = self.aors.setdefault(b.key, {})
        if b.binding_id not in bindings:
            self.count += 1
        bindings[b.binding_id] = b
        heapq.heappush(self._heap, (b.expires_at, b.binding_id, b.key))
        BINDINGS.set(self.count)

    def _drop(self, b: Binding) -> None:
        bindings = self.aors.get(b.key)
        if bindings and bindings.pop(b.binding_id, None) is not None:
            self.count -= 1
            if not bindings:
                del self.aors[b.key]
        self._dirty.pop(b.binding_id, None)
        BINDINGS.set(self.count)

    def refresh(self, b: Binding) -> None:
        """A binding changed only in memory (a refresh); the writer flushes it later."""
        self._put(b)
        self._dirty[b.binding_id] = b

    async def commit(self, change: Change) -> None:
        """Persists a change to the set of bindings with its events; raises when storage fails.

        Memory is updated only after the commit, so a failure leaves nothing half-written.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((change, future))
        self._wake.set()
        await future
        for b in change.deletes:
            self._drop(b)
        for b in change.upserts:
            self._put(b)
            self._dirty.pop(b.binding_id, None)

    async def remove(
        self, bindings: Iterable[Binding], reason: Reason, *, session: AsyncSession | None = None
    ) -> list[Binding]:
        """Removes bindings and announces each; in `session` when given (the caller commits)."""
        gone = list(bindings)
        if not gone:
            return gone
        if session is not None:
            await self._apply(session, Change(deletes=gone))
            for b in gone:
                await self.outbox.add(session, unregistered_event(b, reason), tenant_id=b.tenant_id)
            for b in gone:
                self._drop(b)
        else:
            await self.commit(
                Change(deletes=gone, events=[unregistered_event(b, reason) for b in gone])
            )
        return gone

    async def _writer(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.writeback_interval)
            if self.commit_linger and 0 < len(self._pending) < 500:
                # A statement costs the same for one REGISTER as for fifty: under load,
                # waiting a few milliseconds for the ones behind it pays for itself.
                await asyncio.sleep(self.commit_linger)
            self._wake.clear()
            batch, self._pending = self._pending[:500], self._pending[500:]
            if self._pending:
                self._wake.set()
            try:
                await self._flush(batch)
            except Exception as exc:
                WRITER_FAILURES.inc()
                log.warning("location: write failed (%s)", exc)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def _flush(self, batch: list[tuple[Change, asyncio.Future[None]]]) -> None:
        dirty = list(self._dirty.values())
        if not batch and not dirty:
            return
        # The writer keeps one connection: a pool checkout (with its ping) per batch
        # costs more round trips than the batch itself.
        if self._connection is None or self._connection.closed:
            self._connection = await self.engine.connect()
            # Binding changes need not wait for fsync (see Change.durable); a durable
            # batch asks for it in its own transaction.
            await self._connection.exec_driver_sql("SET synchronous_commit = off")
            await self._connection.commit()
        if self.fail_writes and batch:
            await self.fail_writes()
        deletes = [b for change, _ in batch for b in change.deletes]
        # A binding removed later in the batch is not written back (ids are never reused).
        gone = {b.binding_id for b in deletes}
        upserts = [
            b
            for b in dirty + [b for change, _ in batch for b in change.upserts]
            if b.binding_id not in gone
        ]
        events = [
            (event, getattr(event, "tenant_id", None))
            for change, _ in batch
            for event in change.events
        ]
        try:
            if any(change.durable or change.statements for change, _ in batch):
                async with AsyncSession(bind=self._connection) as session, session.begin():
                    await session.execute(text("SET LOCAL synchronous_commit = on"))
                    await self._apply(session, Change(upserts=upserts, deletes=deletes))
                    for change, _ in batch:
                        for statement in change.statements:
                            await session.execute(statement)
                    await self.outbox.add_many(session, events)
            else:
                await self._write_registrations(upserts, deletes, events)
        except Exception:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None
            raise
        for b in dirty:
            if self._dirty.get(b.binding_id) is b:
                del self._dirty[b.binding_id]

    async def _write_registrations(
        self,
        upserts: list[Binding],
        deletes: list[Binding],
        events: list[tuple[Event, uuid.UUID | None]],
    ) -> None:
        """The REGISTER and sweep batches: one statement, so one round trip and atomic
        on its own (the ORM's transaction, SET and NOTIFY were five)."""
        assert self._connection is not None
        raw = await self._connection.get_raw_connection()
        assert raw.driver_connection is not None
        # The last version of a binding wins when a batch holds several.
        rows = list({b.binding_id: b.row() for b in upserts}.values())
        columns = [[row[name] for row in rows] for name in _COLUMNS]
        await raw.driver_connection.execute(
            _registrations_sql(),
            [b.binding_id for b in deletes],
            *columns,
            *self.outbox.insert_params(self.outbox.wrap(events)),
        )

    @staticmethod
    async def _apply(session: AsyncSession, change: Change) -> None:
        if change.deletes:
            await session.execute(
                delete(BINDING_TABLE).where(
                    BINDING_TABLE.c.binding_id.in_([b.binding_id for b in change.deletes])
                )
            )
        if change.upserts:
            # The last version of a binding wins when a batch holds several.
            rows = {b.binding_id: b.row() for b in change.upserts}
            await session.execute(_upsert(), list(rows.values()))

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("location: sweep failed (%s); retrying", exc)

    async def sweep(self) -> int:
        """Removes expired bindings and announces each (reason expired)."""
        now = time.time()
        expired: list[Binding] = []
        seen: set[uuid.UUID] = set()
        while self._heap and self._heap[0][0] <= now and len(expired) < 2000:
            at, binding_id, key = heapq.heappop(self._heap)
            b = self.aors.get(key, {}).get(binding_id)
            # Stale heap entries (refreshed or removed bindings) are skipped.
            if b is None or b.expires_at != at or binding_id in seen:
                continue
            seen.add(binding_id)
            expired.append(b)
        if not expired:
            return 0
        try:
            await self.commit(
                Change(
                    deletes=expired,
                    events=[unregistered_event(b, Reason.expired) for b in expired],
                    durable=False,
                )
            )
        except Exception:
            for b in expired:
                heapq.heappush(self._heap, (b.expires_at, b.binding_id, b.key))
            raise
        return len(expired)
