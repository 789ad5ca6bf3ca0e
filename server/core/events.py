"""Event fan-out between replicas over Redis pub/sub.

A change committed on one replica must reach the live streams (WatchHouse, WatchNotifications) of
every replica. Each process holds ONE pub/sub connection; any number of local subscribers share
it, each with its own bounded queue, so 10,000 streams cost one Redis subscription per topic.

Delivery is at most once: Redis keeps nothing for a listener that is not connected. Streams that
must stay exact therefore follow one pattern, which `Resubscribed` makes explicit:

    async with bus.subscribe(topic) as events:   # returns once Redis confirmed the subscription
        yield snapshot()                           # read from PostgreSQL *after* subscribing
        async for event in events:
            if isinstance(event, Resubscribed):    # events may have been missed: start over
                yield snapshot()
            else:
                yield decode(event)

`Resubscribed` arrives after the connection was lost and the subscription is live again (so a
snapshot read then misses nothing), and also when `subscribe()` had to return before Redis could
confirm. It may occasionally arrive without a real gap; resending a snapshot is always correct.

A subscriber that falls `queue_size` events behind is cut off with `SubscriberLagged` instead of
slowing the shared reader (and so every other stream); its stream should end, and the client
reconnects for a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from server.core.errors import Unavailable

log = logging.getLogger("amesa.events")

CHANNEL_PREFIX: Final = "amesa:ev:"
# How long `subscribe()` waits for Redis to confirm before returning anyway (the subscriber then
# receives `Resubscribed` once the subscription is live).
SUBSCRIBE_TIMEOUT_SECONDS: Final = 2.0
# An idle connection is PINGed this often; no answer by the next round means a dead peer (a
# half-open TCP connection would otherwise look like a quiet one forever).
_PING_AFTER_SECONDS: Final = 15.0
_BACKOFF_MIN_SECONDS: Final = 0.1
_BACKOFF_MAX_SECONDS: Final = 5.0


class SubscriberLagged(Exception):
    """The subscriber fell a whole queue behind and was disconnected from its topic."""


class Resubscribed:
    """Marker in a subscription: events may have been missed, resend a snapshot."""

    def __repr__(self) -> str:
        return "RESUBSCRIBED"


RESUBSCRIBED: Final = Resubscribed()

Event = bytes | Resubscribed


class Subscription:
    """One local subscriber: an async iterator of payloads and `Resubscribed` markers."""

    def __init__(self, topic: str, *, queue_size: int) -> None:
        self.topic = topic
        # None only wakes a waiting consumer so it notices the end.
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(queue_size)
        self._failure: SubscriberLagged | None = None
        self._ended = False

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._failure is not None:
                raise self._failure
            if self._ended:
                raise StopAsyncIteration
            item = await self._queue.get()
            if item is not None:
                return item

    def _offer(self, item: Event) -> bool:
        """Queues without ever waiting; False (and cut off) when the queue is full."""
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._failure = SubscriberLagged(
                f"subscriber of {self.topic!r} fell {self._queue.maxsize} events behind"
            )
            return False
        return True

    def _end(self) -> None:
        self._ended = True
        # A full queue means the consumer is not waiting: it sees `_ended` on its next call.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)


@dataclass(eq=False)
class _Channel:
    subscribers: set[Subscription] = field(default_factory=set)
    # Set once Redis confirmed every SUBSCRIBE sent for this channel on the current connection.
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    unconfirmed: int = 0
    # Tell the subscribers `Resubscribed` when the subscription is (again) confirmed.
    announce: bool = False


class EventBus:
    """Publishes to and subscribes from topics shared by every replica (`amesa:ev:<topic>`)."""

    def __init__(self, redis: Redis, *, queue_size: int = 256) -> None:
        self._redis = redis
        self._queue_size = queue_size
        # Names the connection in CLIENT LIST, so operators (and tests) can find it.
        self.client_name = f"amesa-events-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._pool = _dedicated_pool(redis, client_name=self.client_name)
        self._channels: dict[bytes, _Channel] = {}
        self._pubsub: PubSub | None = None  # None while not connected
        self._lock = asyncio.Lock()  # orders (re)connects against SUBSCRIBE/UNSUBSCRIBE
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    async def publish(self, topic: str, payload: bytes) -> None:
        """Sends `payload` to every replica's subscribers of `topic`.

        Call it only after the database transaction that made the change has committed: a
        subscriber reacting to the event (e.g. by reading a snapshot) must find the change, and
        a rolled-back change must never be announced.
        """
        await self._redis.publish(_channel_name(topic), payload)

    @contextlib.asynccontextmanager
    async def subscribe(self, topic: str) -> AsyncIterator[Subscription]:
        """Subscribes for the duration of the block; events published after it is entered arrive
        (unless the first item is `Resubscribed`, see the module docstring)."""
        if self._closed:
            raise RuntimeError("the event bus is closed")
        name = _channel_name(topic)
        subscription = Subscription(topic, queue_size=self._queue_size)
        channel: _Channel | None = None
        try:
            async with self._lock:
                channel = self._channels.get(name)
                if channel is None:
                    channel = self._channels[name] = _Channel()
                    channel.subscribers.add(subscription)
                    await self._send_subscribe(name, channel)
                else:
                    channel.subscribers.add(subscription)
            if self._reader is None:
                self._reader = asyncio.create_task(self._run(), name="event-bus-reader")
            try:
                async with asyncio.timeout(SUBSCRIBE_TIMEOUT_SECONDS):
                    await channel.ready.wait()
            except TimeoutError:
                channel.announce = True
            yield subscription
        finally:
            if channel is not None:
                await self._leave(name, channel, subscription)

    async def close(self) -> None:
        """Ends every subscription (their iteration stops) and the connection; for shutdown."""
        if self._closed:
            return
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for channel in self._channels.values():
            for subscription in channel.subscribers:
                subscription._end()
        self._channels.clear()
        await self._disconnect()
        await self._pool.aclose()

    async def _send_subscribe(self, name: bytes, channel: _Channel) -> None:
        if self._pubsub is None:
            return  # the reader subscribes every channel when it (re)connects
        channel.unconfirmed += 1
        try:
            await self._pubsub.subscribe(name)
        except Exception as error:
            # The reader sees the broken connection too, reconnects and resubscribes.
            log.warning("event bus: SUBSCRIBE failed: %s", error)

    async def _leave(self, name: bytes, channel: _Channel, subscription: Subscription) -> None:
        async with self._lock:
            channel.subscribers.discard(subscription)
            if channel.subscribers or self._channels.get(name) is not channel:
                return
            del self._channels[name]
            if self._pubsub is not None:
                try:
                    await self._pubsub.unsubscribe(name)
                except Exception as error:
                    # A reconnect subscribes only the channels still listed.
                    log.warning("event bus: UNSUBSCRIBE failed: %s", error)

    async def _run(self) -> None:
        """The one reader: connects, dispatches, and reconnects with backoff until closed."""
        delay = _BACKOFF_MIN_SECONDS
        reconnect = False
        while True:
            try:
                pubsub = await self._connect(reconnect=reconnect)
                delay = _BACKOFF_MIN_SECONDS
                await self._listen(pubsub)
            except Exception as error:
                log.warning(
                    "event bus lost Redis (%s: %s); reconnecting in %.1f s",
                    type(error).__name__,
                    error,
                    delay,
                )
            await self._disconnect()
            reconnect = True
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
            delay = min(delay * 2, _BACKOFF_MAX_SECONDS)

    async def _connect(self, *, reconnect: bool) -> PubSub:
        pubsub = PubSub(self._pool)
        try:
            async with self._lock:
                await pubsub.connect()  # type: ignore[no-untyped-call]  # redis-py: unannotated
                for channel in self._channels.values():
                    channel.ready.clear()
                    channel.unconfirmed = 1
                    channel.announce = channel.announce or reconnect
                if self._channels:
                    await pubsub.subscribe(*self._channels)
                self._pubsub = pubsub
        except BaseException:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            raise
        if reconnect:
            log.info("event bus reconnected; %d topics resubscribed", len(self._channels))
        return pubsub

    async def _disconnect(self) -> None:
        async with self._lock:
            pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _listen(self, pubsub: PubSub) -> None:
        awaiting_pong = False
        while True:
            message: dict[str, Any] | None = await pubsub.get_message(timeout=_PING_AFTER_SECONDS)
            if message is None:
                if awaiting_pong:
                    raise RedisConnectionError("Redis did not answer PING")
                awaiting_pong = True
                await pubsub.ping()
                continue
            awaiting_pong = False
            self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        """Runs on the reader task and never waits, so no subscriber can hold it up."""
        kind = message["type"]
        channel = self._channels.get(message["channel"]) if kind != "pong" else None
        if channel is None:
            return
        if kind == "subscribe":
            channel.unconfirmed = max(channel.unconfirmed - 1, 0)
            if channel.unconfirmed == 0:
                channel.ready.set()
                if channel.announce:
                    channel.announce = False
                    self._deliver(channel, RESUBSCRIBED)
        elif kind == "message":
            self._deliver(channel, message["data"])

    def _deliver(self, channel: _Channel, item: Event) -> None:
        for subscription in list(channel.subscribers):
            if not subscription._offer(item):
                channel.subscribers.discard(subscription)
                log.warning("event bus: a subscriber of %r lagged, cut off", subscription.topic)


def _channel_name(topic: str) -> bytes:
    return (CHANNEL_PREFIX + topic).encode()


def _dedicated_pool(redis: Redis, *, client_name: str) -> ConnectionPool:
    """A private pool for the pub/sub connection, configured like the shared one except that
    redis-py must not retry on its own: a silent reconnect would lose events unnoticed, so the
    error has to reach the reader, which resubscribes and tells subscribers `Resubscribed`."""
    shared = redis.connection_pool
    settings = {
        **shared.connection_kwargs,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,  # it would read replies out from under the reader
        "decode_responses": False,  # payloads are bytes
        "client_name": client_name,
    }
    return ConnectionPool(connection_class=shared.connection_class, **settings)


def draining() -> Unavailable:
    """How a live stream ends when the server stops (or its event bus closes)."""
    return Unavailable("DRAINING", "the server is shutting down; reconnect")


async def next_event(
    subscription: AsyncIterator[bytes | Resubscribed],
    stopping: asyncio.Event,
    wait_seconds: float,
) -> bytes | Resubscribed | None:
    """The next item of a stream's subscription; None after `wait_seconds` without one (time for
    a heartbeat). DRAINING when `stopping` is set or the bus closed; SubscriberLagged passes
    through, so each stream decides how a lagging client ends."""
    if stopping.is_set():
        raise draining()
    # One await per event, no helper futures: at 10,000 streams the per-event cost is what
    # bounds fan-out. A stop while waiting arrives as the end of the subscription, because
    # App.stop closes the bus right after setting `stopping`.
    try:
        async with asyncio.timeout(wait_seconds):
            return await anext(subscription)
    except TimeoutError:
        return None
    except StopAsyncIteration as error:
        raise draining() from error  # the bus closed: the server is stopping
