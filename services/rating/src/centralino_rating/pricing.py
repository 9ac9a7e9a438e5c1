"""Per-second call arithmetic, in Decimal, rounded to the micro-euro once per step."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from centralino_proto.events import CallClass

from .lpm import RateMatch

MICRO = Decimal("0.000001")
ZERO = Decimal("0.000000")
HUNDRED = Decimal("100")

# Calls that never touch credit: they stay on our network or must always connect.
FREE_CLASSES = frozenset(
    {
        CallClass.internal,
        CallClass.on_net,
        CallClass.inter_company,
        CallClass.emergency,
        CallClass.toll_free,
    }
)
# Which FLAT bundle a class draws on.
BUNDLE_OF = {CallClass.national_fixed: "fixed", CallClass.mobile: "mobile"}


def money(value: Decimal) -> Decimal:
    """Rounds to NUMERIC(18, 6), half up."""
    return value.quantize(MICRO, rounding=ROUND_HALF_UP)


def marked_up(amount: Decimal, percent: Decimal) -> Decimal:
    """amount + percent %."""
    if not percent:
        return amount
    return money(amount * (HUNDRED + percent) / HUNDRED)


def billed_seconds(seconds: int, *, increment: int, minimum: int) -> int:
    """Seconds charged: at least the minimum, rounded up to the billing increment."""
    if seconds <= 0:
        return 0
    seconds = max(seconds, minimum)
    step = max(increment, 1)
    return -(-seconds // step) * step


def deck_cost(rate: RateMatch, seconds: int, *, connection_fee: bool = True) -> Decimal:
    """What `seconds` (already billed) cost at the deck rate, per second."""
    if seconds <= 0:
        return ZERO
    fee = rate.connection_fee if connection_fee else ZERO
    return money(fee + rate.rate_per_minute * seconds / 60)


@dataclass(frozen=True)
class Charge:
    """One call priced: what the bundle covers and what credit pays."""

    bundle_seconds: int
    charged_seconds: int
    cost: Decimal
    price: Decimal
    station_price: Decimal


def price_call(
    rate: RateMatch,
    seconds: int,
    *,
    bundle_available: int,
    reseller_markup: Decimal,
    station_markup: Decimal,
) -> Charge:
    """Prices a call: bundle seconds first, the rest at the deck rate.

    cost: the deck rate on the seconds credit pays (bundle seconds are paid by the
    plan fee); price: cost plus the reseller markup, what the tenant's credit pays;
    station_price: the whole call at deck rate plus both markups, what the guest or
    desk is billed (the tenant's bundle is not the guest's).
    """
    bundle = max(0, min(seconds, bundle_available))
    rest = seconds - bundle
    # A call that starts inside the bundle already paid its setup: no fee, no minimum.
    charged = billed_seconds(
        rest, increment=rate.increment, minimum=rate.minimum if bundle == 0 else 0
    )
    cost = deck_cost(rate, charged, connection_fee=bundle == 0)
    price = marked_up(cost, reseller_markup)
    whole = deck_cost(rate, billed_seconds(seconds, increment=rate.increment, minimum=rate.minimum))
    station_price = marked_up(marked_up(whole, reseller_markup), station_markup)
    return Charge(bundle, charged, cost, price, station_price)


def affordable_seconds(
    rate: RateMatch, *, credit: Decimal, reseller_markup: Decimal, with_bundle: bool, cap: int
) -> int:
    """The longest call (in whole increments, up to `cap`) whose price fits in `credit`."""

    def price(seconds: int) -> Decimal:
        charged = billed_seconds(
            seconds, increment=rate.increment, minimum=0 if with_bundle else rate.minimum
        )
        return marked_up(deck_cost(rate, charged, connection_fee=not with_bundle), reseller_markup)

    if credit <= 0:
        return 0
    per_second = rate.rate_per_minute * (HUNDRED + reseller_markup) / HUNDRED / 60
    if per_second <= 0:
        return cap if price(cap) <= credit else 0
    fee = ZERO if with_bundle else marked_up(rate.connection_fee, reseller_markup)
    step = max(rate.increment, 1)
    estimate = int((credit - fee) / per_second) if credit > fee else 0
    seconds = min(cap, estimate // step * step + step)
    # The estimate ignores rounding; step down until the exact price fits.
    while seconds > 0 and price(seconds) > credit:
        seconds -= step
    return max(seconds, 0)
