"""LotteryService.UpdateHouse: the field mask, terms frozen once sales open, coherent terms."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from server.app import App
from server.core.models import AuditLog
from server.lottery.models import HouseState
from tests.lottery.conftest import (
    Callers,
    complete_house,
    create_house,
    eur,
    force_state,
    published_house,
)
from tests.support import failure


def update(house: pb.House, *paths: str) -> pb.UpdateHouseRequest:
    return pb.UpdateHouseRequest(house=house, update_mask=field_mask_pb2.FieldMask(paths=paths))


async def test_only_the_masked_fields_change_and_the_change_is_audited(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await create_house(callers)
    change = pb.House(
        name=house.name,
        title="New title",
        description="ignored: not in the mask",
        bedrooms=7,
        lottery_terms=pb.LotteryTerms(ticket_price=eur(2500), total_tickets=1),
    )
    change.location.latitude = 40.0
    change.location.longitude = -3.0

    updated = await callers.stub.UpdateHouse(
        update(change, "title", "bedrooms", "location", "lottery_terms.ticket_price", "state"),
        metadata=callers.admin,
    )

    assert updated.title == "New title"
    assert updated.description == house.description
    assert updated.bedrooms == 7
    assert (updated.location.latitude, updated.location.longitude) == (40.0, -3.0)
    assert updated.lottery_terms.ticket_price == eur(2500)
    assert updated.lottery_terms.total_tickets == house.lottery_terms.total_tickets
    async with owner_engine.connect() as connection:
        audit = (
            await connection.execute(
                select(AuditLog.before, AuditLog.after).where(
                    AuditLog.resource_name == house.name,
                    AuditLog.action == "lottery.house.update",
                )
            )
        ).one()
    assert audit.before["title"] == house.title
    assert audit.after["title"] == "New title"


async def test_an_unset_masked_field_is_cleared(callers: Callers) -> None:
    house = await create_house(callers)
    updated = await callers.stub.UpdateHouse(
        update(pb.House(name=house.name), "street", "features", "property_value"),
        metadata=callers.admin,
    )
    assert updated.street == ""
    assert list(updated.features) == []
    assert not updated.HasField("property_value")


async def test_an_unknown_mask_path_is_update_mask_invalid(callers: Callers) -> None:
    house = await create_house(callers)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.UpdateHouse(
            update(pb.House(name=house.name), "title", "owner"), metadata=callers.admin
        )
    assert failure(raised.value).code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure(raised.value).reason == "UPDATE_MASK_INVALID"


async def test_terms_stay_editable_while_upcoming(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await published_house(callers, owner_engine)
    updated = await callers.stub.UpdateHouse(
        update(
            pb.House(name=house.name, lottery_terms=pb.LotteryTerms(total_tickets=50)),
            "lottery_terms.total_tickets",
        ),
        metadata=callers.admin,
    )
    assert updated.lottery_terms.total_tickets == 50


@pytest.mark.parametrize(
    "state", [HouseState.ACTIVE, HouseState.SOLD_OUT, HouseState.CLOSED, HouseState.DRAWN]
)
async def test_terms_are_frozen_once_sales_opened_but_listing_fields_stay_editable(
    app: App, callers: Callers, owner_engine: AsyncEngine, state: HouseState
) -> None:
    house = await published_house(callers, owner_engine)
    await force_state(app, owner_engine, house.name, state)

    for paths in (("lottery_terms.ticket_price",), ("lottery_terms",), ("*",)):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await callers.stub.UpdateHouse(update(house, *paths), metadata=callers.admin)
        error = failure(raised.value)
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION
        assert error.reason == "LOTTERY_TERMS_FROZEN"
    updated = await callers.stub.UpdateHouse(
        update(pb.House(name=house.name, title="Still editable"), "title"), metadata=callers.admin
    )
    assert updated.title == "Still editable"


async def test_merged_terms_must_stay_coherent(callers: Callers) -> None:
    house = await create_house(callers)  # 100 tickets, caps 10 per order and 20 per user
    for terms, path in (
        (pb.LotteryTerms(total_tickets=5), "lottery_terms.total_tickets"),
        (pb.LotteryTerms(max_tickets_per_order=30), "lottery_terms.max_tickets_per_order"),
        (pb.LotteryTerms(min_participation=101), "lottery_terms.min_participation"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await callers.stub.UpdateHouse(
                update(pb.House(name=house.name, lottery_terms=terms), path),
                metadata=callers.admin,
            )
        assert failure(raised.value).reason == "LOTTERY_TERMS_INVALID", path


async def test_a_published_house_cannot_lose_a_term(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await published_house(callers, owner_engine)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.UpdateHouse(
            update(pb.House(name=house.name), "lottery_terms.draw_time"), metadata=callers.admin
        )
    assert failure(raised.value).reason == "LOTTERY_TERMS_INVALID"


async def test_a_deleted_house_is_not_found(callers: Callers) -> None:
    house = await create_house(callers, complete_house())
    await callers.stub.DeleteHouse(pb.DeleteHouseRequest(name=house.name), metadata=callers.admin)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.UpdateHouse(
            update(pb.House(name=house.name, title="x"), "title"), metadata=callers.admin
        )
    assert failure(raised.value).reason == "HOUSE_NOT_FOUND"
