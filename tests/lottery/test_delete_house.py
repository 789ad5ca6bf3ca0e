"""LotteryService.DeleteHouse: soft delete of DRAFT or CANCELLED houses only, audited."""

from __future__ import annotations

import uuid

import grpc
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from server.app import App
from server.core.models import AuditLog
from server.lottery.models import House, HouseState
from tests.lottery.conftest import Callers, create_house, force_state, published_house
from tests.support import failure


async def test_a_draft_is_soft_deleted_and_audited(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await create_house(callers)

    await callers.stub.DeleteHouse(pb.DeleteHouseRequest(name=house.name), metadata=callers.admin)

    house_id = uuid.UUID(house.name.split("/")[1])
    async with owner_engine.connect() as connection:
        assert await connection.scalar(select(House.delete_time).where(House.id == house_id))
        actions = list(
            await connection.scalars(
                select(AuditLog.action).where(AuditLog.resource_name == house.name)
            )
        )
    assert "lottery.house.delete" in actions
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.DeleteHouse(
            pb.DeleteHouseRequest(name=house.name), metadata=callers.admin
        )
    assert failure(raised.value).reason == "HOUSE_NOT_FOUND"


async def test_a_cancelled_house_can_be_deleted(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await published_house(callers, owner_engine)
    await callers.stub.CancelHouse(
        pb.CancelHouseRequest(name=house.name, reason="r"), metadata=callers.admin
    )
    await callers.stub.DeleteHouse(pb.DeleteHouseRequest(name=house.name), metadata=callers.admin)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.GetHouse(pb.GetHouseRequest(name=house.name))
    assert failure(raised.value).reason == "HOUSE_NOT_FOUND"


@pytest.mark.parametrize(
    "state",
    [
        HouseState.UPCOMING,
        HouseState.ACTIVE,
        HouseState.SOLD_OUT,
        HouseState.CLOSED,
        HouseState.DRAWN,
    ],
)
async def test_a_published_house_is_not_deletable(
    app: App, callers: Callers, owner_engine: AsyncEngine, state: HouseState
) -> None:
    house = await published_house(callers, owner_engine)
    await force_state(app, owner_engine, house.name, state)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.DeleteHouse(
            pb.DeleteHouseRequest(name=house.name), metadata=callers.admin
        )

    error = failure(raised.value)
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "HOUSE_NOT_DELETABLE"
    assert error.error_info.metadata["state"] == state.value
