"""The outbox against a real PostgreSQL: transactional enqueue, SKIP LOCKED claims, retries with
backoff and the dead letter. Each test uses its own topic, and claims only that topic."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core import outbox
from server.core.db import Database
from server.core.models import OutboxState
from server.core.settings import Settings


class Rollback(Exception):
    pass


@pytest_asyncio.fixture(loop_scope="session")
async def database(settings: Settings, migrated_database: str) -> AsyncIterator[Database]:
    db = Database(migrated_database, role=settings.database_role, pool_size=10)
    yield db
    await db.close()


def new_topic() -> str:
    return f"test.outbox_{uuid.uuid4().hex}"


async def enqueue_many(database: Database, topic: str, count: int, **extra: Any) -> set[uuid.UUID]:
    ids: set[uuid.UUID] = set()
    async with database.session(system=True) as session:
        for number in range(count):
            id_ = await outbox.enqueue(
                session, topic=topic, payload={"number": number}, user_id=None, **extra
            )
            assert id_ is not None
            ids.add(id_)
    return ids


async def claim(database: Database, topic: str, *, limit: int = 10) -> list[outbox.OutboxMessage]:
    async with database.session(system=True) as session:
        return await outbox.claim_due(session, limit=limit, topics=[topic])


async def rows(owner_engine: AsyncEngine, topic: str) -> list[dict[str, Any]]:
    async with owner_engine.connect() as connection:
        result = await connection.execute(
            text(
                "SELECT id, state, attempt_count, payload, last_error, deliver_time,"
                " extract(epoch FROM available_time - now()) AS due_in"
                " FROM outbox WHERE topic = :topic ORDER BY create_time"
            ),
            {"topic": topic},
        )
        return [dict(row._mapping) for row in result]


async def make_due(owner_engine: AsyncEngine, topic: str) -> None:
    """Ends any backoff or claim lease now, instead of waiting for it."""
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE outbox SET available_time = now() - interval '1 second'"
                " WHERE topic = :topic"
            ),
            {"topic": topic},
        )


async def test_enqueue_in_a_rolled_back_transaction_leaves_nothing(
    database: Database, owner_engine: AsyncEngine
) -> None:
    topic = new_topic()

    async def enqueue_then_fail() -> None:
        async with database.session(system=True) as session:
            await outbox.enqueue(session, topic=topic, payload={"a": 1}, user_id=None)
            raise Rollback

    with pytest.raises(Rollback):
        await enqueue_then_fail()

    assert await rows(owner_engine, topic) == []


async def test_enqueue_commits_with_the_transaction_and_once_per_dedupe_key(
    database: Database, owner_engine: AsyncEngine
) -> None:
    topic = new_topic()
    dedupe_key = f"receipt:{uuid.uuid4()}"

    async with database.session(system=True) as session:
        first = await outbox.enqueue(
            session, topic=topic, payload={"order": "o1"}, user_id=None, dedupe_key=dedupe_key
        )
    async with database.session(system=True) as session:
        again = await outbox.enqueue(
            session, topic=topic, payload={"order": "o1"}, user_id=None, dedupe_key=dedupe_key
        )

    assert first is not None
    assert again is None
    [row] = await rows(owner_engine, topic)
    assert row["id"] == first
    assert row["state"] == OutboxState.PENDING
    assert row["payload"] == {"order": "o1"}


async def test_message_is_not_claimed_before_its_available_time(database: Database) -> None:
    topic = new_topic()
    later = datetime.now(UTC) + timedelta(hours=1)
    await enqueue_many(database, topic, 1, available_time=later)

    assert await claim(database, topic) == []


async def test_concurrent_claimers_never_get_the_same_message(database: Database) -> None:
    topic = new_topic()
    ids = await enqueue_many(database, topic, 12)

    # Both claims are open at once: the second skips the rows the first has locked.
    async with database.session(system=True) as first:
        first_claim = await outbox.claim_due(first, limit=5, topics=[topic])
        async with database.session(system=True) as second:
            second_claim = await outbox.claim_due(second, limit=5, topics=[topic])
    # Committed claims stay hidden for their lease: only the rest is left.
    rest = await claim(database, topic, limit=100)

    claimed = [m.id for m in (*first_claim, *second_claim, *rest)]
    assert (len(first_claim), len(second_claim), len(rest)) == (5, 5, 2)
    assert sorted(claimed) == sorted(ids)
    assert {m.attempt for m in first_claim} == {1}


async def test_many_concurrent_dispatchers_claim_every_message_once(database: Database) -> None:
    topic = new_topic()
    ids = await enqueue_many(database, topic, 60)

    async def dispatcher() -> list[uuid.UUID]:
        mine: list[uuid.UUID] = []
        while batch := await claim(database, topic, limit=4):
            mine.extend(message.id for message in batch)
        return mine

    claims = await asyncio.gather(*(dispatcher() for _ in range(6)))

    claimed = [id_ for batch in claims for id_ in batch]
    assert sorted(claimed) == sorted(ids)


async def test_delivered_message_is_recorded_once(
    database: Database, owner_engine: AsyncEngine
) -> None:
    topic = new_topic()
    await enqueue_many(database, topic, 1)
    [message] = await claim(database, topic)

    async with database.session(system=True) as session:
        assert await outbox.mark_delivered(session, message)
    async with database.session(system=True) as session:
        assert not await outbox.mark_delivered(session, message)

    [row] = await rows(owner_engine, topic)
    assert row["state"] == OutboxState.DELIVERED
    assert row["deliver_time"] is not None
    await make_due(owner_engine, topic)
    assert await claim(database, topic) == []


async def test_failures_back_off_then_end_dead_after_max_attempts(
    database: Database, owner_engine: AsyncEngine
) -> None:
    topic = new_topic()
    await enqueue_many(database, topic, 1, max_attempts=3)

    for attempt in (1, 2):
        [message] = await claim(database, topic)
        assert message.attempt == attempt
        async with database.session(system=True) as session:
            state = await outbox.mark_failed(session, message, error=f"smtp down {attempt}")

        assert state == OutboxState.PENDING
        [row] = await rows(owner_engine, topic)
        delay = outbox.retry_delay(attempt).total_seconds()
        assert delay - 5 < float(row["due_in"]) <= delay
        assert row["last_error"] == f"smtp down {attempt}"
        assert await claim(database, topic) == []  # backing off
        await make_due(owner_engine, topic)

    [message] = await claim(database, topic)
    assert message.is_last_attempt
    async with database.session(system=True) as session:
        assert await outbox.mark_failed(session, message, error="smtp down 3") == OutboxState.DEAD

    [row] = await rows(owner_engine, topic)
    assert (row["state"], row["attempt_count"], row["last_error"]) == (
        OutboxState.DEAD,
        3,
        "smtp down 3",
    )
    await make_due(owner_engine, topic)
    assert await claim(database, topic) == []


def test_retry_delay_doubles_up_to_an_hour() -> None:
    delays = [outbox.retry_delay(attempt) for attempt in (1, 2, 3, 8, 50)]

    assert delays == [
        timedelta(seconds=30),
        timedelta(minutes=1),
        timedelta(minutes=2),
        timedelta(hours=1),
        timedelta(hours=1),
    ]


async def test_permanent_failure_is_dead_at_once(
    database: Database, owner_engine: AsyncEngine
) -> None:
    topic = new_topic()
    await enqueue_many(database, topic, 1)
    [message] = await claim(database, topic)

    async with database.session(system=True) as session:
        state = await outbox.mark_failed(session, message, error="no such mailbox", permanent=True)

    assert state == OutboxState.DEAD
    [row] = await rows(owner_engine, topic)
    assert row["state"] == OutboxState.DEAD


async def test_last_attempt_whose_claim_expired_goes_dead(
    database: Database, owner_engine: AsyncEngine
) -> None:
    topic = new_topic()
    await enqueue_many(database, topic, 1, max_attempts=1)
    await claim(database, topic)  # the dispatcher dies without recording an outcome

    await make_due(owner_engine, topic)

    assert await claim(database, topic) == []
    [row] = await rows(owner_engine, topic)
    assert row["state"] == OutboxState.DEAD
    assert "expired" in row["last_error"]


async def test_stale_failure_report_does_not_touch_a_newer_attempt(
    database: Database, owner_engine: AsyncEngine
) -> None:
    topic = new_topic()
    await enqueue_many(database, topic, 1)
    [slow] = await claim(database, topic)
    await make_due(owner_engine, topic)  # the slow dispatcher's claim expired
    [retry] = await claim(database, topic)

    async with database.session(system=True) as session:
        assert await outbox.mark_failed(session, slow, error="timed out") is None
        assert await outbox.mark_delivered(session, retry)

    [row] = await rows(owner_engine, topic)
    assert (row["state"], row["attempt_count"], row["last_error"]) == (
        OutboxState.DELIVERED,
        2,
        None,
    )
