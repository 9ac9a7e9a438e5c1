"""The registrar service's settings (environment variables)."""

from typing import ClassVar, Literal

from pydantic import SecretStr

from centralino_proto.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: ClassVar[str] = "registrar"
    http_port: ClassVar[int] = 8001

    # The SIP loop answers phones; publishing its events runs beside it.
    outbox_relay: Literal["inline", "process"] = "process"

    # SIP listener (UDP and TCP on the same port).
    sip_host: str = "0.0.0.0"
    sip_port: int = 5060
    sip_listen: bool = True
    # The address put in Record-Route and Via; defaults to sip_host (or 127.0.0.1 for 0.0.0.0).
    sip_advertised_host: str = ""
    # Secret for the HMAC of stateless nonces; empty = random per process (development only).
    sip_nonce_secret: SecretStr = SecretStr("")
    sip_nonce_lifetime: int = 300
    # Digest algorithms offered, most preferred first (RFC 8760). Both are always verified,
    # but offering SHA-256 by default would lock out phones that give up on the first
    # challenge they cannot compute (baresip 1.0, Debian 12) instead of skipping it.
    sip_digest_algorithms: list[str] = ["MD5"]
    # Registration intervals (seconds).
    sip_min_expires: int = 60
    sip_max_expires: int = 3600
    sip_default_expires: int = 3600
    sip_max_bindings_per_aor: int = 10
    # Location write-back of refreshes, and the expiry sweep.
    sip_writeback_interval: float = 5.0
    sip_sweep_interval: float = 1.0
    # How long a binding change waits for others to share its commit (group commit).
    sip_commit_linger: float = 0.002
    # Failed authentications before a source is banned, in what window, for how long.
    sip_ban_threshold: int = 10
    sip_ban_window: float = 60.0
    sip_ban_seconds: float = 300.0

    # Call control: the per-call APIs and where PSTN calls go.
    routing_url: str = "http://127.0.0.1:8002"
    rating_url: str = "http://127.0.0.1:8003"
    carrier_uri: str = "sip:127.0.0.1:5080"
    media_uri: str = ""
    # T1, the retransmission base (Timer B = 64*T1 ends a silent branch as a 408).
    sip_t1: float = 0.5
    # Timer C (RFC 3261 16.6): how long a proxied INVITE may ring without an answer.
    sip_timer_c: float = 180.0
    # The longest an answered call may last before the proxy ends it with BYE to both
    # sides (a phone that lost power never hangs up; its call must still end and be billed).
    sip_max_call_seconds: int = 4 * 3600

    @property
    def sip_public_host(self) -> str:
        if self.sip_advertised_host:
            return self.sip_advertised_host
        return "127.0.0.1" if self.sip_host in ("0.0.0.0", "::", "") else self.sip_host
