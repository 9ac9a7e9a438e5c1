"""The vpn-ca service's settings (environment variables)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr, model_validator

from centralino_proto.settings import ServiceSettings

KeyAlgorithm = Literal["ecdsa-p256", "rsa-2048", "rsa-3072"]

# Development only; refused in production like every other placeholder secret.
DEV_KEK = "dev-vpn-ca-kek-not-for-production"


class Settings(ServiceSettings):
    service_name: ClassVar[str] = "vpn-ca"
    http_port: ClassVar[int] = 8005

    # Key-encryption key: every private key the CA holds is sealed under a key derived from it.
    ca_kek: SecretStr = SecretStr(DEV_KEK)
    # During a rotation: the KEK being retired (blobs under it are re-sealed at start).
    ca_kek_previous: SecretStr | None = None
    key_algorithm: KeyAlgorithm = "ecdsa-p256"
    ca_validity_days: int = Field(3650, ge=1, le=36500)
    device_validity_days: int = Field(1095, ge=1, le=3650)
    server_validity_days: int = Field(1095, ge=1, le=3650)
    # A CRL is re-signed when less than half of this is left (OpenVPN refuses an expired CRL).
    crl_validity_days: int = Field(7, ge=1, le=365)
    # Optional operator root: tenant CAs become intermediates under it.
    root_ca_cert_file: str | None = None
    root_ca_key_file: str | None = None
    root_ca_key_passphrase: SecretStr | None = None

    # Defaults for a tenant's VPN endpoint (each can be set per tenant).
    vpn_remote_host: str = "vpn.centralino.test"
    vpn_port_base: int = Field(1194, ge=1, le=65000)
    vpn_protocol: Literal["udp", "tcp"] = "udp"
    vpn_subnet_pool: str = "10.8.0.0/16"
    vpn_subnet_prefix: int = Field(24, ge=16, le=29)
    # The SIP edge pushed as a route to clients; None: the server's own tunnel address.
    sip_edge: str | None = None

    # Public base of /v1/provisioning/{token} (the gateway in front of this service).
    provisioning_base_url: str = "http://127.0.0.1:8000"
    provisioning_token_ttl_seconds: int = Field(86400, ge=60, le=30 * 86400)

    @model_validator(mode="after")
    def _kek_is_real(self) -> Settings:
        kek = self.ca_kek.get_secret_value()
        if self.environment == "production" and (kek == DEV_KEK or len(kek) < 32):
            raise ValueError("CA_KEK must be set to a real secret (32+ characters) in production")
        if bool(self.root_ca_cert_file) != bool(self.root_ca_key_file):
            raise ValueError("ROOT_CA_CERT_FILE and ROOT_CA_KEY_FILE go together")
        return self
