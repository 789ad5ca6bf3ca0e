"""RateLimiter against a real Redis: capacity, RetryInfo, refill, atomicity and expiry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2
from redis.asyncio import Redis

from server.core.errors import ResourceExhausted
from server.core.ratelimit import KEY_PREFIX, RateLimiter
from server.core.settings import Settings

DEADLINE = 5.0


@pytest_asyncio.fixture(loop_scope="session")
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def limiter(redis: Redis) -> RateLimiter:
    return RateLimiter(redis)


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(DEADLINE):
        while True:
            if await check():
                return
            await asyncio.sleep(0.01)


def new_key() -> str:
    return f"test:{uuid.uuid4().hex}"


async def admitted(limiter: RateLimiter, key: str, *, capacity: int, refill: float) -> bool:
    try:
        await limiter.hit(key, capacity=capacity, refill_per_second=refill)
    except ResourceExhausted:
        return False
    return True


async def test_hits_up_to_capacity_pass_then_rate_limited_with_retry_info(
    limiter: RateLimiter,
) -> None:
    key = new_key()
    for _ in range(3):
        await limiter.hit(key, capacity=3, refill_per_second=1.0)

    with pytest.raises(ResourceExhausted) as raised:
        await limiter.hit(key, capacity=3, refill_per_second=1.0)

    error = raised.value
    assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "RATE_LIMITED"
    # One token a second, and the bucket was emptied just now.
    assert error.retry_after is not None
    assert timedelta(0) < error.retry_after <= timedelta(seconds=1)
    [detail] = error.details()
    retry_info = error_details_pb2.RetryInfo()
    assert detail.Unpack(retry_info)
    assert retry_info.retry_delay.ToTimedelta() == error.retry_after


async def test_cost_takes_several_tokens(limiter: RateLimiter) -> None:
    key = new_key()
    await limiter.hit(key, capacity=5, refill_per_second=0.01, cost=3)

    with pytest.raises(ResourceExhausted) as raised:
        await limiter.hit(key, capacity=5, refill_per_second=0.01, cost=3)

    # Two tokens left, one more needed at 0.01 a second.
    assert raised.value.retry_after is not None
    assert timedelta(seconds=95) < raised.value.retry_after <= timedelta(seconds=100)
    await limiter.hit(key, capacity=5, refill_per_second=0.01, cost=2)


async def test_tokens_refill_over_time(limiter: RateLimiter) -> None:
    key = new_key()
    assert await admitted(limiter, key, capacity=2, refill=20.0)
    assert await admitted(limiter, key, capacity=2, refill=20.0)
    assert not await admitted(limiter, key, capacity=2, refill=20.0)

    async def refilled() -> bool:
        return await admitted(limiter, key, capacity=2, refill=20.0)

    await eventually(refilled)


async def test_concurrent_hits_never_admit_more_than_capacity(limiter: RateLimiter) -> None:
    key = new_key()

    results = await asyncio.gather(
        *(admitted(limiter, key, capacity=10, refill=0.001) for _ in range(50))
    )

    assert results.count(True) == 10


async def test_reset_gives_a_full_bucket(limiter: RateLimiter) -> None:
    key = new_key()
    await limiter.hit(key, capacity=1, refill_per_second=0.001)
    assert not await admitted(limiter, key, capacity=1, refill=0.001)

    await limiter.reset(key)

    assert await admitted(limiter, key, capacity=1, refill=0.001)


async def test_idle_bucket_expires_once_it_would_be_full(
    limiter: RateLimiter, redis: Redis
) -> None:
    key = new_key()
    await limiter.hit(key, capacity=10, refill_per_second=0.01)
    # One token short of full, at 0.01 a second: about 100 s.
    assert 99_000 <= await redis.pttl(KEY_PREFIX + key) <= 100_000

    await limiter.hit(key, capacity=10, refill_per_second=100.0)

    async def expired() -> bool:
        return not await redis.exists(KEY_PREFIX + key)

    await eventually(expired)


@pytest.mark.parametrize(
    ("capacity", "refill", "cost"), [(0, 1.0, 1), (1, 0.0, 1), (2, 1.0, 3), (2, 1.0, 0)]
)
async def test_impossible_buckets_are_refused(
    limiter: RateLimiter, capacity: int, refill: float, cost: int
) -> None:
    with pytest.raises(ValueError, match="capacity"):
        await limiter.hit(new_key(), capacity=capacity, refill_per_second=refill, cost=cost)
