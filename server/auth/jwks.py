"""Signing keys of OAuth / OpenID Connect providers, fetched from their JWKS URLs and cached.

Keys are cached per URL for `TTL`; a token naming an unknown `kid` (the provider rotated its
keys) refetches, at most once per `REFETCH_INTERVAL` per URL, so forged kids cannot make us
hammer the provider. Fetches use httpx's async client (never blocking the event loop) and are
never made inside a database transaction.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx
import jwt

from server.core.errors import Unavailable

TTL = 3600.0
REFETCH_INTERVAL = 30.0
FAILURE_BACKOFF = 5.0  # after a failed fetch, answer UNAVAILABLE without retrying for a while
TIMEOUT = httpx.Timeout(5.0)
# Only asymmetric algorithms: never `none`, never HS* (a public key used as an HMAC secret).
ALLOWED_ALGORITHMS = frozenset({"RS256", "ES256"})


def provider_unavailable() -> Unavailable:
    return Unavailable(
        "OAUTH_PROVIDER_UNAVAILABLE", "the sign-in provider could not be reached; try again"
    )


@dataclass(slots=True)
class _Entry:
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    fetch_time: float = float("-inf")
    failure_time: float = float("-inf")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _parse(document: object) -> dict[str, jwt.PyJWK]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise provider_unavailable()
    keys: dict[str, jwt.PyJWK] = {}
    for raw in document["keys"]:
        if not isinstance(raw, dict) or raw.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(raw)
        except jwt.PyJWTError:  # an algorithm or key type we do not accept
            continue
        if key.algorithm_name in ALLOWED_ALGORITHMS:
            keys[str(raw.get("kid", ""))] = key
    return keys


class JwksCache:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    async def _fetch(self, url: str) -> dict[str, jwt.PyJWK]:
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT) as client:
                response = await client.get(url, headers={"accept": "application/json"})
            response.raise_for_status()
            return _parse(response.json())
        except (httpx.HTTPError, ValueError):
            raise provider_unavailable() from None

    async def key(self, url: str, kid: str) -> jwt.PyJWK | None:
        """The provider's signing key with this `kid` ("" when the token names none), or None."""
        entry = self._entries.get(url) or self._entries.setdefault(url, _Entry())
        age = time.monotonic() - entry.fetch_time
        if age < TTL and kid in entry.keys:
            return entry.keys[kid]
        async with entry.lock:
            now = time.monotonic()
            age = now - entry.fetch_time
            stale = age >= TTL
            if stale or (kid not in entry.keys and age >= REFETCH_INTERVAL):
                try:
                    if now - entry.failure_time < FAILURE_BACKOFF:
                        raise provider_unavailable()
                    entry.keys = await self._fetch(url)
                except Unavailable:
                    if now - entry.failure_time >= FAILURE_BACKOFF:
                        entry.failure_time = now
                    if stale and entry.keys and age < 2 * TTL:  # serve recent keys a while
                        return entry.keys.get(kid)
                    raise
                entry.fetch_time = time.monotonic()
        return entry.keys.get(kid)
