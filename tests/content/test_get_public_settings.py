"""ContentService.GetPublicSettings: public settings only, as JSON values, for anyone."""

from __future__ import annotations

import uuid

import grpc
from google.protobuf import json_format
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.content.v1 import content_service_pb2 as pb
from amesa.content.v1 import content_service_pb2_grpc
from server.content.models import SystemSetting


async def test_returns_public_settings_with_their_json_values_and_hides_private_ones(
    channel: grpc.aio.Channel, owner_engine: AsyncEngine
) -> None:
    suffix = uuid.uuid4().hex[:8]
    public = {
        f"test_flag_{suffix}": True,
        f"test_limits_{suffix}": {"daily": 5000, "currencies": ["EUR", "ILS"]},
        f"test_nothing_{suffix}": None,
    }
    private_key = f"test_secret_{suffix}"
    async with owner_engine.begin() as connection:
        await connection.execute(
            insert(SystemSetting).values(
                [{"key": k, "value": v, "is_public": True} for k, v in public.items()]
                + [{"key": private_key, "value": "internal", "is_public": False}]
            )
        )
    stub = content_service_pb2_grpc.ContentServiceStub(channel)
    response = await stub.GetPublicSettings(pb.GetPublicSettingsRequest())
    settings = {key: json_format.MessageToDict(value) for key, value in response.settings.items()}
    for key, value in public.items():
        assert settings[key] == value
    assert private_key not in settings
