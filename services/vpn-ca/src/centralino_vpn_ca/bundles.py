"""Phone-model provisioning bundles, built from the model table in phone_models.toml."""

from __future__ import annotations

import io
import tarfile
import time
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from .openvpn import ClientMaterial, Endpoint, client_config

MODELS_FILE = Path(__file__).with_name("phone_models.toml")
MATERIALS = ("config", "ca", "cert", "key", "tls_key")


@dataclass(frozen=True)
class PhoneModel:
    key: str
    vendor: str
    title: str
    format: str
    filename: str
    media_type: str
    legacy: bool = False
    files: dict[str, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    pvalues: dict[str, str] = field(default_factory=dict)
    # The TLS wrappings this firmware can join (see openvpn.TLS_WRAPS).
    tls_wraps: tuple[str, ...] = ("tls-crypt", "tls-auth", "none")


@dataclass(frozen=True)
class Bundle:
    filename: str
    media_type: str
    content: bytes


def _model(key: str, raw: dict[str, Any]) -> PhoneModel:
    if "tls_wraps" in raw:
        raw = {**raw, "tls_wraps": tuple(raw["tls_wraps"])}
    model = PhoneModel(key=key, **raw)
    if model.format not in RENDERERS:
        raise ValueError(f"phone model {key}: unknown format {model.format!r}")
    unknown = set(model.files.values()) - set(MATERIALS)
    if unknown:
        raise ValueError(f"phone model {key}: unknown materials {sorted(unknown)}")
    return model


@cache
def phone_models() -> dict[str, PhoneModel]:
    """Every phone model a bundle can be made for, by key."""
    with MODELS_FILE.open("rb") as handle:
        table = tomllib.load(handle)
    return {key: _model(key, raw) for key, raw in table.items()}


def _materials(model: PhoneModel, endpoint: Endpoint, material: ClientMaterial) -> dict[str, str]:
    return {
        "config": client_config(
            endpoint=endpoint, material=material, files=model.paths, legacy=model.legacy
        ),
        "ca": material.ca_pem,
        "cert": material.cert_pem,
        "key": material.key_pem,
        "tls_key": material.tls_crypt_key,
    }


def _ovpn(model: PhoneModel, endpoint: Endpoint, material: ClientMaterial) -> bytes:
    return client_config(endpoint=endpoint, material=material, legacy=model.legacy).encode()


def _tar(model: PhoneModel, endpoint: Endpoint, material: ClientMaterial) -> bytes:
    contents = _materials(model, endpoint, material)
    buffer = io.BytesIO()
    now = int(time.time())
    # Plain ustar: the busybox tar on phones knows nothing newer.
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        directories = sorted({str(Path(p).parent) for p in model.files} - {"."})
        for directory in directories:
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
            archive.addfile(info)
        for path, what in model.files.items():
            if what == "tls_key" and endpoint.tls_wrap == "none":
                continue
            data = contents[what].encode()
            info = tarfile.TarInfo(path)
            info.size, info.mtime = len(data), now
            info.mode = 0o600 if what in ("key", "tls_key") else 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _grandstream_xml(model: PhoneModel, endpoint: Endpoint, material: ClientMaterial) -> bytes:
    values = {
        "enable": "1",
        "server": endpoint.remote_host,
        "port": str(endpoint.port),
        "transport": "0" if endpoint.protocol == "udp" else "1",
        "ca": material.ca_pem,
        "cert": material.cert_pem,
        "key": material.key_pem,
    }
    items = "".join(
        f"    <{pvalue}>{escape(values[name])}</{pvalue}>\n"
        for name, pvalue in model.pvalues.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<gs_provision version="1">\n'
        f'  <config version="1">\n{items}  </config>\n</gs_provision>\n'
    ).encode()


RENDERERS = {"ovpn": _ovpn, "tar": _tar, "grandstream-xml": _grandstream_xml}


class IncompatibleModel(ValueError):
    """The phone model cannot join this endpoint."""


def check_compatible(model: PhoneModel, endpoint: Endpoint) -> None:
    """Raises IncompatibleModel when the firmware cannot do the endpoint's TLS wrapping."""
    if endpoint.tls_wrap not in model.tls_wraps:
        raise IncompatibleModel(
            f"{model.key} phones cannot join an endpoint using {endpoint.tls_wrap} "
            f"(they support: {', '.join(model.tls_wraps)})"
        )


def build_bundle(model: PhoneModel, endpoint: Endpoint, material: ClientMaterial) -> Bundle:
    """The file a phone of this model installs to join its tenant's VPN."""
    check_compatible(model, endpoint)
    content = RENDERERS[model.format](model, endpoint, material)
    return Bundle(
        filename=model.filename.format(cn=material.common_name),
        media_type=model.media_type,
        content=content,
    )
