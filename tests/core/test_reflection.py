"""Server reflection lists the five services, health and reflection (so grpcurl works)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import grpc
from grpc_reflection.v1alpha import reflection_pb2

from server.app import SERVICE_NAMES, App

EXPECTED = {*SERVICE_NAMES, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


async def test_reflection_lists_every_service(channel: grpc.aio.Channel) -> None:
    info = channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    responses = info(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names: set[str] = set()
    async for response in responses:
        names = {s.name for s in response.list_services_response.service}
    assert names == EXPECTED


async def _grpcurl(*args: str) -> str:
    """Runs the grpcurl binary that `make venv` installs; returns its standard output."""
    grpcurl = Path(sys.executable).parent / "grpcurl"
    process = await asyncio.create_subprocess_exec(
        str(grpcurl), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def test_grpcurl_lists_every_service(app: App) -> None:
    assert set((await _grpcurl("-plaintext", f"127.0.0.1:{app.port}", "list")).split()) == EXPECTED


async def test_grpcurl_calls_a_public_rpc_through_reflection(app: App, languages: None) -> None:
    stdout = await _grpcurl(
        "-plaintext", f"127.0.0.1:{app.port}", "amesa.content.v1.ContentService/ListLanguages"
    )
    codes = [language["language_code"] for language in json.loads(stdout)["languages"]]
    assert codes[0] == "en"
    description = await _grpcurl(
        "-plaintext", f"127.0.0.1:{app.port}", "describe", "amesa.content.v1.ContentService"
    )
    assert "rpc ListLanguages" in description
    assert "rpc GetPublicSettings" in description
