"""LotteryService.GetHouse: published houses for anyone, drafts and deleted houses for admins."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from tests.lottery.conftest import Callers, complete_house, create_house, published_house
from tests.support import failure


async def test_anyone_gets_a_published_house_with_its_terms_and_images(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await published_house(
        callers, owner_engine, complete_house(latitude=41.1579, longitude=-8.6291)
    )

    got = await callers.stub.GetHouse(pb.GetHouseRequest(name=house.name))

    assert got == house
    assert got.state == pb.HOUSE_STATE_UPCOMING
    assert got.location.latitude == pytest.approx(41.1579)
    assert got.location.longitude == pytest.approx(-8.6291)
    assert got.lottery_terms.ticket_price.amount_minor == 1000
    assert got.tickets_remaining == 100
    assert len(got.images) == 1
    assert got.images[0].uri.startswith("https://images.amesa.io/")
    assert got.HasField("publish_time")


async def test_a_draft_is_not_found_for_anonymous_and_users_but_visible_to_admins(
    callers: Callers,
) -> None:
    draft = await create_house(callers)

    for metadata in ((), callers.user):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await callers.stub.GetHouse(pb.GetHouseRequest(name=draft.name), metadata=metadata)
        assert failure(raised.value).code == grpc.StatusCode.NOT_FOUND
        assert failure(raised.value).reason == "HOUSE_NOT_FOUND"
    got = await callers.stub.GetHouse(pb.GetHouseRequest(name=draft.name), metadata=callers.admin)
    assert got.state == pb.HOUSE_STATE_DRAFT


async def test_a_deleted_house_is_visible_to_admins_only(callers: Callers) -> None:
    draft = await create_house(callers)
    await callers.stub.DeleteHouse(pb.DeleteHouseRequest(name=draft.name), metadata=callers.admin)

    got = await callers.stub.GetHouse(pb.GetHouseRequest(name=draft.name), metadata=callers.admin)
    assert got.HasField("delete_time")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.GetHouse(pb.GetHouseRequest(name=draft.name), metadata=callers.user)
    assert failure(raised.value).reason == "HOUSE_NOT_FOUND"


async def test_unknown_house_is_not_found(callers: Callers) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.GetHouse(
            pb.GetHouseRequest(name="houses/00000000-0000-4000-8000-000000000000")
        )
    assert failure(raised.value).code == grpc.StatusCode.NOT_FOUND
    assert failure(raised.value).reason == "HOUSE_NOT_FOUND"


async def test_malformed_name_is_invalid_argument(callers: Callers) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.GetHouse(pb.GetHouseRequest(name="houses/NOT-A-UUID"))
    assert failure(raised.value).code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure(raised.value).reason == "INVALID_REQUEST"
