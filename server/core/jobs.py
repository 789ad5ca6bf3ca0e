"""Periodic background jobs that run on one replica at a time.

Every replica runs the same `JobRunner`; the `job_leases` table decides who runs each round. A
run is claimed with one atomic upsert that succeeds only when

- the lease is free (expired, never taken, or already ours): nobody is running the job now, and
  a replica that crashed mid-run blocks the job only until its lease expires;
- the run is due (`last_start_time` at least one interval ago, in database time): each round runs
  exactly once across the cluster, however many replicas race for it and whatever their clocks.

Two tools, two grains of work:
- a job lease (this module) when one replica should do a whole round: close sales, conduct due
  draws, run the reconciler;
- a row claim with `FOR UPDATE SKIP LOCKED` inside the job when the work is a queue of rows that
  several workers may share without waiting for each other (see `server/core/outbox.py`'s
  `claim_due`). Claim in a short transaction, do network I/O outside it, then record the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from server.core.db import Database
from server.core.models import JobLease

log = logging.getLogger("amesa.jobs")

JobFunction = Callable[[Database], Awaitable[None]]

# A lease outlives the run's timeout by this much, so the run ends (and records its outcome)
# before anyone else may start.
_LEASE_MARGIN: Final = timedelta(seconds=10)
_MAX_ERROR_LENGTH: Final = 2000


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    interval: timedelta
    run: JobFunction
    # A run still going after this is cancelled (and logged as failed).
    timeout: timedelta


class JobRunner:
    """Runs registered jobs every `interval` on whichever replica claims each round.

    A job receives the `Database` and opens its own short transactions (`system=True`), so it
    never holds one across network calls.
    """

    def __init__(
        self,
        database: Database,
        *,
        owner: str | None = None,
        max_jitter: timedelta = timedelta(seconds=1),
    ) -> None:
        self._database = database
        # Unique per runner, even for two runners in one process (tests).
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._max_jitter = max_jitter
        self._jobs: dict[str, Job] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def register(
        self,
        name: str,
        run: JobFunction,
        *,
        interval: timedelta,
        timeout: timedelta = timedelta(seconds=60),
    ) -> None:
        if name in self._jobs:
            raise ValueError(f"job {name!r} is already registered")
        if interval <= timedelta(0) or timeout <= timedelta(0):
            raise ValueError("interval and timeout must be positive")
        self._jobs[name] = Job(name=name, interval=interval, run=run, timeout=timeout)

    def start(self) -> None:
        if self._tasks:
            raise RuntimeError("the job runner is already running")
        for job in self._jobs.values():
            self._tasks.append(asyncio.create_task(self._loop(job), name=f"job-{job.name}"))

    async def stop(self) -> None:
        """Cancels the loops; a run in progress is cancelled (its transaction rolls back) and
        its lease released. Call it before closing the database."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def run_if_due(self, name: str) -> bool:
        """Claims the job's current round and runs it; False when the round is not due yet or
        another replica holds the lease. The loop calls this; so may tests and admin tools."""
        job = self._jobs[name]
        if not await self._claim(job):
            return False
        error: str | None = None
        try:
            async with asyncio.timeout(job.timeout.total_seconds()):
                await job.run(self._database)
        except asyncio.CancelledError:
            error = "cancelled: the replica stopped during the run"
            raise
        except Exception as exc:
            log.exception("job %s failed", job.name)
            error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_LENGTH]
        finally:
            await self._finish(job, error)
        return True

    async def _loop(self, job: Job) -> None:
        # Replicas started together should not all hit the same row at the same instant.
        await asyncio.sleep(self._jitter(job))
        while True:
            try:
                await self.run_if_due(job.name)
                wait = await self._seconds_until_due(job)
            except Exception:
                log.exception("job %s: could not claim a run", job.name)
                wait = job.interval.total_seconds()
            await asyncio.sleep(wait + self._jitter(job))

    async def _claim(self, job: Job) -> bool:
        now = func.now()
        lease_end = now + (job.timeout + _LEASE_MARGIN)
        claim = (
            insert(JobLease)
            .values(
                name=job.name, owner=self.owner, lease_expire_time=lease_end, last_start_time=now
            )
            .on_conflict_do_update(
                index_elements=[JobLease.name],
                set_={"owner": self.owner, "lease_expire_time": lease_end, "last_start_time": now},
                where=and_(
                    or_(
                        JobLease.lease_expire_time.is_(None),
                        JobLease.lease_expire_time < now,
                        JobLease.owner == self.owner,
                    ),
                    or_(
                        JobLease.last_start_time.is_(None),
                        JobLease.last_start_time <= now - job.interval,
                    ),
                ),
            )
            .returning(JobLease.id)
        )
        async with self._database.session(system=True) as session:
            return (await session.execute(claim)).first() is not None

    async def _finish(self, job: Job, error: str | None) -> None:
        """Releases the lease and records the outcome; never raises (the loop must go on)."""
        outcome = {"last_success_time": func.now()} if error is None else {"last_error": error}
        release = (
            update(JobLease)
            .where(JobLease.name == job.name, JobLease.owner == self.owner)
            .values(lease_expire_time=func.now(), **outcome)
        )
        try:
            async with self._database.session(system=True) as session:
                await session.execute(release)
        except Exception:
            log.exception("job %s: could not release its lease (it expires by itself)", job.name)

    async def _seconds_until_due(self, job: Job) -> float:
        """Until the next round by the database's clock; a full interval when it is overdue
        (someone else is running it, or will be shortly)."""
        due = select(
            func.extract("epoch", JobLease.last_start_time + job.interval - func.now())
        ).where(JobLease.name == job.name)
        async with self._database.session(system=True) as session:
            seconds = (await session.execute(due)).scalar_one_or_none()
        if seconds is None or seconds <= 0:
            return job.interval.total_seconds()
        return float(seconds)

    def _jitter(self, job: Job) -> float:
        ceiling = min(self._max_jitter, job.interval / 10).total_seconds()
        return random.uniform(0, ceiling)  # noqa: S311 - spreading load, not security
