"""JobRunner against a real PostgreSQL: two runners stand for two replicas sharing `job_leases`."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.core.db import Database
from server.core.jobs import JobRunner
from server.core.settings import Settings

DEADLINE = 10.0


@pytest_asyncio.fixture(loop_scope="session")
async def databases(
    settings: Settings, migrated_database: str
) -> AsyncIterator[tuple[Database, Database]]:
    """One connection pool per replica, as the application role."""
    pools = tuple(
        Database(migrated_database, role=settings.database_role, pool_size=5) for _ in range(2)
    )
    yield pools[0], pools[1]
    for pool in pools:
        await pool.close()


def new_job_name() -> str:
    return f"test-{uuid.uuid4().hex}"


async def eventually(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(DEADLINE):
        while True:
            if check():
                return
            await asyncio.sleep(0.02)


async def lease(owner_engine: AsyncEngine, name: str) -> dict[str, object]:
    async with owner_engine.connect() as connection:
        row = (
            await connection.execute(
                text(
                    "SELECT owner, lease_expire_time <= now() AS released, last_start_time,"
                    " last_success_time, last_error FROM job_leases WHERE name = :name"
                ),
                {"name": name},
            )
        ).one()
    return dict(row._mapping)


async def age_last_run(owner_engine: AsyncEngine, name: str, by: timedelta) -> None:
    """Makes the next round due without waiting for it."""
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE job_leases SET last_start_time = last_start_time - CAST(:by AS interval)"
                " WHERE name = :name"
            ),
            {"by": by, "name": name},
        )


async def test_racing_runners_run_each_due_round_exactly_once(
    databases: tuple[Database, Database], owner_engine: AsyncEngine
) -> None:
    name = new_job_name()
    runs: list[str] = []
    runners = [JobRunner(database) for database in databases]

    def job_of(runner: JobRunner) -> Callable[[Database], Awaitable[None]]:
        async def job(_database: Database) -> None:
            runs.append(runner.owner)

        return job

    for runner in runners:
        runner.register(name, job_of(runner), interval=timedelta(hours=1))

    for round_number in range(1, 4):
        claims = [runner.run_if_due(name) for runner in runners for _ in range(4)]
        results = await asyncio.gather(*claims)

        assert results.count(True) == 1
        assert len(runs) == round_number
        state = await lease(owner_engine, name)
        assert state["owner"] == runs[-1]
        assert state["released"] is True
        assert state["last_success_time"] is not None
        # Not due again until an hour has passed.
        assert not await runners[0].run_if_due(name)
        await age_last_run(owner_engine, name, timedelta(hours=1))


async def test_running_loops_never_run_a_round_twice(
    databases: tuple[Database, Database], owner_engine: AsyncEngine
) -> None:
    name = new_job_name()
    interval = timedelta(seconds=0.2)
    starts: list[datetime.datetime] = []
    running = 0
    most_running = 0

    async def job(_database: Database) -> None:
        nonlocal running, most_running
        running += 1
        most_running = max(most_running, running)
        # The claim this run holds: nobody can have started another one meanwhile.
        start = (await lease(owner_engine, name))["last_start_time"]
        assert isinstance(start, datetime.datetime)
        starts.append(start)
        await asyncio.sleep(0.05)  # so that the other runner tries while this one runs
        running -= 1

    runners = [JobRunner(database) for database in databases]
    for runner in runners:
        runner.register(name, job, interval=interval)
        runner.start()
    try:
        await eventually(lambda: len(starts) >= 5)
    finally:
        for runner in runners:
            await runner.stop()

    assert most_running == 1
    assert len(set(starts)) == len(starts)
    assert all(later - earlier >= interval for earlier, later in itertools.pairwise(starts))


async def test_failing_job_is_retried_next_interval_and_runner_survives(
    databases: tuple[Database, Database], owner_engine: AsyncEngine
) -> None:
    name = new_job_name()
    calls = 0

    async def flaky(_database: Database) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("provider unreachable")

    runner = JobRunner(databases[0])
    runner.register(name, flaky, interval=timedelta(seconds=0.1))
    runner.start()
    try:
        await eventually(lambda: calls >= 3)
    finally:
        await runner.stop()

    state = await lease(owner_engine, name)
    assert state["last_error"] == "RuntimeError: provider unreachable"
    assert state["last_success_time"] is not None


async def test_stop_cancels_a_running_job_and_releases_its_lease(
    databases: tuple[Database, Database], owner_engine: AsyncEngine
) -> None:
    name = new_job_name()
    started = asyncio.Event()
    cancelled = False

    async def endless(_database: Database) -> None:
        nonlocal cancelled
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled = True
            raise

    runner = JobRunner(databases[0], max_jitter=timedelta(milliseconds=10))
    runner.register(name, endless, interval=timedelta(hours=1))
    runner.start()
    async with asyncio.timeout(DEADLINE):
        await started.wait()
        await runner.stop()

    assert cancelled
    state = await lease(owner_engine, name)
    assert state["released"] is True
    assert str(state["last_error"]).startswith("cancelled")


async def test_job_past_its_timeout_is_cut_and_logged_as_failed(
    databases: tuple[Database, Database], owner_engine: AsyncEngine
) -> None:
    name = new_job_name()

    async def slow(_database: Database) -> None:
        await asyncio.Event().wait()

    runner = JobRunner(databases[0])
    runner.register(name, slow, interval=timedelta(hours=1), timeout=timedelta(seconds=0.1))

    assert await runner.run_if_due(name)

    state = await lease(owner_engine, name)
    assert state["released"] is True
    assert str(state["last_error"]).startswith("TimeoutError")
