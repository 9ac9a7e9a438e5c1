"""JWT claims and verification against the gateway's JWKS."""

from __future__ import annotations

import asyncio
import time
import uuid
from enum import StrEnum
from typing import Any

import httpx
from jose import JWTError, jwt
from pydantic import BaseModel, ConfigDict, Field

# Only asymmetric algorithms: a service can verify but never mint a token.
ALGORITHMS = ("ES256", "RS256")


class Role(StrEnum):
    operator = "operator"
    reseller = "reseller"
    tenant_admin = "tenant_admin"
    tenant_user = "tenant_user"
    # Another Centralino service (client credentials); used for the per-call APIs.
    service = "service"


class Claims(BaseModel):
    """What a verified access token says about its bearer."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    sub: str
    role: Role
    tenant_id: uuid.UUID | None = None
    reseller_id: uuid.UUID | None = None
    scopes: list[str] = Field(default_factory=list)
    exp: int
    iat: int | None = None
    jti: str | None = None

    def may_access(self, *, tenant_id: uuid.UUID, tenant_reseller_id: uuid.UUID | None) -> bool:
        """Whether the bearer may act on a tenant: the operator on all, a reseller on its own."""
        if self.role in (Role.operator, Role.service):
            return True
        if self.role is Role.reseller:
            return self.reseller_id is not None and self.reseller_id == tenant_reseller_id
        return self.tenant_id == tenant_id


class InvalidToken(Exception):
    """The token is missing, malformed, expired, or not signed by a known key."""


# Bound on the verified-token cache: past it, the cache starts again empty.
VERIFIED_MAX = 4096


class JWKSVerifier:
    """Verifies access tokens with public keys from a JWKS, cached and refreshed on a new kid."""

    def __init__(
        self,
        *,
        jwks_url: str | None = None,
        jwks: dict[str, Any] | None = None,
        audience: str = "centralino",
        issuer: str = "centralino-gateway",
        cache_seconds: float = 300.0,
        min_refresh_seconds: float = 5.0,
    ) -> None:
        if jwks_url is None and jwks is None:
            raise ValueError("a JWKS URL or a static JWKS is needed")
        self._jwks_url = jwks_url
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        self.audience = audience
        self.issuer = issuer
        self.cache_seconds = cache_seconds
        self.min_refresh_seconds = min_refresh_seconds
        if jwks is not None:
            self._load(jwks)
            self._fetched_at = float("inf")
        # Verified tokens by their exact text, until they expire: an ES256 check costs more
        # than a routing decision, and a service reuses one token for every call it places.
        self._verified: dict[str, Claims] = {}

    def _load(self, jwks: dict[str, Any]) -> None:
        self._keys = {k["kid"]: k for k in jwks.get("keys", []) if "kid" in k}

    async def _refresh(self, *, force: bool) -> None:
        if self._jwks_url is None:
            return
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if age < self.min_refresh_seconds or (not force and age < self.cache_seconds):
                return
            async with httpx.AsyncClient(timeout=5.0) as client:
                response = await client.get(self._jwks_url)
                response.raise_for_status()
                self._load(response.json())
            self._fetched_at = time.monotonic()

    async def verify(self, token: str) -> Claims:
        """Returns the token's claims, or raises InvalidToken (revocation is the caller's)."""
        claims = self._verified.get(token)
        if claims is not None and claims.exp > time.time():
            return claims
        claims = await self._verify(token)
        if len(self._verified) >= VERIFIED_MAX:
            self._verified.clear()
        self._verified[token] = claims
        return claims

    async def _verify(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except JWTError as exc:
            raise InvalidToken("malformed token") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS or not kid:
            raise InvalidToken("token algorithm or key id not accepted")
        try:
            await self._refresh(force=False)
            if kid not in self._keys:
                await self._refresh(force=True)
        except httpx.HTTPError as exc:
            if kid not in self._keys:
                raise InvalidToken("signing keys unavailable") from exc
        key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("unknown signing key")
        try:
            payload = jwt.decode(
                token, key, algorithms=[alg], audience=self.audience, issuer=self.issuer
            )
            return Claims.model_validate(payload)
        except (JWTError, ValueError) as exc:
            raise InvalidToken(str(exc)) from exc


class ServiceToken:
    """A service's own access token from the gateway (client credentials), cached until near expiry."""

    def __init__(self, *, token_url: str, client_id: str, client_secret: str) -> None:
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        """A valid bearer token, fetched again a minute before it expires."""
        async with self._lock:
            if self._token is None or time.monotonic() > self._expires_at - 60:
                async with httpx.AsyncClient(timeout=5.0) as client:
                    response = await client.post(
                        self._token_url,
                        json={
                            "grant_type": "client_credentials",
                            "client_id": self._client_id,
                            "client_secret": self._client_secret,
                        },
                    )
                    response.raise_for_status()
                    body = response.json()
                self._token = body["access_token"]
                self._expires_at = time.monotonic() + float(body.get("expires_in", 300))
            return self._token

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.get()}"}
