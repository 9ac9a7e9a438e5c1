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
    """Seals and opens secrets; the associated data binds a blob to the row it belongs to."""

    def __init__(self, kek: str) -> None:
        if not kek:
            raise ValueError("an empty KEK cannot seal anything")
        self._key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"centralino-vpn-ca", info=b"kek v1"
        ).derive(kek.encode())
        # Names which KEK sealed a blob, so a rotation knows what to re-seal.
        self.kek_id = hashlib.sha256(b"kek-id" + self._key).digest()[:_KEK_ID]
        self._aead = AESGCM(self._key)

    def seal(self, plaintext: bytes, *, context: str) -> bytes:
        """Encrypts a secret for the row named by `context`."""
        nonce = os.urandom(_NONCE)
        return (
            VERSION + self.kek_id + nonce + self._aead.encrypt(nonce, plaintext, context.encode())
        )

    def open(self, blob: bytes, *, context: str) -> bytes:
        """Decrypts a blob sealed for `context`; SealError if this KEK cannot."""
        if len(blob) < 1 + _KEK_ID + _NONCE + 16 or blob[:1] != VERSION:
            raise SealError("not a sealed blob")
        kek_id = blob[1 : 1 + _KEK_ID]
        if kek_id != self.kek_id:
            raise SealError("sealed under a different key-encryption key")
        nonce = blob[1 + _KEK_ID : 1 + _KEK_ID + _NONCE]
        try:
            return self._aead.decrypt(nonce, blob[1 + _KEK_ID + _NONCE :], context.encode())
        except InvalidTag as exc:
            raise SealError("sealed blob does not authenticate for this row") from exc
