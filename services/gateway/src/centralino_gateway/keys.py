"""JWT signing keys: ES256 pairs kept in the database, private halves wrapped by the KEK."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jose import jwk, jwt
from sqlalchemy import or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from centralino_proto.auth import Claims, InvalidToken, JWKSVerifier, Role

from .models import SigningKey, utcnow

ALGORITHM = "ES256"


class Sealer:
    """Encrypts small secrets at rest (AES-256-GCM) under a key derived from the KEK."""

    def __init__(self, kek: str) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"centralino-gateway-kek-v1"
        ).derive(kek.encode())
        self._aead = AESGCM(derived)

    def seal(self, plaintext: bytes, *, context: bytes) -> bytes:
        """nonce || ciphertext; `context` binds it to its row (kid, subscription id)."""
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext, context)

    def open(self, sealed: bytes, *, context: bytes) -> bytes:
        return self._aead.decrypt(sealed[:12], sealed[12:], context)


@dataclass(frozen=True)
class ActiveKey:
    kid: str
    pem: str


def _public_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public = jwk.construct(public_pem, ALGORITHM).to_dict()
    return {
        **{k: (v.decode() if isinstance(v, bytes) else v) for k, v in public.items()},
        "kid": kid,
        "use": "sig",
        "alg": ALGORITHM,
    }


async def create_signing_key(*, session: AsyncSession, sealer: Sealer) -> SigningKey:
    """Generates a new ES256 key pair and stores it (private half sealed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    kid = secrets.token_hex(8)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    row = SigningKey(
        kid=kid,
        algorithm=ALGORITHM,
        public_jwk=_public_jwk(key, kid),
        private_key_enc=sealer.seal(pem, context=kid.encode()),
    )
    session.add(row)
    await session.flush()
    return row


async def rotate_signing_key(
    *, session: AsyncSession, sealer: Sealer, grace: timedelta
) -> SigningKey:
    """Makes a new key the signer; the old ones keep verifying for `grace`."""
    now = utcnow()
    current = (
        await session.scalars(select(SigningKey).where(col(SigningKey.retired_at).is_(None)))
    ).all()
    for old in current:
        old.retired_at = now
        old.expires_at = now + grace
    return await create_signing_key(session=session, sealer=sealer)


async def published_keys(*, session: AsyncSession) -> list[SigningKey]:
    """Keys whose tokens may still be valid: the signer and the retired ones in grace."""
    now = utcnow()
    return list(
        (
            await session.scalars(
                select(SigningKey)
                .where(or_(col(SigningKey.expires_at).is_(None), col(SigningKey.expires_at) > now))
                .order_by(col(SigningKey.created_at).desc())
            )
        ).all()
    )


class Keyring:
    """The gateway's signer and its own verifier, loaded from the database."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        sealer: Sealer,
        audience: str,
        issuer: str,
        grace: timedelta,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._sealer = sealer
        self.audience = audience
        self.issuer = issuer
        self.grace = grace
        self._active: ActiveKey | None = None
        self._jwks: dict[str, Any] = {"keys": []}
        self._verifier = JWKSVerifier(jwks=self._jwks, audience=audience, issuer=issuer)
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Reads the keys; creates the first one on a fresh database."""
        async with self._lock, self._sessionmaker() as session, session.begin():
            # Replicas starting together on a fresh database agree on one first key.
            await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('gateway-keyring'))"))
            keys = await published_keys(session=session)
            signer = next((k for k in keys if k.retired_at is None), None)
            if signer is None:
                signer = await rotate_signing_key(
                    session=session, sealer=self._sealer, grace=self.grace
                )
                keys = [signer, *keys]
            pem = self._sealer.open(signer.private_key_enc, context=signer.kid.encode())
            self._active = ActiveKey(kid=signer.kid, pem=pem.decode())
            self._jwks = {"keys": [k.public_jwk for k in keys]}
            self._verifier = JWKSVerifier(
                jwks=self._jwks, audience=self.audience, issuer=self.issuer
            )
            self._loaded_at = time.monotonic()

    async def rotate(self) -> str:
        """A new signing key; returns its kid."""
        async with self._sessionmaker() as session, session.begin():
            await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('gateway-keyring'))"))
            key = await rotate_signing_key(session=session, sealer=self._sealer, grace=self.grace)
            kid = key.kid
        await self.load()
        return kid

    async def fresh(self, max_age: float = 30.0) -> None:
        """Reloads when another replica may have rotated meanwhile."""
        if self._active is None or time.monotonic() - self._loaded_at > max_age:
            await self.load()

    def jwks(self) -> dict[str, Any]:
        return self._jwks

    def sign(
        self,
        *,
        sub: str,
        role: Role,
        ttl: int,
        tenant_id: uuid.UUID | None = None,
        reseller_id: uuid.UUID | None = None,
        scopes: list[str] | None = None,
    ) -> tuple[str, Claims]:
        """A signed access token and its claims."""
        if self._active is None:
            raise RuntimeError("keyring not loaded")
        now = int(time.time())
        claims = Claims(
            sub=sub,
            role=role,
            tenant_id=tenant_id,
            reseller_id=reseller_id,
            scopes=scopes or [],
            exp=now + ttl,
            iat=now,
            jti=uuid.uuid4().hex,
        )
        payload = {
            **claims.model_dump(mode="json"),
            "aud": self.audience,
            "iss": self.issuer,
        }
        token = jwt.encode(
            payload, self._active.pem, algorithm=ALGORITHM, headers={"kid": self._active.kid}
        )
        return token, claims

    def verifier(self) -> JWKSVerifier:
        return self._verifier


class GatewayVerifier(JWKSVerifier):
    """Verifies the gateway's own tokens from its keyring, without an HTTP call to itself.

    `trusted` is an extra verifier (tests pass their TokenMint's) for tokens the
    keyring did not sign.
    """

    def __init__(self, keyring: Keyring, *, trusted: JWKSVerifier | None = None) -> None:
        super().__init__(jwks={"keys": []}, audience=keyring.audience, issuer=keyring.issuer)
        self._keyring = keyring
        self._trusted = trusted

    async def verify(self, token: str) -> Claims:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except Exception as exc:
            raise InvalidToken("malformed token") from exc
        own = {k["kid"] for k in self._keyring.jwks()["keys"]}
        if kid not in own:
            # A key rotated by another replica since this one loaded.
            await self._keyring.fresh(max_age=5.0)
            own = {k["kid"] for k in self._keyring.jwks()["keys"]}
        if kid in own:
            return await self._keyring.verifier().verify(token)
        if self._trusted is not None:
            return await self._trusted.verify(token)
        raise InvalidToken("unknown signing key")
