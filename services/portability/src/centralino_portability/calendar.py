"""The Italian business calendar: Monday to Friday, less the national holidays."""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

import holidays

# Law 151/2025 made St Francis (4 October) a national holiday again from 2026;
# older releases of `holidays` lack it, so it is added here when missing.
SAINT_FRANCIS_FROM = 2026
SAINT_FRANCIS = "San Francesco d'Assisi, patrono d'Italia"

MAX_DAYS = 3650


@lru_cache(maxsize=64)
def holidays_of(year: int) -> dict[date, str]:
    """The Italian national holidays of a year, by date."""
    days = {day: str(name) for day, name in holidays.Italy(years=year, language="it_IT").items()}
    october_4 = date(year, 10, 4)
    if year >= SAINT_FRANCIS_FROM and october_4 not in days:
        days[october_4] = SAINT_FRANCIS
    return dict(sorted(days.items()))


def holiday_name(day: date) -> str | None:
    """The holiday's name when the date is an Italian national holiday."""
    return holidays_of(day.year).get(day)


def is_business_day(day: date) -> bool:
    """Monday to Friday and not a national holiday."""
    return day.weekday() < 5 and holiday_name(day) is None


def add_business_days(start: date, days: int) -> date:
    """The date `days` business days after `start` (`start` itself when 0)."""
    if not 0 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 0 and {MAX_DAYS}")
    day = start
    counted = 0
    while counted < days:
        day += timedelta(days=1)
        if is_business_day(day):
            counted += 1
    return day


def holidays_between(start: date, end: date) -> list[tuple[date, str]]:
    """The holidays falling on weekdays after `start` up to `end` (the days skipped)."""
    out: list[tuple[date, str]] = []
    day = start + timedelta(days=1)
    while day <= end:
        name = holiday_name(day)
        if name is not None and day.weekday() < 5:
            out.append((day, name))
        day += timedelta(days=1)
    return out
