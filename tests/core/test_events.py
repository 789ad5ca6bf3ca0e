"""EventBus against a real Redis: two buses on two connections stand for two replicas."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from server.core.events import (
    CHANNEL_PREFIX,
    RESUBSCRIBED,
    Event,
    EventBus,
    Resubscribed,
    SubscriberLagged,
    Subscription,
)
from server.core.settings import Settings

DEADLINE = 5.0


@pytest_asyncio.fixture(loop_scope="session")
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


@contextlib.asynccontextmanager
async def replica(settings: Settings, *, queue_size: int = 256) -> AsyncIterator[EventBus]:
    """An EventBus on its own Redis client, as in another server process."""
    client = Redis.from_url(settings.redis_url)
    bus = EventBus(client, queue_size=queue_size)
    try:
        yield bus
    finally:
        await bus.close()
        await client.aclose()


def new_topic() -> str:
    return f"test.{uuid.uuid4().hex}"


async def next_event(subscription: Subscription) -> Event:
    async with asyncio.timeout(DEADLINE):
        return await anext(subscription)


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(DEADLINE):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)


async def redis_subscribers(redis: Redis, topic: str) -> int:
    [(_, count)] = await redis.pubsub_numsub(CHANNEL_PREFIX + topic)
    return int(count)


async def test_event_published_on_one_replica_reaches_subscribers_on_every_replica(
    settings: Settings,
) -> None:
    topic = new_topic()
    async with (
        replica(settings) as first,
        replica(settings) as second,
        first.subscribe(topic) as on_first,
        second.subscribe(topic) as on_second,
    ):
        await first.publish(topic, b"sold:42")

        assert await next_event(on_second) == b"sold:42"
        assert await next_event(on_first) == b"sold:42"


async def test_other_topics_are_not_delivered(settings: Settings) -> None:
    topic, other = new_topic(), new_topic()
    async with replica(settings) as bus, bus.subscribe(topic) as events:
        await bus.publish(other, b"not for you")
        await bus.publish(topic, b"for you")

        assert await next_event(events) == b"for you"


async def test_local_subscribers_share_one_redis_subscription_per_replica(
    settings: Settings, redis: Redis
) -> None:
    topic = new_topic()
    async with replica(settings) as first, replica(settings) as second:
        async with contextlib.AsyncExitStack() as stack:
            subscriptions = [
                await stack.enter_async_context(bus.subscribe(topic))
                for bus in (first, second)
                for _ in range(20)
            ]

            assert await redis_subscribers(redis, topic) == 2
            await second.publish(topic, b"draw")
            received = await asyncio.gather(*(next_event(s) for s in subscriptions))
            assert received == [b"draw"] * 40

        async def unsubscribed() -> bool:
            return await redis_subscribers(redis, topic) == 0

        await eventually(unsubscribed)


async def test_slow_subscriber_is_cut_off_while_a_fast_one_keeps_receiving(
    settings: Settings,
) -> None:
    topic = new_topic()
    async with (
        replica(settings, queue_size=8) as bus,
        replica(settings) as publisher,
        bus.subscribe(topic) as slow,
        bus.subscribe(topic) as fast,
    ):
        # The slow one never reads: it lags on the ninth event.
        for number in range(20):
            await publisher.publish(topic, b"%d" % number)
            assert await next_event(fast) == b"%d" % number

        with pytest.raises(SubscriberLagged):
            await anext(slow)
        await publisher.publish(topic, b"after")
        assert await next_event(fast) == b"after"


async def test_close_ends_every_subscription(settings: Settings) -> None:
    topic = new_topic()
    async with replica(settings) as bus, replica(settings) as publisher:
        received: list[Event] = []
        subscribed = asyncio.Event()

        async def stream() -> None:
            async with bus.subscribe(topic) as events:
                subscribed.set()
                async for event in events:
                    received.append(event)

        streams = [asyncio.create_task(stream()) for _ in range(3)]
        async with asyncio.timeout(DEADLINE):
            await subscribed.wait()
        await publisher.publish(topic, b"last")

        async def all_received() -> bool:
            return len(received) == 3

        await eventually(all_received)
        await bus.close()

        async with asyncio.timeout(DEADLINE):
            await asyncio.gather(*streams)
        assert received == [b"last"] * 3
        with pytest.raises(RuntimeError):
            async with bus.subscribe(topic):
                pass


async def test_lost_connection_is_resubscribed_and_announced(
    settings: Settings, redis: Redis
) -> None:
    topic = new_topic()
    async with (
        replica(settings) as bus,
        replica(settings) as publisher,
        bus.subscribe(topic) as events,
    ):
        [connection] = [c for c in await redis.client_list() if c["name"] == bus.client_name]
        await redis.client_kill_filter(_id=connection["id"])

        marker = await next_event(events)
        assert isinstance(marker, Resubscribed)
        assert marker is RESUBSCRIBED
        # The marker comes once the subscription is live again: nothing published now is lost.
        await publisher.publish(topic, b"after reconnect")
        assert await next_event(events) == b"after reconnect"
        assert await redis_subscribers(redis, topic) == 1
