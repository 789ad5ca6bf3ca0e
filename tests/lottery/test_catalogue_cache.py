"""Public catalogue reads are cached, and every write is visible to the next read at once."""

from __future__ import annotations

import uuid

import grpc
from google.protobuf import field_mask_pb2
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from amesa.lottery.v1 import lottery_service_pb2_grpc
from server.core.settings import Settings
from server.lottery.models import House
from tests.lottery.conftest import (
    Callers,
    add_image,
    complete_house,
    create_house,
    published_house,
)
from tests.support import separate_server


async def test_an_update_is_visible_to_anonymous_readers_as_soon_as_it_returns(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await published_house(callers, owner_engine)
    request = pb.GetHouseRequest(name=house.name)
    assert (await callers.stub.GetHouse(request)).title == house.title
    assert (await callers.stub.GetHouse(request)).title == house.title  # served from the cache

    changed = pb.House(name=house.name, title="Renamed " + uuid.uuid4().hex[:6])
    await callers.stub.UpdateHouse(
        pb.UpdateHouseRequest(house=changed, update_mask=field_mask_pb2.FieldMask(paths=["title"])),
        metadata=callers.admin,
    )

    assert (await callers.stub.GetHouse(request)).title == changed.title


async def test_lists_see_new_and_cancelled_houses_at_once(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    city = f"Cache{uuid.uuid4().hex[:10]}"
    first = await published_house(callers, owner_engine, complete_house(title="first", city=city))
    request = pb.ListHousesRequest(city=city, order_by="create_time")
    assert [h.title for h in (await callers.stub.ListHouses(request)).houses] == ["first"]

    await published_house(callers, owner_engine, complete_house(title="second", city=city))
    assert [h.title for h in (await callers.stub.ListHouses(request)).houses] == [
        "first",
        "second",
    ]

    await callers.stub.CancelHouse(
        pb.CancelHouseRequest(name=first.name, reason="withdrawn"), metadata=callers.admin
    )
    response = await callers.stub.ListHouses(request)
    assert [h.state for h in response.houses] == [pb.HOUSE_STATE_CANCELLED, pb.HOUSE_STATE_UPCOMING]


async def test_a_published_draft_appears_for_anonymous_readers_at_once(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    draft = await create_house(callers)
    await add_image(owner_engine, draft.name)
    request = pb.GetHouseRequest(name=draft.name)
    before = await callers.stub.GetHouse(request, metadata=callers.admin)
    assert before.state == pb.HOUSE_STATE_DRAFT

    await callers.stub.PublishHouse(pb.PublishHouseRequest(name=draft.name), metadata=callers.admin)

    assert (await callers.stub.GetHouse(request)).state == pb.HOUSE_STATE_UPCOMING


async def test_anonymous_reads_are_served_from_the_cache_admin_reads_are_not(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await published_house(callers, owner_engine)
    request = pb.GetHouseRequest(name=house.name)
    assert (await callers.stub.GetHouse(request)).title == house.title

    # A change behind the service's back (no invalidation) shows the cache at work.
    async with owner_engine.begin() as connection:
        await connection.execute(
            update(House)
            .where(House.id == uuid.UUID(house.name.split("/")[1]))
            .values(title="Changed behind the cache")
        )

    assert (await callers.stub.GetHouse(request)).title == house.title
    admin_view = await callers.stub.GetHouse(request, metadata=callers.admin)
    assert admin_view.title == "Changed behind the cache"


async def test_reads_still_work_when_redis_is_down(
    settings: Settings, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await published_house(callers, owner_engine)
    async with (
        separate_server(settings, redis_url="redis://127.0.0.1:1/0") as broken,
        grpc.aio.insecure_channel(f"127.0.0.1:{broken.port}") as channel,
    ):
        stub = lottery_service_pb2_grpc.LotteryServiceStub(channel)
        got = await stub.GetHouse(pb.GetHouseRequest(name=house.name))
        listed = await stub.ListHouses(pb.ListHousesRequest(city=house.city))
    assert got.title == house.title
    assert [h.name for h in listed.houses] == [house.name]
