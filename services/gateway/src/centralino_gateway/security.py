"""Password hashing, opaque tokens and API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()
# Verified against when the user does not exist, so timing does not reveal which emails do.
_DUMMY_HASH = _hasher.hash("centralino-no-such-user")


def configure_hasher(*, time_cost: int, memory_kib: int) -> None:
    """Sets the argon2id cost of new hashes (old hashes carry their own parameters)."""
    global _hasher, _DUMMY_HASH
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
    _DUMMY_HASH = _hasher.hash("centralino-no-such-user")


API_KEY_PREFIX = "ck_"
REFRESH_TOKEN_PREFIX = "rt_"  # noqa: S105


def hash_password(password: str) -> str:
    """An argon2id hash of a password."""
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    """Whether the password matches the hash (constant work when there is no hash)."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def token_digest(token: str) -> str:
    """SHA-256 of a high-entropy opaque token (refresh tokens, API key secrets)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_refresh_token() -> str:
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_api_key() -> tuple[str, str, str]:
    """(key shown once, public prefix, digest of the secret part)."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"{API_KEY_PREFIX}{prefix}_{secret}", prefix, token_digest(secret)


def split_api_key(key: str) -> tuple[str, str] | None:
    """(prefix, secret) of a well-formed API key, else None."""
    if not key.startswith(API_KEY_PREFIX):
        return None
    prefix, sep, secret = key[len(API_KEY_PREFIX) :].partition("_")
    if not sep or len(prefix) != 12 or not secret:
        return None
    return prefix, secret


def same_digest(secret: str, digest: str) -> bool:
    return hmac.compare_digest(token_digest(secret), digest)


def is_service_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
