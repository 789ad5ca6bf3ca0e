"""The transactional outbox: work to do after a commit, written in the same transaction.

Business code calls `enqueue` with its own session, so the notification (or provider call) exists
if and only if the change that caused it committed. A dispatcher then loops:

    async with db.session(system=True) as session:          # short: claims only
        messages = await outbox.claim_due(session, limit=50)
    for message in messages:                                 # network I/O, outside any transaction
        try:
            await deliver(message)
        except Exception as error:
            async with db.session(system=True) as session:
                await outbox.mark_failed(session, message, error=str(error))
        else:
            async with db.session(system=True) as session:
                await outbox.mark_delivered(session, message)

Delivery is at least once: a dispatcher that dies after delivering but before recording it
leaves the row to be claimed again when its claim expires, so handlers must tolerate repeats
(e.g. notifications are unique on `outbox_id`).

Attempts are counted when claimed, so a message that crashes its dispatcher cannot retry forever:
a failure schedules the next attempt after `retry_delay(attempt)`; the last allowed failure — or
a last attempt whose claim expired without an outcome — moves the row to DEAD (dead letter, kept
for inspection and manual replay).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.models import Outbox, OutboxState

# How long a claimed message is hidden from other dispatchers while it is being delivered.
DEFAULT_CLAIM_LEASE: Final = timedelta(minutes=2)
# Retry delays double from the first to the cap: 30 s, 1 min, 2 min, … 1 h.
RETRY_FIRST_DELAY: Final = timedelta(seconds=30)
RETRY_MAX_DELAY: Final = timedelta(hours=1)
_MAX_ERROR_LENGTH: Final = 2000


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A claimed message; pass it back to `mark_delivered` or `mark_failed`."""

    id: uuid.UUID
    topic: str
    user_id: uuid.UUID | None
    payload: dict[str, Any]
    # This delivery attempt, counting from 1.
    attempt: int
    max_attempts: int

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


async def enqueue(
    session: AsyncSession,
    *,
    topic: str,
    payload: Mapping[str, Any],
    user_id: uuid.UUID | None,
    dedupe_key: str | None = None,
    available_time: datetime | None = None,
    max_attempts: int | None = None,
) -> uuid.UUID | None:
    """Adds a message in the caller's transaction; it is delivered only if that commits.

    `topic` routes it (`notification.email`, `payment.refund`, …: lower case, dots). A
    `dedupe_key` already enqueued makes this a no-op returning None, so a retried business
    operation enqueues once. `available_time` delays the first attempt; `max_attempts` overrides
    the table's default (8).
    """
    values: dict[str, Any] = {
        "topic": topic,
        "payload": dict(payload),
        "user_id": user_id,
        "dedupe_key": dedupe_key,
    }
    if available_time is not None:
        values["available_time"] = available_time
    if max_attempts is not None:
        values["max_attempts"] = max_attempts
    statement = (
        insert(Outbox)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[Outbox.dedupe_key])
        .returning(Outbox.id)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def claim_due(
    session: AsyncSession,
    *,
    limit: int,
    topics: Collection[str] | None = None,
    lease: timedelta = DEFAULT_CLAIM_LEASE,
) -> list[OutboxMessage]:
    """Claims up to `limit` due PENDING messages, oldest first, for `lease`.

    Rows locked by a concurrent claimer are skipped, not waited for, and a committed claim
    pushes `available_time` to the end of the lease, so no two dispatchers get the same message
    while the lease lasts. Commit right after: the claim holds row locks until then.
    """
    now = func.now()
    due: list[ColumnElement[bool]] = [
        Outbox.state == OutboxState.PENDING,
        Outbox.available_time <= now,
    ]
    if topics is not None:
        due.append(Outbox.topic.in_(topics))
    abandoned = (
        update(Outbox)
        .where(*due, Outbox.attempt_count >= Outbox.max_attempts)
        .values(
            state=OutboxState.DEAD,
            last_error=func.concat_ws(
                "; ", Outbox.last_error, "the last attempt's claim expired without an outcome"
            ),
        )
        .execution_options(synchronize_session=False)
    )
    await session.execute(abandoned)
    claimable = (
        select(Outbox.id)
        .where(*due, Outbox.attempt_count < Outbox.max_attempts)
        .order_by(Outbox.available_time)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("claimable")
    )
    claim = (
        update(Outbox)
        .where(Outbox.id.in_(select(claimable.c.id)))
        .values(attempt_count=Outbox.attempt_count + 1, available_time=now + lease)
        .returning(
            Outbox.id,
            Outbox.topic,
            Outbox.user_id,
            Outbox.payload,
            Outbox.attempt_count,
            Outbox.max_attempts,
        )
        .execution_options(synchronize_session=False)
    )
    rows = (await session.execute(claim)).all()
    return [
        OutboxMessage(
            id=row.id,
            topic=row.topic,
            user_id=row.user_id,
            payload=row.payload,
            attempt=row.attempt_count,
            max_attempts=row.max_attempts,
        )
        for row in rows
    ]


async def mark_delivered(session: AsyncSession, message: OutboxMessage) -> bool:
    """Records the delivery; False if the row was no longer PENDING (already recorded)."""
    statement = (
        update(Outbox)
        .where(Outbox.id == message.id, Outbox.state == OutboxState.PENDING)
        .values(state=OutboxState.DELIVERED, deliver_time=func.now())
        .returning(Outbox.id)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def mark_failed(
    session: AsyncSession, message: OutboxMessage, *, error: str, permanent: bool = False
) -> OutboxState | None:
    """Records a failed attempt: PENDING again after `retry_delay`, or DEAD after the last
    attempt or when `permanent` (retrying cannot help, e.g. an invalid address).

    Returns the new state, or None when this attempt is stale — its claim expired and a later
    attempt owns the row — in which case nothing changes.
    """
    values: dict[str, Any] = {"last_error": error[:_MAX_ERROR_LENGTH]}
    if permanent or message.is_last_attempt:
        values["state"] = OutboxState.DEAD
    else:
        values["available_time"] = func.now() + retry_delay(message.attempt)
    statement = (
        update(Outbox)
        .where(
            Outbox.id == message.id,
            Outbox.state == OutboxState.PENDING,
            Outbox.attempt_count == message.attempt,
        )
        .values(**values)
        .returning(Outbox.state)
        .execution_options(synchronize_session=False)
    )
    state: OutboxState | None = (await session.execute(statement)).scalar_one_or_none()
    return state


def retry_delay(attempt: int) -> timedelta:
    """How long to wait after failed attempt number `attempt` (1, 2, …) before the next."""
    doublings = min(max(attempt - 1, 0), 20)
    return min(RETRY_FIRST_DELAY * (1 << doublings), RETRY_MAX_DELAY)
