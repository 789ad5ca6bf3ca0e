"""Rate limits shared by every replica: a token bucket per key, kept in Redis.

The whole decision (refill, take, remember) is one Lua script, so concurrent hits from any number
of processes can never admit more than the bucket holds, and it reads the clock of the Redis
server, so replicas with skewed clocks agree. A bucket expires once it would be full again:
an idle key costs nothing and behaves exactly like a fresh one.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Final

from redis.asyncio import Redis

from server.core.errors import ResourceExhausted

KEY_PREFIX: Final = "amesa:rl:"

# KEYS[1] the bucket; ARGV capacity, refill per second, cost.
# Returns {1, 0} when admitted, {0, milliseconds until `cost` tokens are back} when not.
_BUCKET_SCRIPT: Final = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'time')
local tokens = tonumber(state[1]) or capacity
local last = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - last) * rate)
local admitted = 0
local wait_ms = 0
if tokens >= cost then
  tokens = tokens - cost
  admitted = 1
else
  wait_ms = math.ceil((cost - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'time', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((capacity - tokens) / rate * 1000)))
return {admitted, wait_ms}
"""


class RateLimiter:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._script = redis.register_script(_BUCKET_SCRIPT)

    async def hit(
        self, key: str, *, capacity: int, refill_per_second: float, cost: int = 1
    ) -> None:
        """Takes `cost` tokens from the bucket `key` (full at first: `capacity` tokens, refilled
        continuously), or raises RESOURCE_EXHAUSTED `RATE_LIMITED` with the time until enough
        tokens are back as `retry_after` (the client sees it as RetryInfo)."""
        if capacity <= 0 or refill_per_second <= 0 or not 0 < cost <= capacity:
            raise ValueError("need capacity > 0, refill_per_second > 0 and 0 < cost <= capacity")
        admitted, wait_ms = await self._script(
            keys=[KEY_PREFIX + key], args=[capacity, float(refill_per_second), cost]
        )
        if not admitted:
            seconds = math.ceil(int(wait_ms) / 1000)
            raise ResourceExhausted(
                "RATE_LIMITED",
                f"too many requests; try again in {seconds} s",
                retry_after=timedelta(milliseconds=int(wait_ms)),
            )

    async def reset(self, key: str) -> None:
        """Forgets the bucket (e.g. failed-login throttling after a successful login)."""
        await self._redis.delete(KEY_PREFIX + key)
