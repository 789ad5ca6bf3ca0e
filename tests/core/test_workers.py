"""`python -m server` with AMESA_WORKERS=2: two processes share the port, the parent serves their
combined metrics, and SIGTERM stops everything cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest_asyncio
from grpc_health.v1 import health_pb2

from amesa.content.v1 import content_service_pb2 as pb
from amesa.content.v1 import content_service_pb2_grpc
from server.core.settings import Settings
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
CALLS = 40


def _workers(pid: int) -> set[int]:
    """The worker processes of a server parent (not multiprocessing's resource tracker)."""
    children = {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    return {
        child
        for child in children
        if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()
    }


@pytest_asyncio.fixture(loop_scope="session")
async def two_workers(
    settings: Settings, migrated_database: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int, int]]:
    grpc_port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "AMESA_ENV": "test",
        "AMESA_WORKERS": "2",
        "AMESA_GRPC_ADDRESS": f"127.0.0.1:{grpc_port}",
        "AMESA_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
        "AMESA_DATABASE_URL": settings.database_url,
        "AMESA_REDIS_URL": settings.redis_url,
        "AMESA_SHUTDOWN_GRACE_SECONDS": "1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", env=env, cwd=ROOT, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            check = channel.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            for _ in range(200):
                try:
                    await check(health_pb2.HealthCheckRequest(), timeout=1)
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.1)
        yield process, grpc_port, metrics_port
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_two_workers_serve_one_port_and_stop_on_sigterm(
    two_workers: tuple[asyncio.subprocess.Process, int, int], languages: None
) -> None:
    process, grpc_port, metrics_port = two_workers
    workers = _workers(process.pid)
    assert len(workers) == 2
    for _ in range(CALLS):  # a new connection per call, so the kernel spreads them
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = content_service_pb2_grpc.ContentServiceStub(channel)
            response = await stub.ListLanguages(pb.ListLanguagesRequest(), timeout=5)
            assert response.languages[0].language_code == "en"
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    line = next(
        row
        for row in metrics.splitlines()
        if row.startswith("amesa_rpc_total{") and "ListLanguages" in row and 'code="OK"' in row
    )
    assert float(line.rsplit(" ", 1)[1]) == CALLS  # both workers' counts, summed by the parent
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), timeout=15) == 0
    assert not any(os.path.exists(f"/proc/{pid}") for pid in workers)  # noqa: ASYNC240
