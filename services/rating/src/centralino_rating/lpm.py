"""Longest-prefix match over a rate deck, in memory: sorted arrays with parent links.

The unique prefixes are sorted; each carries the index of its longest proper
prefix that is also in the deck (its parent). For a number, the last prefix that
sorts <= it is either a prefix of the number or a string sharing the number's
longest matching prefix as its own ancestor, so the answer is on that entry's
parent chain: one bisect and at most a few hops (chain length <= prefix length).
Prices are kept as integer micro-euros (NUMERIC(18,6) exactly) in compact arrays,
so a 1,000,000-row deck is a few tens of megabytes and builds in about a second.
"""

from __future__ import annotations

import bisect
import uuid
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

MICRO = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class RateMatch:
    """The deck row that prices a number."""

    deck_id: uuid.UUID
    prefix: str
    destination: str
    rate_per_minute: Decimal
    connection_fee: Decimal
    increment: int
    minimum: int
    effective_from: datetime


# One deck row as the loader hands it over: prefix, destination, rate and fee in
# micro-euros, increment, minimum, effective_from (epoch seconds).
Row = tuple[str, str, int, int, int, int, float]


class PrefixIndex:
    """An immutable longest-prefix index over one deck version."""

    def __init__(self, deck_id: uuid.UUID, rows: Iterable[Row], *, presorted: bool = False) -> None:
        """`presorted`: rows already come by prefix (code-point order), then effective date."""
        self.deck_id = deck_id
        ordered = rows if presorted else sorted(rows, key=lambda r: (r[0], r[6]))
        self.keys: list[str] = []
        # Version span of each key in the row arrays: [start[i], start[i + 1]).
        self._start = array("i")
        self._parent = array("i")
        self._rate = array("q")
        self._fee = array("q")
        self._increment = array("i")
        self._minimum = array("i")
        self._effective = array("d")
        self._dest = array("i")
        names: dict[str, int] = {}
        self._names: list[str] = []
        stack: list[int] = []
        for prefix, destination, rate, fee, increment, minimum, effective in ordered:
            if not self.keys or self.keys[-1] != prefix:
                if self.keys and prefix < self.keys[-1]:
                    raise ValueError(f"deck rows out of order at prefix {prefix}")
                index = len(self.keys)
                while stack and not prefix.startswith(self.keys[stack[-1]]):
                    stack.pop()
                self._parent.append(stack[-1] if stack else -1)
                stack.append(index)
                self.keys.append(prefix)
                self._start.append(len(self._rate))
            name_id = names.get(destination)
            if name_id is None:
                name_id = names[destination] = len(self._names)
                self._names.append(destination)
            self._dest.append(name_id)
            self._rate.append(rate)
            self._fee.append(fee)
            self._increment.append(increment)
            self._minimum.append(minimum)
            self._effective.append(effective)
        self._start.append(len(self._rate))

    def __len__(self) -> int:
        return len(self._rate)

    def find_row(self, digits: str, at: float) -> tuple[int, int]:
        """(key, row) of the longest prefix of `digits` with a rate in force, or (-1, -1)."""
        keys, parent, start, effective = self.keys, self._parent, self._start, self._effective
        key = bisect.bisect_right(keys, digits) - 1
        while key >= 0:
            if digits.startswith(keys[key]):
                # Newest version in force at `at` (versions sorted oldest first).
                row, first = start[key + 1] - 1, start[key]
                while row >= first:
                    if effective[row] <= at:
                        return key, row
                    row -= 1
            key = parent[key]
        return -1, -1

    def lookup(self, e164: str, at: datetime | None = None) -> RateMatch | None:
        """The rate for an E.164 number (with or without '+') at a moment (default now)."""
        moment = (at or datetime.now(UTC)).timestamp()
        key, row = self.find_row(e164.lstrip("+"), moment)
        if row < 0:
            return None
        return RateMatch(
            deck_id=self.deck_id,
            prefix=self.keys[key],
            destination=self._names[self._dest[row]],
            rate_per_minute=Decimal(self._rate[row]) * MICRO,
            connection_fee=Decimal(self._fee[row]) * MICRO,
            increment=self._increment[row],
            minimum=self._minimum[row],
            effective_from=datetime.fromtimestamp(self._effective[row], UTC),
        )
