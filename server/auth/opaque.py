"""Opaque bearer secrets (refresh tokens, email links): 256 random bits, base64url, stored only as
their SHA-256. A fast hash suffices because the secret itself cannot be guessed."""

from __future__ import annotations

import base64
import hashlib
import secrets


def new_token() -> tuple[str, bytes]:
    """A fresh token and the hash to store."""
    token = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return token, token_hash(token)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
