import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI
from jose import jwt

from centralino_proto.auth import Claims, InvalidToken, JWKSVerifier, Role
from centralino_proto.testing import TokenMint


async def test_valid_token_gives_its_claims() -> None:
    mint = TokenMint()
    tenant = uuid.uuid4()
    claims = await mint.verifier().verify(mint.token(Role.tenant_admin, tenant_id=tenant))
    assert claims.role is Role.tenant_admin and claims.tenant_id == tenant


async def test_a_verified_token_is_remembered_only_until_it_expires() -> None:
    mint = TokenMint()
    verifier = mint.verifier()
    token = mint.token(Role.service, ttl=2)
    first = await verifier.verify(token)
    # The second check of the same text is served from memory (no signature check) ...
    assert await verifier.verify(token) is first
    # ... and never past the token's expiry.
    await asyncio.sleep(3)
    with pytest.raises(InvalidToken):
        await verifier.verify(token)


@pytest.mark.parametrize(
    "tamper",
    ["expired", "other_key", "wrong_audience", "hs256_with_public_key", "none_alg", "garbage"],
)
async def test_bad_tokens_are_refused(tamper: str) -> None:
    mint, other = TokenMint(), TokenMint()
    verifier = mint.verifier()
    token = {
        "expired": lambda: mint.token(ttl=-10),
        "other_key": lambda: other.token(kid=mint.kid),
        "wrong_audience": lambda: TokenMint(audience="elsewhere").token(),
        # The classic confusion attack: sign HMAC with the public key as secret.
        "hs256_with_public_key": lambda: jwt.encode(
            {"sub": "x", "role": "operator", "exp": int(time.time()) + 60},
            str(mint.jwks()["keys"][0]),
            algorithm="HS256",
            headers={"kid": mint.kid},
        ),
        "none_alg": lambda: "eyJhbGciOiJub25lIiwia2lkIjoieCJ9.eyJzdWIiOiJ4In0.",
        "garbage": lambda: "not-a-jwt",
    }[tamper]()
    if tamper == "other_key":
        # Same kid as the trusted key, signed by another: the signature check must catch it.
        token = jwt.encode(
            jwt.get_unverified_claims(other.token()),
            other._pem,
            algorithm="ES256",
            headers={"kid": mint.kid},
        )
    with pytest.raises(InvalidToken):
        await verifier.verify(token)


def test_reseller_sees_only_its_own_tenants() -> None:
    reseller, tenant = uuid.uuid4(), uuid.uuid4()
    claims = Claims(sub="r", role=Role.reseller, reseller_id=reseller, exp=0)
    assert claims.may_access(tenant_id=tenant, tenant_reseller_id=reseller)
    assert not claims.may_access(tenant_id=tenant, tenant_reseller_id=uuid.uuid4())
    assert not claims.may_access(tenant_id=tenant, tenant_reseller_id=None)
    user = Claims(sub="u", role=Role.tenant_user, tenant_id=tenant, exp=0)
    assert user.may_access(tenant_id=tenant, tenant_reseller_id=None)
    assert not user.may_access(tenant_id=uuid.uuid4(), tenant_reseller_id=reseller)


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, dict[str, TokenMint], list[int]]]:
    """A real HTTP server publishing a JWKS whose key can be rotated."""
    keys = {"current": TokenMint()}
    hits = [0]
    app = FastAPI()

    @app.get("/.well-known/jwks.json")
    def jwks() -> dict[str, object]:
        hits[0] += 1
        return keys["current"].jwks()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/.well-known/jwks.json", keys, hits
    server.should_exit = True
    thread.join(5)


async def test_keys_are_cached_and_refetched_on_rotation(
    jwks_server: tuple[str, dict[str, TokenMint], list[int]],
) -> None:
    url, keys, hits = jwks_server
    verifier = JWKSVerifier(jwks_url=url, min_refresh_seconds=0)
    for _ in range(5):
        await verifier.verify(keys["current"].token())
    assert hits[0] == 1, "the JWKS is cached"
    keys["current"] = TokenMint()  # rotation: a new kid
    await verifier.verify(keys["current"].token())
    assert hits[0] == 2, "an unknown kid triggers one refetch"
    await asyncio.sleep(0)
