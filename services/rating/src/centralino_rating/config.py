"""The rating service's settings (environment variables)."""

from decimal import Decimal
from typing import ClassVar

from centralino_proto.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: ClassVar[str] = "rating"
    http_port: ClassVar[int] = 8003

    # The longest call one authorization allows (and reserves credit for).
    max_call_seconds: int = 3600
    # A reservation outlives its call by this much before its credit is freed
    # (covers a late call.ended; after it, the credit is released unseen).
    reservation_grace_seconds: int = 900
    did_monthly_fee: Decimal = Decimal("2.00")
    link_setup_fee: Decimal = Decimal("25.00")
    # How often recurring charges (plan fees, DIDs) are looked at.
    billing_interval_seconds: float = 60.0
    # How often a replica looks for a new deck version to build ahead of use.
    deck_poll_seconds: float = 5.0
