"""The routing service's settings (environment variables)."""

from typing import ClassVar

from centralino_proto.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: ClassVar[str] = "routing"
    http_port: ClassVar[int] = 8002

    # How often a replica compares its plan versions with the database
    # (the safety net behind the dialplan.changed signals).
    dialplan_sweep_seconds: float = 5.0
