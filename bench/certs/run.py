"""Device certificates issued per second: vpn-ca's signing path against the openssl command line.

Both sides do the same work per certificate: make the device's key pair, build a
clientAuth certificate with the same extensions, sign it with the tenant CA.
vpn-ca also seals the new private key under the KEK (AES-256-GCM), as it does
for real. Run: `uv run python bench/certs/run.py [--seconds 5]`.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from centralino_proto.testing import service_under_test
from centralino_vpn_ca import pki
from centralino_vpn_ca.config import Settings
from centralino_vpn_ca.main import create_app
from centralino_vpn_ca.vault import KeyVault

OPENSSL_KEY = {
    "ecdsa-p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
    "rsa-2048": ["-newkey", "rsa:2048"],
}


def rate(work: Callable[[int], None], seconds: float, minimum: int) -> tuple[float, int]:
    """Certificates per second over at least `seconds` and `minimum` certificates."""
    done = 0
    started = time.perf_counter()
    while done < minimum or time.perf_counter() - started < seconds:
        work(done)
        done += 1
    return done / (time.perf_counter() - started), done


def in_process(algorithm: str, seconds: float) -> tuple[float, int]:
    ca_key = pki.generate_key(algorithm)
    issuer = pki.Issuer(
        certificate=pki.build_ca(
            key=ca_key,
            common_name="Bench VPN CA",
            organization="Centralino",
            unit="bench",
            days=3650,
        ),
        key=ca_key,
    )
    vault = KeyVault("bench-kek-bench-kek-bench-kek-bench-kek")

    def issue_one(i: int) -> None:
        key = pki.generate_key(algorithm)
        cert = pki.issue(
            issuer=issuer,
            public_key=key.public_key(),
            kind="device",
            common_name=f"dev-{i}",
            organization="Bench",
            unit=None,
            days=825,
            uri=pki.device_uri(uuid.uuid4()),
        )
        vault.seal(pki.key_to_der(key), context=f"cert:{i}")
        pki.cert_to_pem(cert)

    return rate(issue_one, seconds, 5)


def with_openssl(algorithm: str, seconds: float, workdir: Path) -> tuple[float, int]:
    ca_key = pki.generate_key(algorithm)
    ca = pki.build_ca(
        key=ca_key, common_name="Bench VPN CA", organization="Centralino", unit="bench", days=3650
    )
    (workdir / "ca.pem").write_text(pki.cert_to_pem(ca))
    (workdir / "ca.key").write_text(pki.key_to_pem(ca_key))

    def issue_one(i: int) -> None:
        subprocess.run(
            [
                "openssl",
                "req",
                "-new",
                "-x509",
                *OPENSSL_KEY[algorithm],
                "-nodes",
                "-keyout",
                str(workdir / "dev.key"),
                "-out",
                str(workdir / "dev.pem"),
                "-subj",
                f"/O=Bench/CN=dev-{i}",
                "-days",
                "825",
                "-sha256",
                "-CA",
                str(workdir / "ca.pem"),
                "-CAkey",
                str(workdir / "ca.key"),
                "-addext",
                "basicConstraints=critical,CA:FALSE",
                "-addext",
                "keyUsage=critical,digitalSignature"
                + (",keyEncipherment" if algorithm.startswith("rsa") else ""),
                "-addext",
                "extendedKeyUsage=clientAuth",
                "-addext",
                f"subjectAltName=URI:urn:uuid:{uuid.uuid4()}",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    return rate(issue_one, seconds, 5)


async def through_api(algorithm: str, seconds: float) -> tuple[float, int]:
    """The whole service path: HTTP, JWT, sign, seal, one PostgreSQL transaction with the outbox."""
    async with (
        service_under_test(create_app, Settings, db_name="bench_vpn_ca") as harness,
        # A consumer of cert.* as in production (the gateway's webhooks), so events route.
        harness.probe("cert.#"),
    ):
        tenant = await harness.add_tenant("bench")
        headers = harness.mint.headers("operator")
        body = {"key_algorithm": algorithm}
        assert (
            await harness.client.post("/v1/tenants/bench/ca", json=body, headers=headers)
        ).status_code == 201
        done = 0
        started = time.perf_counter()
        while done < 5 or time.perf_counter() - started < seconds:
            response = await harness.client.post(
                "/v1/tenants/bench/certificates", json={"key_algorithm": algorithm}, headers=headers
            )
            assert response.status_code == 201, response.text
            done += 1
        assert tenant
        return done / (time.perf_counter() - started), done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    args = parser.parse_args()
    print("device certificates issued per second (key generation + signing), higher is better")
    print("  core: vpn-ca's signing code in process; api: POST .../certificates end to end")
    print(
        f"{'algorithm':<12}{'core':>12}{'api':>12}{'openssl CLI':>14}{'core/cli':>10}{'api/cli':>9}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for algorithm in ("ecdsa-p256", "rsa-2048"):
            core, _ = in_process(algorithm, args.seconds)
            api, _ = asyncio.run(through_api(algorithm, args.seconds))
            cli, _ = with_openssl(algorithm, args.seconds, Path(tmp))
            print(
                f"{algorithm:<12}{core:>10.1f}/s{api:>10.1f}/s{cli:>12.1f}/s"
                f"{core / cli:>9.2f}x{api / cli:>8.2f}x"
            )


if __name__ == "__main__":
    main()
