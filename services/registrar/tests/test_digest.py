"""Stateless nonces and their counts (RFC 7616 3.4): replay refused, bookkeeping bounded."""

import time

import pytest

from centralino_registrar.sip.digest import Nonces, NonceState

REALM = "rossi-roma.centralino.test"


def test_a_nonce_count_is_accepted_once_and_only_rising() -> None:
    nonces = Nonces(b"secret", lifetime=300)
    nonce = nonces.issue(REALM)
    assert nonces.check(nonce, REALM) is NonceState.valid
    assert nonces.check(nonce, "other.centralino.test") is NonceState.invalid
    assert nonces.use_count(nonce, 1)
    assert not nonces.use_count(nonce, 1)  # the same request again: a replay
    assert nonces.use_count(nonce, 2)
    assert not nonces.use_count(nonce, 1)


def test_counts_of_expired_nonces_are_forgotten_oldest_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nonces = Nonces(b"secret", lifetime=300)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)
    old = [nonces.issue(REALM) for _ in range(1000)]
    for nonce in old:
        assert nonces.use_count(nonce, 1)
    monkeypatch.setattr(time, "time", lambda: now + 200)
    fresh = nonces.issue(REALM)
    assert nonces.use_count(fresh, 1)
    assert len(nonces._counts) == 1001  # still within the lifetime: all kept
    # Past lifetime and grace, the old ones go; the fresh one stays and still refuses a replay.
    monkeypatch.setattr(time, "time", lambda: now + 311)
    assert nonces.check(old[0], REALM) is NonceState.stale
    assert nonces.use_count(nonces.issue(REALM), 1)
    assert set(nonces._counts) >= {fresh}
    assert len(nonces._counts) == 2
    assert not nonces.use_count(fresh, 1)
