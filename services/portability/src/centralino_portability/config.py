"""The portability service's settings (environment variables)."""

from typing import ClassVar

from centralino_proto.settings import ServiceSettings

# AGCOM service codes (COS) seen on Italian migration codes: 001-017, and 222 / 999
# for "pure" number portability. Configuration, so a new code needs no release.
DEFAULT_COS_VALUES = [f"{n:03d}" for n in range(1, 18)] + ["222", "999"]


class Settings(ServiceSettings):
    service_name: ClassVar[str] = "portability"
    http_port: ClassVar[int] = 8004

    # Known service codes (the COS part of a migration code).
    migration_cos_values: list[str] = DEFAULT_COS_VALUES
    # A wrong check character: real codes without a COS exist, so by default a warning.
    migration_check_strict: bool = False
    # "About 10 business days" from submission to completion.
    port_business_days: int = 10
    # Business days from completion to closure.
    close_business_days: int = 1
    # The last phone bill and the signed consent: PDF or image, at most this size.
    attachment_max_bytes: int = 10 * 1024 * 1024
    attachments_per_request: int = 20
    # A GNR range may not expand to more numbers than this.
    gnr_max_numbers: int = 1000
    # The donor adapter new requests go to.
    donor_adapter: str = "simulated"
    # How often open requests are synchronised with their donors; 0 disables the loop.
    donor_poll_seconds: float = 60.0
    # The recipient operator, as the consent document names it.
    operator_name: str = "Centralino"
    # Business dates are counted in this zone.
    calendar_timezone: str = "Europe/Rome"
