"""Cache of public catalogue reads (GetHouse, ListHouses for non-admin callers) in Redis.

Invalidation is a version key: every cached entry's key embeds the catalogue version read
*before* the database read, and every write to a house bumps the version *after* its
transaction committed. A reader that raced a write stores its (possibly stale) answer under the
old version, which no later reader asks for; so a write is visible to every read that starts
after the write returned. A short TTL bounds what a failed bump (Redis down at that instant)
could leave behind. Purchases and the scheduler must call `invalidate` after they commit too.

Redis being unavailable never fails a read: the cache is skipped.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from google.protobuf.message import Message
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("amesa.lottery.cache")

M = TypeVar("M", bound=Message)

VERSION_KEY = "lottery:catalogue:version"
TTL_SECONDS = 5
# The entry's key is derived inside the script (fine on a single Redis, not on a Cluster).
_LOOKUP = """
local version = redis.call('GET', KEYS[1]) or '0'
local entry = redis.call('GET', 'lottery:catalogue:' .. version .. ':' .. ARGV[1])
if entry then return {version, entry} end
return {version}
"""


def _entry_key(version: str, digest: str) -> str:
    return f"lottery:catalogue:{version}:{digest}"


class CatalogueCache:
    def __init__(self, redis: Redis, *, ttl_seconds: int = TTL_SECONDS) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._lookup = redis.register_script(_LOOKUP)

    async def fetch(
        self, request: Message, response_type: type[M], load: Callable[[], Awaitable[M]]
    ) -> M:
        """The cached answer to `request`, or `load()`'s, stored for the next caller."""
        digest = hashlib.sha256(
            request.DESCRIPTOR.full_name.encode()
            + b"\x00"
            + request.SerializeToString(deterministic=True)
        ).hexdigest()
        try:
            # One round trip: the current version and the entry stored under it.
            found = await self._lookup(keys=[VERSION_KEY], args=[digest])
        except RedisError:
            log.warning("catalogue cache unavailable", exc_info=True)
            return await load()
        if len(found) == 2 and isinstance(found[1], bytes):
            return response_type.FromString(found[1])
        response = await load()
        try:
            await self._redis.set(
                _entry_key(_text(found[0]), digest), response.SerializeToString(), ex=self._ttl
            )
        except RedisError:
            log.warning("catalogue cache unavailable", exc_info=True)
        return response

    async def invalidate(self) -> None:
        """Call after a committed change to any house, image or counter."""
        try:
            await self._redis.incr(VERSION_KEY)
        except RedisError:
            log.warning("catalogue cache version not bumped; entries expire by TTL", exc_info=True)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return "0"
    return value.decode() if isinstance(value, bytes) else value
