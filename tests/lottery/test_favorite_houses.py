"""LotteryService.AddFavoriteHouse, RemoveFavoriteHouse and ListFavoriteHouses: own favorites
only (NOT_OWNER for anyone else's), idempotent adds, newest first, deleted houses left out."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable

import grpc
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from server.app import App
from server.lottery.models import Favorite, House, HouseState
from server.user.models import User
from tests.lottery.conftest import (
    Callers,
    Metadata,
    create_house,
    force_state,
    published_house,
)
from tests.support import bearer, failure, token_for


async def new_user(app: App, owner_engine: AsyncEngine) -> tuple[uuid.UUID, Metadata]:
    async with owner_engine.begin() as connection:
        user_id = await connection.scalar(
            insert(User)
            .values(
                email=f"fav-{uuid.uuid4().hex[:12]}@example.com",
                given_name="Fay",
                family_name="Vorite",
            )
            .returning(User.id)
        )
    assert isinstance(user_id, uuid.UUID)
    return user_id, tuple(bearer(token_for(app, user_id=user_id)))


async def test_adding_is_idempotent_and_lists_newest_first(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    user_id, metadata = await new_user(app, owner_engine)
    older = await published_house(callers, owner_engine)
    newer = await published_house(callers, owner_engine)

    first = await callers.stub.AddFavoriteHouse(
        pb.AddFavoriteHouseRequest(parent="users/me", house=older.name), metadata=metadata
    )
    again = await callers.stub.AddFavoriteHouse(
        pb.AddFavoriteHouseRequest(parent=f"users/{user_id}", house=older.name), metadata=metadata
    )
    await callers.stub.AddFavoriteHouse(
        pb.AddFavoriteHouseRequest(parent="users/me", house=newer.name), metadata=metadata
    )

    assert first == again
    assert first.name == f"users/{user_id}/favoriteHouses/{older.name.split('/')[1]}"
    assert first.house == older
    listed = await callers.stub.ListFavoriteHouses(
        pb.ListFavoriteHousesRequest(parent="users/me"), metadata=metadata
    )
    assert [f.house.name for f in listed.favorite_houses] == [newer.name, older.name]
    assert listed.total_size == 2


async def test_pages_follow_each_other(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    _, metadata = await new_user(app, owner_engine)
    houses = [await published_house(callers, owner_engine) for _ in range(3)]
    for house in houses:
        await callers.stub.AddFavoriteHouse(
            pb.AddFavoriteHouseRequest(parent="users/me", house=house.name), metadata=metadata
        )
    request = pb.ListFavoriteHousesRequest(parent="users/me", page_size=2)
    first = await callers.stub.ListFavoriteHouses(request, metadata=metadata)
    request.page_token = first.next_page_token
    second = await callers.stub.ListFavoriteHouses(request, metadata=metadata)

    names = [f.house.name for f in (*first.favorite_houses, *second.favorite_houses)]
    assert names == [h.name for h in reversed(houses)]
    assert second.next_page_token == ""


async def test_a_page_token_of_another_user_is_invalid(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    _, alice = await new_user(app, owner_engine)
    _, bob = await new_user(app, owner_engine)
    for _ in range(2):
        house = await published_house(callers, owner_engine)
        await callers.stub.AddFavoriteHouse(
            pb.AddFavoriteHouseRequest(parent="users/me", house=house.name), metadata=alice
        )
    first = await callers.stub.ListFavoriteHouses(
        pb.ListFavoriteHousesRequest(parent="users/me", page_size=1), metadata=alice
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.ListFavoriteHouses(
            pb.ListFavoriteHousesRequest(
                parent="users/me", page_size=1, page_token=first.next_page_token
            ),
            metadata=bob,
        )
    assert failure(raised.value).reason == "PAGE_TOKEN_INVALID"


async def test_another_users_favorites_are_not_owner(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    alice_id, alice = await new_user(app, owner_engine)
    _, bob = await new_user(app, owner_engine)
    house = await published_house(callers, owner_engine)
    await callers.stub.AddFavoriteHouse(
        pb.AddFavoriteHouseRequest(parent="users/me", house=house.name), metadata=alice
    )
    house_id = house.name.split("/")[1]

    calls: list[Awaitable[object]] = [
        callers.stub.AddFavoriteHouse(
            pb.AddFavoriteHouseRequest(parent=f"users/{alice_id}", house=house.name),
            metadata=bob,
        ),
        callers.stub.RemoveFavoriteHouse(
            pb.RemoveFavoriteHouseRequest(name=f"users/{alice_id}/favoriteHouses/{house_id}"),
            metadata=bob,
        ),
        callers.stub.ListFavoriteHouses(
            pb.ListFavoriteHousesRequest(parent=f"users/{alice_id}"), metadata=bob
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert failure(raised.value).code == grpc.StatusCode.PERMISSION_DENIED
        assert failure(raised.value).reason == "NOT_OWNER"
    # Bob's own list does not show Alice's favorite.
    bobs = await callers.stub.ListFavoriteHouses(
        pb.ListFavoriteHousesRequest(parent="users/me"), metadata=bob
    )
    assert list(bobs.favorite_houses) == []


async def test_removing_twice_is_favorite_not_found(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    _, metadata = await new_user(app, owner_engine)
    house = await published_house(callers, owner_engine)
    await callers.stub.AddFavoriteHouse(
        pb.AddFavoriteHouseRequest(parent="users/me", house=house.name), metadata=metadata
    )
    name = f"users/me/favoriteHouses/{house.name.split('/')[1]}"
    await callers.stub.RemoveFavoriteHouse(
        pb.RemoveFavoriteHouseRequest(name=name), metadata=metadata
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.RemoveFavoriteHouse(
            pb.RemoveFavoriteHouseRequest(name=name), metadata=metadata
        )
    assert failure(raised.value).code == grpc.StatusCode.NOT_FOUND
    assert failure(raised.value).reason == "FAVORITE_NOT_FOUND"


async def test_a_draft_cannot_be_a_favorite(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    _, metadata = await new_user(app, owner_engine)
    draft = await create_house(callers)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.AddFavoriteHouse(
            pb.AddFavoriteHouseRequest(parent="users/me", house=draft.name), metadata=metadata
        )
    assert failure(raised.value).reason == "HOUSE_NOT_FOUND"


async def test_a_deleted_house_leaves_the_list(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    _, metadata = await new_user(app, owner_engine)
    house = await published_house(callers, owner_engine)
    await callers.stub.AddFavoriteHouse(
        pb.AddFavoriteHouseRequest(parent="users/me", house=house.name), metadata=metadata
    )
    await force_state(app, owner_engine, house.name, HouseState.CANCELLED)
    await callers.stub.DeleteHouse(pb.DeleteHouseRequest(name=house.name), metadata=callers.admin)

    listed = await callers.stub.ListFavoriteHouses(
        pb.ListFavoriteHousesRequest(parent="users/me"), metadata=metadata
    )
    assert list(listed.favorite_houses) == []
    assert listed.total_size == 0


async def test_concurrent_adds_of_one_house_make_one_favorite(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    _, metadata = await new_user(app, owner_engine)
    house = await published_house(callers, owner_engine)
    request = pb.AddFavoriteHouseRequest(parent="users/me", house=house.name)
    added = await asyncio.gather(
        *(callers.stub.AddFavoriteHouse(request, metadata=metadata) for _ in range(4))
    )
    assert len({f.create_time.ToNanoseconds() for f in added}) == 1
    listed = await callers.stub.ListFavoriteHouses(
        pb.ListFavoriteHousesRequest(parent="users/me"), metadata=metadata
    )
    assert listed.total_size == 1


async def test_the_five_hundred_and_first_favorite_is_refused(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    user_id, metadata = await new_user(app, owner_engine)
    house = await published_house(callers, owner_engine)
    async with owner_engine.begin() as connection:
        ids = list(
            await connection.scalars(
                insert(House)
                .values([{"title": f"bulk {i}", "state": HouseState.DRAFT} for i in range(500)])
                .returning(House.id)
            )
        )
        await connection.execute(
            insert(Favorite).values([{"user_id": user_id, "house_id": i} for i in ids])
        )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.AddFavoriteHouse(
            pb.AddFavoriteHouseRequest(parent="users/me", house=house.name), metadata=metadata
        )
    assert failure(raised.value).code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure(raised.value).reason == "FAVORITE_LIMIT_REACHED"
