"""PII encryption at rest: AES-256-GCM with a key id stored beside each value, and keyed blind
indexes (HMAC-SHA256) for equality lookups that must not decrypt.

Ciphertext layout: 12-byte random nonce ‖ AES-GCM ciphertext+tag. The associated data binds a
value to its column (e.g. b"users.birth_date"), so a ciphertext copied into another column does
not decrypt. Keys are rotated by adding a new key id; old ids stay readable.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE_BYTES = 12


class DecryptionError(ValueError):
    """A value does not decrypt under its key id (unknown key, wrong column, or tampering)."""


@dataclass(frozen=True, slots=True)
class Encrypted:
    ciphertext: bytes
    key_id: str


class PiiCipher:
    def __init__(self, keys: Mapping[str, bytes], *, current_key_id: str, index_key: bytes) -> None:
        if current_key_id not in keys:
            raise ValueError(f"no key with id {current_key_id!r}")
        for key_id, key in keys.items():
            if len(key) != 32:
                raise ValueError(f"key {key_id!r} must be 32 bytes")
        self._keys = dict(keys)
        self._current = current_key_id
        # A separate key that never rotates with the encryption keys: an index must keep matching
        # rows written under every key id.
        self._index_key = index_key

    def encrypt(self, plaintext: str, *, context: str) -> Encrypted:
        return self.encrypt_bytes(plaintext.encode(), context=context)

    def decrypt(self, value: Encrypted, *, context: str) -> str:
        return self.decrypt_bytes(value, context=context).decode()

    def encrypt_bytes(self, plaintext: bytes, *, context: str) -> Encrypted:
        """For files (identity documents): the same sealing, without a text round trip."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self._keys[self._current]).encrypt(nonce, plaintext, context.encode())
        return Encrypted(ciphertext=nonce + sealed, key_id=self._current)

    def decrypt_bytes(self, value: Encrypted, *, context: str) -> bytes:
        key = self._keys.get(value.key_id)
        if key is None:
            raise DecryptionError(f"unknown key id {value.key_id!r}")
        nonce, sealed = value.ciphertext[:_NONCE_BYTES], value.ciphertext[_NONCE_BYTES:]
        try:
            return AESGCM(key).decrypt(nonce, sealed, context.encode())
        except InvalidTag:
            raise DecryptionError("the value does not decrypt") from None

    def blind_index(self, plaintext: str, *, context: str) -> bytes:
        """A keyed hash for equality lookups; normalise the plaintext before calling."""
        return hmac.new(
            self._index_key, context.encode() + b"\x00" + plaintext.encode(), hashlib.sha256
        ).digest()
