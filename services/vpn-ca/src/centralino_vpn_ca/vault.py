"""Private keys at rest: sealed with AES-256-GCM under a key derived from the KEK."""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# Blob layout: version (1) | KEK id (8) | nonce (12) | ciphertext+tag.
VERSION = b"\x01"
_NONCE = 12
_KEK_ID = 8


class SealError(Exception):
    """A sealed blob could not be opened (wrong KEK, tampered, or moved to another row)."""


class KeyVault:
    """Seals and opens secrets; the associated data binds a blob to the row it belongs to.

    Seals under the current KEK; opens under it or any previous one still configured,
    so a rotation re-seals at its own pace (`needs_reseal`).
    """

    def __init__(self, kek: str, previous: tuple[str, ...] = ()) -> None:
        if not kek:
            raise ValueError("an empty KEK cannot seal anything")
        self.kek_id, self._aead = _derive(kek)
        self._by_id = {self.kek_id: self._aead}
        for old in previous:
            if old:
                old_id, aead = _derive(old)
                self._by_id.setdefault(old_id, aead)

    def seal(self, plaintext: bytes, *, context: str) -> bytes:
        """Encrypts a secret for the row named by `context`."""
        nonce = os.urandom(_NONCE)
        return (
            VERSION + self.kek_id + nonce + self._aead.encrypt(nonce, plaintext, context.encode())
        )

    def open(self, blob: bytes, *, context: str) -> bytes:
        """Decrypts a blob sealed for `context`; SealError if no configured KEK can."""
        if len(blob) < 1 + _KEK_ID + _NONCE + 16 or blob[:1] != VERSION:
            raise SealError("not a sealed blob")
        aead = self._by_id.get(blob[1 : 1 + _KEK_ID])
        if aead is None:
            raise SealError("sealed under a key-encryption key this service does not hold")
        nonce = blob[1 + _KEK_ID : 1 + _KEK_ID + _NONCE]
        try:
            return aead.decrypt(nonce, blob[1 + _KEK_ID + _NONCE :], context.encode())
        except InvalidTag as exc:
            raise SealError("sealed blob does not authenticate for this row") from exc

    def needs_reseal(self, blob: bytes) -> bool:
        """Whether a blob was sealed under a KEK other than the current one."""
        return blob[1 : 1 + _KEK_ID] != self.kek_id

    def reseal(self, blob: bytes, *, context: str) -> bytes:
        """The same secret sealed under the current KEK."""
        return self.seal(self.open(blob, context=context), context=context)


def _derive(kek: str) -> tuple[bytes, AESGCM]:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"centralino-vpn-ca", info=b"kek v1"
    ).derive(kek.encode())
    # Names which KEK sealed a blob, so a rotation knows what to re-seal.
    return hashlib.sha256(b"kek-id" + key).digest()[:_KEK_ID], AESGCM(key)
