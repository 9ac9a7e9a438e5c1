"""The in-memory longest-prefix index against a brute-force scan."""

import random
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from centralino_rating.lpm import PrefixIndex, Row

DECK = uuid.uuid4()
JAN = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
JUL = datetime(2026, 7, 1, tzinfo=UTC).timestamp()


def row(prefix: str, rate: int, effective: float = JAN) -> Row:
    return (prefix, f"dest {prefix}", rate, 0, 1, 0, effective)


def test_longest_prefix_wins_and_falls_back_through_parents() -> None:
    index = PrefixIndex(
        DECK, [row("39", 1), row("390", 2), row("3906", 3), row("393", 4), row("55", 5)]
    )
    at = datetime(2026, 3, 1, tzinfo=UTC)
    assert index.lookup("+390612345678", at).prefix == "3906"  # type: ignore[union-attr]
    assert index.lookup("+390212345678", at).prefix == "390"  # type: ignore[union-attr]
    # "3935..." sorts after "3906" and "393": found by bisect, not by scanning.
    assert index.lookup("+393351234567", at).prefix == "393"  # type: ignore[union-attr]
    assert index.lookup("+391", at).prefix == "39"  # type: ignore[union-attr]
    assert index.lookup("+5511987654321", at).prefix == "55"  # type: ignore[union-attr]
    assert index.lookup("+4930123456", at) is None


def test_rate_versions_by_effective_date() -> None:
    index = PrefixIndex(
        DECK, [row("39", 100), row("393", 300), row("393", 250, JUL), row("3933", 1, JUL)]
    )
    before = datetime(2026, 6, 30, tzinfo=UTC)
    after = datetime(2026, 7, 2, tzinfo=UTC)
    early = index.lookup("+393351234567", before)
    late = index.lookup("+393351234567", after)
    assert early is not None and late is not None
    # Not yet in force: the longer 3933 is skipped, the older 393 rate applies.
    assert (early.prefix, early.rate_per_minute) == ("393", Decimal("0.000300"))
    assert late.prefix == "3933"


def test_matches_brute_force_on_a_random_deck() -> None:
    rng = random.Random(5)
    prefixes = {
        str(rng.randint(1, 9)) + "".join(rng.choices("0123456789", k=rng.randint(0, 7)))
        for _ in range(8000)
    }
    rows = [row(p, i) for i, p in enumerate(sorted(prefixes))]
    index = PrefixIndex(DECK, rows)
    at = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    for _ in range(2000):
        number = str(rng.randint(1, 9)) + "".join(rng.choices("0123456789", k=10))
        expected = max((p for p in prefixes if number.startswith(p)), key=len, default=None)
        key, _row = index.find_row(number, at)
        assert (index.keys[key] if key >= 0 else None) == expected, number
