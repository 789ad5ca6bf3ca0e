"""grpc.health.v1: SERVING when PostgreSQL and Redis answer, NOT_SERVING otherwise or draining."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2

from server.app import SERVICE_NAMES, App
from server.core.settings import Settings
from tests.support import separate_server

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _status(port: int, service: str = "") -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        response: health_pb2.HealthCheckResponse = await check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
        return int(response.status)


async def test_server_with_healthy_dependencies_is_serving(app: App) -> None:
    assert await _status(app.port) == SERVING
    for service in SERVICE_NAMES:
        assert await _status(app.port, service) == SERVING


async def test_server_whose_redis_is_down_is_not_serving(settings: Settings) -> None:
    async with separate_server(settings, redis_url="redis://127.0.0.1:1/0") as app:
        assert await _status(app.port) == NOT_SERVING
        assert await _status(app.port, "amesa.lottery.v1.LotteryService") == NOT_SERVING


async def test_server_whose_database_is_down_is_not_serving(settings: Settings) -> None:
    async with separate_server(
        settings, database_url="postgresql://postgres@127.0.0.1:1/amesa"
    ) as app:
        assert await _status(app.port) == NOT_SERVING


async def test_draining_server_reports_not_serving_until_it_stops(settings: Settings) -> None:
    async with separate_server(settings) as app:
        assert await _status(app.port) == SERVING
        await app.health.drain()
        assert await _status(app.port) == NOT_SERVING
        # Probes that still succeed must not flip a draining server back to SERVING.
        await asyncio.sleep(settings.health_probe_interval_seconds * 3)
        assert await _status(app.port) == NOT_SERVING
