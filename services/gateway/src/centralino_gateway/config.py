"""The gateway service's settings (environment variables)."""

from typing import ClassVar

from centralino_proto.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: ClassVar[str] = "gateway"
    http_port: ClassVar[int] = 8000
