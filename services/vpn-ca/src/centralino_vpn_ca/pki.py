"""X.509 for the VPN: tenant CAs, device and server certificates, CRLs (pure functions)."""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
CertKind = Literal["device", "server"]

CURVE_NAMES = {"secp256r1": "p256", "secp384r1": "p384", "secp521r1": "p521"}

# Clock skew between the CA and a phone that has just booted without NTP.
BACKDATE = timedelta(minutes=5)

REVOCATION_REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key_compromise": x509.ReasonFlags.key_compromise,
    "affiliation_changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation_of_operation": x509.ReasonFlags.cessation_of_operation,
    "privilege_withdrawn": x509.ReasonFlags.privilege_withdrawn,
}


class CsrError(ValueError):
    """A certificate signing request this CA will not sign."""


def generate_key(algorithm: str) -> PrivateKey:
    """A new private key: ecdsa-p256, rsa-2048 or rsa-3072."""
    if algorithm == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm in ("rsa-2048", "rsa-3072"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(algorithm[4:]))
    raise ValueError(f"unknown key algorithm {algorithm!r}")


def key_algorithm_of(key: PublicKey) -> str:
    """The name this service uses for a public key's algorithm."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ecdsa-" + CURVE_NAMES.get(key.curve.name, key.curve.name)
    return f"rsa-{key.key_size}"


def key_to_der(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def key_to_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def key_from_der(der: bytes) -> PrivateKey:
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("unsupported private key type")
    return key


def cert_to_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def cert_from_pem(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def serial_hex(serial: int) -> str:
    """A serial as openssl prints it (upper-case hex, even length)."""
    text = format(serial, "X")
    return text if len(text) % 2 == 0 else "0" + text


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _hash_for(key: PrivateKey) -> hashes.SHA256:
    return hashes.SHA256()


def _name(common_name: str, organization: str | None = None, unit: str | None = None) -> x509.Name:
    attributes = []
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if unit:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _key_usage(*, ca: bool, rsa_key: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        # RSA key transport in older TLS suites some phone firmwares still negotiate.
        key_encipherment=rsa_key and not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class Issuer:
    """What signs: a CA's certificate and its private key."""

    certificate: x509.Certificate
    key: PrivateKey


def build_ca(
    *,
    key: PrivateKey,
    common_name: str,
    organization: str,
    unit: str,
    days: int,
    parent: Issuer | None = None,
    now: datetime | None = None,
) -> x509.Certificate:
    """A tenant CA: self-signed, or an intermediate under the operator root."""
    now = now or datetime.now(UTC)
    subject = _name(common_name, organization, unit)
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(parent.certificate.subject if parent else subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        # Path length 0: a tenant CA signs devices, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(ca=True, rsa_key=isinstance(key, rsa.RSAPrivateKey)), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    signer = parent.key if parent else key
    if parent:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()),
            critical=False,
        )
    return builder.sign(signer, _hash_for(signer))


def build_root(*, key: PrivateKey, common_name: str, days: int) -> x509.Certificate:
    """An operator root (for development and tests; production brings its own)."""
    now = datetime.now(UTC)
    subject = _name(common_name, "Centralino")
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(
            _key_usage(ca=True, rsa_key=isinstance(key, rsa.RSAPrivateKey)), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, _hash_for(key))
    )


def issue(
    *,
    issuer: Issuer,
    public_key: PublicKey,
    kind: CertKind,
    common_name: str,
    organization: str | None,
    unit: str | None,
    days: int,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
    uri: str | None = None,
    now: datetime | None = None,
) -> x509.Certificate:
    """A device (TLS client) or VPN server certificate signed by the tenant CA."""
    now = now or datetime.now(UTC)
    not_after = min(now + timedelta(days=days), issuer.certificate.not_valid_after_utc)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if kind == "device" else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organization, unit))
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(ca=False, rsa_key=isinstance(public_key, rsa.RSAPublicKey)), critical=True
        )
        # OpenVPN's remote-cert-tls checks exactly this extended key usage.
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    if uri:
        names.append(x509.UniformResourceIdentifier(uri))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer.key, _hash_for(issuer.key))


def load_csr(pem: str) -> x509.CertificateSigningRequest:
    """A CSR this CA will sign: well-formed, self-signed correctly, a key strong enough."""
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
        signed = csr.is_signature_valid
        key = csr.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CsrError(f"not a usable PEM certificate signing request ({exc})") from exc
    if not signed:
        raise CsrError("the CSR's signature does not match its public key")
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise CsrError(f"RSA keys below 2048 bits are refused (got {key.key_size})")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
            raise CsrError(f"curve {key.curve.name} is not accepted")
    else:
        raise CsrError("only RSA and ECDSA keys can be certified")
    return csr


def csr_common_name(csr: x509.CertificateSigningRequest) -> str | None:
    values = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else None


@dataclass(frozen=True)
class Revoked:
    serial: int
    revoked_at: datetime
    reason: str


def build_crl(
    *,
    issuer: Issuer,
    number: int,
    revoked: list[Revoked],
    days: int,
    now: datetime | None = None,
) -> x509.CertificateRevocationList:
    """The tenant's CRL, signed by its CA, numbered so relying parties see it move forward."""
    now = now or datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(now - BACKDATE)
        .next_update(now + timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    for entry in revoked:
        item = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
        )
        reason = REVOCATION_REASONS.get(entry.reason, x509.ReasonFlags.unspecified)
        if reason is not x509.ReasonFlags.unspecified:
            item = item.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(item.build())
    return builder.sign(issuer.key, _hash_for(issuer.key))


def crl_to_pem(crl: x509.CertificateRevocationList) -> str:
    return crl.public_bytes(serialization.Encoding.PEM).decode()


def device_uri(device_id: uuid.UUID) -> str:
    return f"urn:uuid:{device_id}"
