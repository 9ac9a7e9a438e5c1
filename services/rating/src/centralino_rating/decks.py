"""Rate decks: streamed all-or-nothing CSV import (COPY) and the in-memory index in force.

Import: the CSV is read as it arrives, every row validated; valid rows stream into
PostgreSQL with COPY inside one transaction. Any bad row (or a prefix listed twice
for the same date) rolls the whole import back and every problem is reported with
its line number. The index a replica answers from is chosen by a version check
(the newest ready deck in force, one indexed query), so replicas agree as soon as
an import commits; the index itself is rebuilt once per deck version.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlmodel import col

from .lpm import PrefixIndex, Row
from .models import RateDeck

log = logging.getLogger("centralino.rating.decks")

# Header names accepted for each column (the first is the canonical one).
COLUMNS: dict[str, tuple[str, ...]] = {
    "prefix": ("prefix",),
    "destination": ("destination", "destination_name", "name"),
    "rate_per_minute": ("rate_per_minute", "rate"),
    "connection_fee": ("connection_fee", "setup_fee"),
    "billing_increment": ("billing_increment", "increment"),
    "minimum_seconds": ("minimum_seconds", "minimum", "min_seconds"),
    "effective_from": ("effective_from", "effective_date"),
}
REQUIRED = ("prefix", "destination", "rate_per_minute")
PREFIX_RE = re.compile(r"\+?([0-9]{1,15})")
MONEY_RE = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,6})?")
SECONDS_RE = re.compile(r"[0-9]{1,4}")
MAX_REPORTED_ERRORS = 1000
PROGRESS_EVERY = 100_000
COPY_BATCH = 20_000
# The canonical spellings of valid increments and minimums, for the fast path.
INCREMENTS = frozenset(str(i) for i in range(1, 3601))
MINIMUMS = frozenset(str(i) for i in range(0, 3601))


@dataclass
class RowError:
    line: int
    error: str
    column: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "error": self.error}


class DeckImportError(Exception):
    """The deck was refused; nothing of it was imported."""

    def __init__(self, errors: list[RowError], total: int) -> None:
        super().__init__(f"{total} bad rows")
        self.errors = errors
        self.total = total


@dataclass
class ImportProgress:
    """How far an import in this process has read (GET /v1/rate-decks/imports shows it)."""

    rows_read: int = 0
    started: float = field(default_factory=time.monotonic)


# Imports running in this process, by deck id.
PROGRESS: dict[uuid.UUID, ImportProgress] = {}


def parse_effective(value: str) -> datetime:
    """A date (midnight UTC) or an ISO 8601 datetime (UTC when naive)."""
    value = value.strip()
    if len(value) == 10:
        d = date.fromisoformat(value)
        return datetime(d.year, d.month, d.day, tzinfo=UTC)
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class _Parser:
    """Turns CSV lines into validated COPY rows, collecting every problem by line."""

    def __init__(self, deck_id: uuid.UUID, effective_from: datetime) -> None:
        self.deck = str(deck_id)
        self.default_effective = effective_from.isoformat()
        self.line = 0
        self.rows = 0
        self.errors: list[RowError] = []
        self.error_count = 0
        self.delimiter = ","
        self.positions: dict[str, int] | None = None
        self.width = 0
        self._effective_cache: dict[str, str] = {}
        self._fast_positions: tuple[int, ...] = ()

    def error(self, line: int, message: str, column: str | None = None) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(RowError(line, message, column))

    def _header(self, cells: list[str]) -> None:
        names = [c.strip().lower().replace(" ", "_") for c in cells]
        positions: dict[str, int] = {}
        for canonical, aliases in COLUMNS.items():
            for i, name in enumerate(names):
                if name in aliases:
                    positions[canonical] = i
                    break
        missing = [c for c in REQUIRED if c not in positions]
        if missing:
            self.error(self.line, f"header lacks column(s): {', '.join(missing)}")
        self.positions = positions
        self.width = len(names)
        self._fast_positions = tuple(
            positions.get(c, -1)
            for c in (
                "prefix",
                "destination",
                "rate_per_minute",
                "connection_fee",
                "billing_increment",
                "minimum_seconds",
                "effective_from",
            )
        )

    def _split(self, raw: str) -> list[str]:
        if '"' in raw:
            return next(csv.reader([raw], delimiter=self.delimiter))
        return raw.split(self.delimiter)

    def feed(self, lines: list[str], out: list[str] | None) -> None:
        """Validates lines; writes good rows to `out` (None once the import is doomed)."""
        for raw in lines:
            self.line += 1
            raw = raw.rstrip("\r")
            if not raw.strip():
                continue
            if self.positions is None:
                if ";" in raw and "," not in raw:
                    self.delimiter = ";"
                self._header(self._split(raw))
                continue
            try:
                cells = self._split(raw)
            except csv.Error as exc:
                self.error(self.line, f"malformed CSV: {exc}")
                continue
            row = self._fast_row(cells)
            if row is None:
                # Anything unusual takes the slow path, which names each problem.
                row = self._row(cells)
            if row is not None:
                self.rows += 1
                if out is not None and not self.error_count:
                    destination = row[2]
                    if "\\" in destination or "\t" in destination:
                        # COPY text format: the only field that may hold these.
                        row[2] = destination.replace("\\", "\\\\").replace("\t", "\\t")
                    out.append("\t".join(row))

    def _fast_row(self, cells: list[str]) -> list[str] | None:
        """The common, clean row checked cheaply; None sends it to `_row`."""
        if len(cells) != self.width:
            return None
        ip, idest, irate, ifee, iinc, imin, ieff = self._fast_positions
        prefix = cells[ip]
        if prefix[:1] == "+":
            prefix = prefix[1:]
        if not (0 < len(prefix) <= 15 and prefix.isascii() and prefix.isdigit()):
            return None
        destination = cells[idest].strip()
        rate = cells[irate]
        if not destination or len(destination) > 200 or MONEY_RE.fullmatch(rate) is None:
            return None
        fee = cells[ifee] if ifee >= 0 else "0"
        if fee != "0" and MONEY_RE.fullmatch(fee) is None:
            return None
        increment = cells[iinc] if iinc >= 0 else "1"
        minimum = cells[imin] if imin >= 0 else "0"
        if increment not in INCREMENTS or minimum not in MINIMUMS:
            return None
        effective = self.default_effective
        if ieff >= 0 and cells[ieff]:
            cached = self._effective_cache.get(cells[ieff])
            if cached is None:
                return None
            effective = cached
        return [
            self.deck,
            prefix,
            destination,
            rate,
            fee,
            increment,
            minimum,
            effective,
            str(self.line),
        ]

    def _row(self, cells: list[str]) -> list[str] | None:
        assert self.positions is not None
        if len(cells) != self.width:
            self.error(self.line, f"expected {self.width} fields, found {len(cells)}")
            return None
        pos = self.positions
        before = self.error_count
        prefix_cell = cells[pos["prefix"]].strip()
        match = PREFIX_RE.fullmatch(prefix_cell)
        if match is None:
            self.error(self.line, f"prefix {prefix_cell!r} is not 1-15 digits", "prefix")
        destination = cells[pos["destination"]].strip()
        if not destination or len(destination) > 200:
            self.error(self.line, "destination must be 1-200 characters", "destination")
        rate = cells[pos["rate_per_minute"]].strip()
        if MONEY_RE.fullmatch(rate) is None:
            self.error(self.line, f"rate {rate!r} is not a non-negative amount", "rate_per_minute")
        fee = self._cell(cells, "connection_fee") or "0"
        if MONEY_RE.fullmatch(fee) is None:
            self.error(self.line, f"connection fee {fee!r} is not an amount", "connection_fee")
        increment = self._cell(cells, "billing_increment") or "1"
        if SECONDS_RE.fullmatch(increment) is None or not 1 <= int(increment) <= 3600:
            self.error(
                self.line, f"billing increment {increment!r} is not 1-3600 s", "billing_increment"
            )
        minimum = self._cell(cells, "minimum_seconds") or "0"
        if SECONDS_RE.fullmatch(minimum) is None or int(minimum) > 3600:
            self.error(self.line, f"minimum {minimum!r} is not 0-3600 s", "minimum_seconds")
        effective = self._cell(cells, "effective_from")
        effective_iso = self.default_effective
        if effective:
            cached = self._effective_cache.get(effective)
            if cached is None:
                try:
                    cached = parse_effective(effective).isoformat()
                except ValueError:
                    self.error(
                        self.line, f"effective_from {effective!r} is not a date", "effective_from"
                    )
                    cached = ""
                else:
                    self._effective_cache[effective] = cached
            effective_iso = cached
        if self.error_count != before or match is None:
            return None
        return [
            self.deck,
            match.group(1),
            destination,
            rate,
            fee,
            increment,
            minimum,
            effective_iso,
            str(self.line),
        ]

    def _cell(self, cells: list[str], column: str) -> str:
        assert self.positions is not None
        i = self.positions.get(column)
        return cells[i].strip() if i is not None else ""


async def _raw(session: AsyncSession) -> asyncpg.Connection:
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    return driver


async def import_deck(
    session: AsyncSession,
    *,
    name: str,
    effective_from: datetime,
    chunks: AsyncIterator[bytes],
    deck_id: uuid.UUID | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> RateDeck:
    """Imports a CSV deck in the session's transaction; raises DeckImportError, writing nothing."""
    deck = RateDeck(id=deck_id or uuid.uuid4(), name=name, effective_from=effective_from)
    session.add(deck)
    await session.flush()
    parser = _Parser(deck.id, effective_from)
    progress = PROGRESS.setdefault(deck.id, ImportProgress())

    async def copy_source() -> AsyncIterator[bytes]:
        decoder = codecs.getincrementaldecoder("utf-8-sig")()
        pending = ""
        last_report = 0
        buffer: list[str] = []
        async for chunk in chunks:
            try:
                decoded = decoder.decode(chunk)
            except UnicodeDecodeError:
                parser.error(parser.line + 1, "not UTF-8 text")
                break
            lines = (pending + decoded).split("\n")
            pending = lines.pop()
            parser.feed(lines, buffer if not parser.error_count else None)
            progress.rows_read = parser.rows
            if parser.rows - last_report >= PROGRESS_EVERY:
                last_report = parser.rows
                if on_progress:
                    on_progress(parser.rows)
                log.info("deck %s: %d rows read", deck.id, parser.rows)
            if len(buffer) >= COPY_BATCH:
                yield ("\n".join(buffer) + "\n").encode()
                buffer.clear()
        else:
            try:
                tail = pending + decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                parser.error(parser.line + 1, "not UTF-8 text")
                tail = ""
            if tail:
                parser.feed([tail], buffer)
        if buffer and not parser.error_count:
            yield ("\n".join(buffer) + "\n").encode()

    try:
        raw = await _raw(session)
        await raw.copy_to_table(
            "rate",
            source=copy_source(),
            columns=[
                "deck_id",
                "prefix",
                "destination",
                "rate_per_minute",
                "connection_fee",
                "increment",
                "minimum",
                "effective_from",
                "line",
            ],
            format="text",
        )
        if parser.positions is None:
            parser.error(parser.line or 1, "empty file: a header and at least one row are needed")
        elif parser.rows == 0 and not parser.error_count:
            parser.error(parser.line, "no rates in the file")
        if not parser.error_count:
            await _check_duplicates(raw, deck.id, parser)
        if parser.error_count:
            raise DeckImportError(sorted(parser.errors, key=lambda e: e.line), parser.error_count)
        deck.status = "ready"
        deck.row_count = parser.rows
        deck.finished_at = datetime.now(UTC)
        await session.flush()
        return deck
    finally:
        PROGRESS.pop(deck.id, None)


async def _check_duplicates(raw: asyncpg.Connection, deck_id: uuid.UUID, parser: _Parser) -> None:
    rows = await raw.fetch(
        """
        SELECT prefix, array_agg(line ORDER BY line) AS lines
        FROM rate WHERE deck_id = $1
        GROUP BY prefix, effective_from HAVING count(*) > 1
        ORDER BY min(line) LIMIT $2
        """,
        deck_id,
        MAX_REPORTED_ERRORS,
    )
    for row in rows:
        first, *others = row["lines"]
        for line in others:
            parser.error(
                line, f"prefix {row['prefix']} already listed on line {first} for the same date"
            )


# -- the index in force ------------------------------------------------------


async def deck_in_force(session: AsyncSession, at: datetime) -> uuid.UUID | None:
    """The newest ready deck whose effective date has come."""
    result = await session.execute(
        select(col(RateDeck.id))
        .where(col(RateDeck.status) == "ready", col(RateDeck.effective_from) <= at)
        .order_by(col(RateDeck.effective_from).desc(), col(RateDeck.created_at).desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


_UNESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}


def _copy_rows(data: bytes) -> list[Row]:
    """Rows of a COPY TO text dump: prefix, destination, rate, fee, increment, minimum, epoch."""
    rows: list[Row] = []
    append = rows.append
    for line in data.decode().split("\n"):
        if not line:
            continue
        prefix, destination, rate, fee, increment, minimum, effective = line.split("\t")
        if "\\" in destination:
            destination = _UNESCAPE.sub(lambda m: _ESCAPES.get(m[1], m[1]), destination)
        append(
            (
                prefix,
                destination,
                int(rate),
                int(fee),
                int(increment),
                int(minimum),
                float(effective),
            )
        )
    return rows


async def load_index(engine: AsyncEngine, deck_id: uuid.UUID) -> PrefixIndex:
    """Reads one deck version (COPY out, sorted by PostgreSQL) and builds its prefix index."""
    started = time.perf_counter()
    dump = io.BytesIO()
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection
        await driver.copy_from_query(
            """
            SELECT prefix, destination,
                   (rate_per_minute * 1000000)::bigint, (connection_fee * 1000000)::bigint,
                   increment, minimum, extract(epoch FROM effective_from)::float8
            FROM rate WHERE deck_id = $1
            ORDER BY prefix COLLATE "C", effective_from
            """,
            deck_id,
            output=dump,
        )

    def build() -> PrefixIndex:
        return PrefixIndex(deck_id, _copy_rows(dump.getvalue()), presorted=True)

    # Off the event loop, so authorizations keep being answered meanwhile.
    index = await asyncio.to_thread(build)
    log.info(
        "deck %s: index of %d rates built in %.2fs",
        deck_id,
        len(index),
        time.perf_counter() - started,
    )
    return index


class DeckCache:
    """This replica's prefix indexes, keyed by deck version; the version is checked per use."""

    def __init__(self, engine: AsyncEngine, keep: int = 3) -> None:
        self._engine = engine
        self._keep = keep
        self._indexes: dict[uuid.UUID, PrefixIndex] = {}
        self._lock = asyncio.Lock()

    def put(self, index: PrefixIndex) -> None:
        self._indexes[index.deck_id] = index
        while len(self._indexes) > self._keep:
            self._indexes.pop(next(iter(self._indexes)))

    async def get(self, deck_id: uuid.UUID) -> PrefixIndex:
        """The index of a deck version, built once."""
        index = self._indexes.get(deck_id)
        if index is not None:
            return index
        async with self._lock:
            index = self._indexes.get(deck_id)
            if index is None:
                index = await load_index(self._engine, deck_id)
                self.put(index)
        return index

    async def in_force(self, session: AsyncSession, at: datetime) -> PrefixIndex | None:
        """The index of the deck in force at `at`, or None when there is no deck."""
        deck_id = await deck_in_force(session, at)
        return await self.get(deck_id) if deck_id else None
