"""WatchNotifications: a user's live notification stream, fed by every replica over the EventBus.

The stream subscribes first, then reads the unread count (so nothing published in between is
missed), then forwards each event published on `notifications:{user}`. After a heartbeat period
without events it sends the unread count again (idle proxies keep the stream open) and re-checks
the caller's session, ending with UNAUTHENTICATED SESSION_REVOKED once it is revoked: revocation
is noticed within one heartbeat (30 s by default), not instantly. It ends with UNAVAILABLE
DRAINING when the server shuts down, and when the subscriber lagged behind (the client reconnects
and catches up with ListNotifications). Open streams per user are capped across replicas with a
Redis sorted set whose entries expire unless their stream refreshes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Final

from redis.asyncio import Redis
from sqlalchemy import select

from amesa.user.v1 import user_service_pb2 as pb
from server.auth.models import UserSession
from server.core.context import Principal
from server.core.db import Database
from server.core.errors import ResourceExhausted, Unauthenticated
from server.core.events import EventBus, SubscriberLagged, draining, next_event
from server.notify import inbox
from server.user.accounts import load_user

_SLOTS_PREFIX: Final = "amesa:notify:streams:"

log = logging.getLogger("amesa.notify")


async def announce(events: EventBus, user_id: uuid.UUID, payloads: Sequence[bytes]) -> None:
    """Publishes stream events after their change committed. A lost event is caught up by
    ListNotifications (and the next heartbeat's count), so a Redis failure is logged only: the
    change itself succeeded."""
    try:
        for payload in payloads:
            await events.publish(inbox.topic(user_id), payload)
    except Exception as error:
        log.warning("could not publish a notification event: %s", error)


@contextlib.asynccontextmanager
async def stream_slot(
    redis: Redis, *, user_id: uuid.UUID, limit: int, ttl_seconds: float
) -> AsyncIterator[StreamSlot]:
    """Holds one of the user's `limit` stream slots; TOO_MANY_STREAMS when none is free."""
    slot = StreamSlot(redis, key=f"{_SLOTS_PREFIX}{user_id}", ttl_seconds=ttl_seconds)
    count = await slot.take()
    try:
        if count > limit:
            raise ResourceExhausted(
                "TOO_MANY_STREAMS",
                "too many open notification streams; close one first",
                metadata={"limit": str(limit)},
            )
        yield slot
    finally:
        with contextlib.suppress(Exception):
            await redis.zrem(slot.key, slot.member)


class StreamSlot:
    def __init__(self, redis: Redis, *, key: str, ttl_seconds: float) -> None:
        self._redis = redis
        self.key = key
        self.member = uuid.uuid4().hex
        self._ttl = ttl_seconds

    async def take(self) -> int:
        """Registers this stream; returns how many live streams the user has, this one included."""
        now = time.time()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(self.key, "-inf", now)
            pipe.zadd(self.key, {self.member: now + self._ttl})
            pipe.zcard(self.key)
            pipe.expire(self.key, int(self._ttl) + 1)
            results = await pipe.execute()
        return int(results[2])

    async def refresh(self) -> None:
        now = time.time()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.key, {self.member: now + self._ttl})
            pipe.expire(self.key, int(self._ttl) + 1)
            await pipe.execute()


async def _unread(database: Database, principal: Principal, user_id: uuid.UUID) -> int:
    async with database.session(principal) as session:
        return await inbox.unread_count(session, user_id)


async def _check_session(database: Database, principal: Principal) -> None:
    async with database.session(principal) as session:
        revoked = await session.scalar(
            select(UserSession.revoke_time.is_not(None)).where(
                UserSession.id == principal.session_id
            )
        )
    if revoked is None or revoked:
        raise Unauthenticated("SESSION_REVOKED", "the session was revoked; sign in again")


async def watch(
    *,
    database: Database,
    redis: Redis,
    events: EventBus,
    shutting_down: asyncio.Event,
    principal: Principal,
    user_id: uuid.UUID,
    heartbeat_seconds: float,
    max_streams: int,
) -> AsyncIterator[pb.WatchNotificationsResponse]:
    async with database.session(principal) as session:
        await load_user(session, user_id)
    await _check_session(database, principal)
    async with (
        stream_slot(
            redis, user_id=user_id, limit=max_streams, ttl_seconds=3 * heartbeat_seconds
        ) as slot,
        events.subscribe(inbox.topic(user_id)) as subscription,
    ):
        yield pb.WatchNotificationsResponse(
            unread_count=await _unread(database, principal, user_id)
        )
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + heartbeat_seconds
        busy = False  # an event went out since the last heartbeat period began
        while True:
            wait = max(0.0, next_beat - loop.time())
            try:
                event = await next_event(subscription, shutting_down, wait)
            except SubscriberLagged as error:
                raise draining() from error  # cut off by the bus: the client reconnects
            if isinstance(event, bytes):
                busy = True
                yield pb.WatchNotificationsResponse.FromString(event)
                continue
            if event is None:  # every heartbeat period: is the caller still signed in?
                await _check_session(database, principal)
                await slot.refresh()
                next_beat = loop.time() + heartbeat_seconds
                if busy:
                    busy = False
                    continue  # not idle: no heartbeat needed
            # A heartbeat, or events may have been missed (resubscribed): the current count.
            yield pb.WatchNotificationsResponse(
                unread_count=await _unread(database, principal, user_id)
            )
