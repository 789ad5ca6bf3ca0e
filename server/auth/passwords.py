"""Password hashing: argon2id with OWASP parameters, always off the event loop.

Legacy bcrypt hashes imported from the previous system verify once and are then replaced by an
argon2id hash (`needs_rehash`).
"""

from __future__ import annotations

import asyncio

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP (2024): argon2id, m = 19 MiB, t = 2, p = 1.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def _hash(password: str) -> str:
    return _HASHER.hash(password)


def _verify(stored: str, password: str) -> bool:
    if stored.startswith(("$2a$", "$2b$", "$2y$")):
        return bcrypt.checkpw(password.encode(), stored.encode())
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hash, password)


async def verify_password(stored: str, password: str) -> bool:
    return await asyncio.to_thread(_verify, stored, password)


def needs_rehash(stored: str) -> bool:
    """True for legacy bcrypt hashes and argon2 hashes made with older parameters."""
    if not stored.startswith("$argon2id$"):
        return True
    return _HASHER.check_needs_rehash(stored)
