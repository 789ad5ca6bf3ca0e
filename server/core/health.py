"""The standard grpc.health.v1 service, driven by probes of PostgreSQL and Redis.

SERVING only while both dependencies answer; NOT_SERVING when either fails and while the server
drains before shutdown, so a load balancer stops sending new calls before streams are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterable
from typing import Any

from grpc_health.v1 import health, health_pb2
from redis.asyncio import Redis

from server.core.db import Database
from server.core.metrics import Metrics

log = logging.getLogger("amesa.health")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_STOP_WAIT_SECONDS = 2.0


class HealthMonitor:
    def __init__(
        self,
        *,
        database: Database,
        redis: Redis,
        services: Iterable[str],
        interval_seconds: float,
        metrics: Metrics,
    ) -> None:
        self.servicer = health.aio.HealthServicer()
        self._database = database
        self._redis = redis
        self._services = ("", *services)  # "" is the overall health of the server
        self._interval = interval_seconds
        self._metrics = metrics
        self._draining = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.probe()
        self._task = asyncio.create_task(self._run(), name="health-probe")

    async def drain(self) -> None:
        """Reports NOT_SERVING from now on, whatever the probes say."""
        self._draining = True
        await self._set(NOT_SERVING)
        await self.servicer.enter_graceful_shutdown()

    async def stop(self) -> None:
        """Stops the probes. A probe stuck in a dependency that does not notice its
        cancellation (seen once in CI: a task left "cancelling" inside a ping) is abandoned
        after a short wait: a health probe must never hold up shutdown."""
        if self._task is None:
            return
        self._task.cancel()
        done, _ = await asyncio.wait({self._task}, timeout=_STOP_WAIT_SECONDS)
        if not done:
            log.warning("the health probe did not stop within %s s; abandoned", _STOP_WAIT_SECONDS)
            return
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def probe(self) -> bool:
        """Probes both dependencies once and publishes the result; True when all answered."""
        database_up = await self._answers("postgresql", self._database.ping())
        redis_up = await self._answers("redis", self._redis.ping())
        healthy = database_up and redis_up and not self._draining
        await self._set(SERVING if healthy else NOT_SERVING)
        return healthy

    async def _answers(self, name: str, check: Awaitable[Any]) -> bool:
        try:
            async with asyncio.timeout(max(self._interval, 1.0)):
                await check
        except Exception as error:
            log.warning("%s is not answering: %s", name, type(error).__name__)
            self._metrics.dependency_up.labels(name).set(0)
            return False
        self._metrics.dependency_up.labels(name).set(1)
        return True

    async def _set(self, status: int) -> None:
        if self._draining and status == SERVING:
            return
        for service in self._services:
            await self.servicer.set(service, status)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.probe()
