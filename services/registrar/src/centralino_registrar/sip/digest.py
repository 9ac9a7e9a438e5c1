"""HTTP digest for SIP (RFC 2617, RFC 7616, RFC 8760): HA1, stateless nonces, nonce counts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from enum import StrEnum

ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def _h(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm](text.encode("utf-8", "surrogateescape")).hexdigest()


def ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """H(username:realm:password), the only form a SIP password is kept in."""
    return _h(algorithm, f"{username}:{realm}:{password}")


def response(
    *,
    algorithm: str,
    ha1: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str,
    cnonce: str,
    qop: str,
) -> str:
    """The request-digest a client must send for qop=auth."""
    ha2 = _h(algorithm, f"{method}:{uri}")
    return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


class NonceState(StrEnum):
    valid = "valid"
    stale = "stale"
    invalid = "invalid"


class Nonces:
    """Stateless nonces: issue time and an HMAC over it and the realm; no table to keep.

    Replay protection comes from the nonce count: each (nonce, nc) is accepted once.
    """

    def __init__(self, secret: bytes, lifetime: int = 300) -> None:
        self._secret = secret or os.urandom(32)
        self.lifetime = lifetime
        # nonce -> (issued at, highest nc seen)
        self._counts: dict[str, tuple[int, int]] = {}

    def _mac(self, raw: bytes, realm: str) -> bytes:
        return hmac.digest(self._secret, raw + realm.encode(), "sha256")[:12]

    def issue(self, realm: str) -> str:
        raw = int(time.time()).to_bytes(8, "big") + os.urandom(6)
        return base64.urlsafe_b64encode(raw + self._mac(raw, realm)).decode().rstrip("=")

    def check(self, nonce: str, realm: str) -> NonceState:
        try:
            blob = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except ValueError:
            return NonceState.invalid
        if len(blob) != 26:
            return NonceState.invalid
        raw, mac = blob[:14], blob[14:]
        if not hmac.compare_digest(mac, self._mac(raw, realm)):
            return NonceState.invalid
        issued = int.from_bytes(raw[:8], "big")
        now = time.time()
        if issued > now + 5:
            return NonceState.invalid
        if now - issued > self.lifetime:
            return NonceState.stale
        return NonceState.valid

    def use_count(self, nonce: str, nc: int) -> bool:
        """Records a nonce count; False when it is not above every count seen for the nonce."""
        self._purge()
        issued, highest = self._counts.get(nonce, (int(time.time()), 0))
        if nc <= highest:
            return False
        self._counts[nonce] = (issued, nc)
        return True

    def _purge(self) -> None:
        # Entries are in first-use order (a dict keeps insertion order), so the expired ones
        # are at the front: popping them a few at a time never stalls the SIP loop the way
        # rebuilding a table of every nonce of the last five minutes did.
        horizon = int(time.time()) - self.lifetime - 10
        counts = self._counts
        while counts:
            oldest = next(iter(counts))
            if counts[oldest][0] >= horizon:
                break
            del counts[oldest]


@dataclass(frozen=True)
class Credentials:
    """The Authorization (or Proxy-Authorization) parameters a client sent."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str
    qop: str | None
    nc: str | None
    cnonce: str | None

    @classmethod
    def from_params(cls, params: dict[str, str]) -> Credentials | None:
        try:
            algorithm = params.get("algorithm", "MD5").upper()
            if algorithm not in ALGORITHMS:
                return None
            return cls(
                username=params["username"],
                realm=params["realm"],
                nonce=params["nonce"],
                uri=params["uri"],
                response=params["response"].lower(),
                algorithm=algorithm,
                qop=params.get("qop"),
                nc=params.get("nc"),
                cnonce=params.get("cnonce"),
            )
        except KeyError:
            return None

    def verify(self, *, ha1: str, method: str) -> bool:
        """Whether the response matches the stored HA1 (qop=auth only)."""
        if self.qop != "auth" or not self.nc or self.cnonce is None:
            return False
        expected = response(
            algorithm=self.algorithm,
            ha1=ha1,
            method=method,
            uri=self.uri,
            nonce=self.nonce,
            nc=self.nc,
            cnonce=self.cnonce,
            qop=self.qop,
        )
        return hmac.compare_digest(expected, self.response)

    def nonce_count(self) -> int:
        try:
            return int(self.nc or "", 16)
        except ValueError:
            return -1


def challenge(realm: str, nonce: str, algorithm: str, *, stale: bool = False) -> str:
    """A WWW-Authenticate / Proxy-Authenticate value."""
    value = f'Digest realm="{realm}", nonce="{nonce}", qop="auth", algorithm={algorithm}'
    return value + (", stale=true" if stale else "")
