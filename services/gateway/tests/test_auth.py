import time

import pytest
from jose import jwt
from pydantic import ValidationError
from sqlalchemy import select

from centralino_gateway.config import Settings
from centralino_gateway.models import SigningKey
from centralino_gateway.seed import seed
from centralino_proto.auth import InvalidToken, JWKSVerifier, Role, ServiceToken
from centralino_proto.testing import ServiceHarness, serve_http

from .conftest import bearer, token


async def _verifier(h: ServiceHarness) -> JWKSVerifier:
    jwks = (await h.client.get("/.well-known/jwks.json")).json()
    return JWKSVerifier(jwks=jwks, audience="centralino", issuer="centralino-gateway")


async def test_login_json_and_form_issue_es256_tokens_verifiable_from_jwks(
    harness: ServiceHarness,
) -> None:
    await seed(harness.runtime)
    tokens = await token(harness.client, "admin@centralino.test", "admin")
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 900
    assert tokens["refresh_token"].startswith("rt_")
    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["alg"] == "ES256" and header["kid"]
    jwks = (await harness.client.get("/.well-known/jwks.json")).json()
    assert [k["kid"] for k in jwks["keys"]] == [header["kid"]]
    assert all("d" not in k for k in jwks["keys"]), "the private part never leaves"
    claims = await (await _verifier(harness)).verify(tokens["access_token"])
    assert claims.role is Role.operator and claims.jti and claims.iat

    form = await harness.client.post(
        "/v1/auth/token",
        data={
            "grant_type": "password",
            "username": "reseller@centralino.test",
            "password": "reseller",
        },
    )
    assert form.status_code == 200, form.text
    claims = await (await _verifier(harness)).verify(form.json()["access_token"])
    assert claims.role is Role.reseller and claims.reseller_id is not None

    me = await harness.client.get("/v1/auth/me", headers=bearer(tokens))
    assert me.json()["role"] == "operator"


async def test_no_token_is_401_and_wrong_password_is_counted_then_429(
    harness: ServiceHarness,
) -> None:
    await seed(harness.runtime)
    response = await harness.client.get("/v1/tenants")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    for _ in range(3):
        bad = await harness.client.post(
            "/v1/auth/token", json={"username": "admin@centralino.test", "password": "nope"}
        )
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_grant"
    # Locked out now, even with the right password.
    locked = await harness.client.post(
        "/v1/auth/token", json={"username": "admin@centralino.test", "password": "admin"}
    )
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    # Another account from elsewhere is not affected by this user's lock.
    other = await harness.client.post(
        "/v1/auth/token", json={"username": "reseller@centralino.test", "password": "reseller"}
    )
    assert other.status_code == 200
    missing = await harness.client.post("/v1/auth/token", json={"username": "x"})
    assert missing.status_code == 422


async def test_refresh_rotates_and_reuse_revokes_the_session(harness: ServiceHarness) -> None:
    await seed(harness.runtime)
    first = await token(harness.client, "reseller@centralino.test", "reseller")
    r = await harness.client.post(
        "/v1/auth/token",
        json={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
    )
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    # Replaying the spent refresh token: the whole family dies, the new one too.
    replay = await harness.client.post(
        "/v1/auth/token",
        json={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
    )
    assert replay.status_code == 401
    dead = await harness.client.post(
        "/v1/auth/token",
        json={"grant_type": "refresh_token", "refresh_token": second["refresh_token"]},
    )
    assert dead.status_code == 401


async def test_revoke_refresh_and_access_tokens(harness: ServiceHarness) -> None:
    await seed(harness.runtime)
    tokens = await token(harness.client, "admin@centralino.test", "admin")
    assert (await harness.client.get("/v1/tenants", headers=bearer(tokens))).status_code == 200
    for kind in ("refresh_token", "access_token"):
        r = await harness.client.post("/v1/auth/revoke", json={"token": tokens[kind]})
        assert r.status_code == 200
    assert (await harness.client.get("/v1/tenants", headers=bearer(tokens))).status_code == 401
    r = await harness.client.post(
        "/v1/auth/token",
        json={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert r.status_code == 401
    # RFC 7009: an unknown token is not an error.
    assert (await harness.client.post("/v1/auth/revoke", json={"token": "junk"})).status_code == 200


async def test_rotation_new_kid_old_tokens_still_verify(harness: ServiceHarness) -> None:
    await seed(harness.runtime)
    old = await token(harness.client, "admin@centralino.test", "admin")
    old_kid = jwt.get_unverified_header(old["access_token"])["kid"]
    r = await harness.client.post("/v1/auth/signing-keys/rotate", headers=bearer(old))
    assert r.status_code == 201
    new_kid = r.json()["kid"]
    assert new_kid != old_kid
    new = await token(harness.client, "admin@centralino.test", "admin")
    assert jwt.get_unverified_header(new["access_token"])["kid"] == new_kid
    kids = {k["kid"] for k in (await harness.client.get("/.well-known/jwks.json")).json()["keys"]}
    assert kids == {old_kid, new_kid}
    verifier = await _verifier(harness)
    assert (await verifier.verify(old["access_token"])).role is Role.operator
    assert (await verifier.verify(new["access_token"])).role is Role.operator
    assert (await harness.client.get("/v1/tenants", headers=bearer(old))).status_code == 200
    listed = await harness.client.get("/v1/auth/signing-keys", headers=bearer(new))
    assert [k["kid"] for k in listed.json()] == [new_kid, old_kid]
    # Only the operator rotates.
    reseller = await token(harness.client, "reseller@centralino.test", "reseller")
    r = await harness.client.post("/v1/auth/signing-keys/rotate", headers=bearer(reseller))
    assert r.status_code == 403


async def test_private_keys_are_encrypted_at_rest(harness: ServiceHarness) -> None:
    await harness.client.get("/.well-known/jwks.json")
    async with harness.runtime.sessionmaker() as session:
        rows = (await session.scalars(select(SigningKey))).all()
    assert rows
    for row in rows:
        assert b"PRIVATE KEY" not in row.private_key_enc
        assert b"-----" not in row.private_key_enc


async def test_tokens_of_another_issuer_or_forged_are_refused(harness: ServiceHarness) -> None:
    await seed(harness.runtime)
    good = await token(harness.client, "admin@centralino.test", "admin")
    head, payload, sig = good["access_token"].split(".")
    tampered = f"{head}.{payload}.{sig[:-4]}AAAA"
    r = await harness.client.get("/v1/tenants", headers={"Authorization": f"Bearer {tampered}"})
    assert r.status_code == 401
    hs256 = jwt.encode(
        {
            "sub": "x",
            "role": "operator",
            "exp": int(time.time()) + 60,
            "aud": "centralino",
            "iss": "centralino-gateway",
        },
        "secret",
        algorithm="HS256",
        headers={"kid": head},
    )
    r = await harness.client.get("/v1/tenants", headers={"Authorization": f"Bearer {hs256}"})
    assert r.status_code == 401
    with pytest.raises(InvalidToken):
        await (await _verifier(harness)).verify(hs256)


async def test_client_credentials_through_service_token_over_http(
    harness: ServiceHarness,
) -> None:
    # The gateway on a real port, reached the way other services reach it.
    from centralino_gateway.main import create_app

    settings = Settings(**{**harness.settings.model_dump(), "migrate_on_start": False})
    async with serve_http(create_app(settings)) as url:
        source = ServiceToken(
            token_url=f"{url}/v1/auth/token",
            client_id="routing",
            client_secret="dev-service-secret",
        )
        access = await source.get()
        verifier = JWKSVerifier(jwks_url=f"{url}/.well-known/jwks.json")
        claims = await verifier.verify(access)
        assert claims.role is Role.service and claims.sub == "routing"
        assert await source.get() == access, "cached until near expiry"
        bad = ServiceToken(token_url=f"{url}/v1/auth/token", client_id="routing", client_secret="x")
        with pytest.raises(Exception, match="401"):
            await bad.get()
        stranger = ServiceToken(
            token_url=f"{url}/v1/auth/token",
            client_id="billing",
            client_secret="dev-service-secret",
        )
        with pytest.raises(Exception, match="401"):
            await stranger.get()


def test_placeholder_kek_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="KEY_ENCRYPTION_KEY"):
        Settings(environment="production", service_client_secret="s" * 40)
    with pytest.raises(ValidationError, match="KEY_ENCRYPTION_KEY"):
        Settings(
            environment="production", key_encryption_key="changeme", service_client_secret="s" * 40
        )
    ok = Settings(
        environment="production", key_encryption_key="k" * 40, service_client_secret="s" * 40
    )
    assert ok.allowed_webhook_hosts() == frozenset()


async def test_one_client_guessing_many_accounts_is_slowed_down(harness: ServiceHarness) -> None:
    await seed(harness.runtime)
    harness.runtime.settings.login_max_failures_per_client = 4  # type: ignore[attr-defined]
    for name in ("a", "b", "c", "d"):
        r = await harness.client.post(
            "/v1/auth/token", json={"username": f"{name}@nowhere.test", "password": "guess"}
        )
        assert r.status_code == 401
    r = await harness.client.post(
        "/v1/auth/token", json={"username": "admin@centralino.test", "password": "admin"}
    )
    assert r.status_code == 429
