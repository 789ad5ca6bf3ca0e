"""LotteryService.PublishHouse: completeness, the sales window, DRAFT → UPCOMING or ACTIVE, the
audit row, and exactly one winner when two admins publish at once."""

from __future__ import annotations

import asyncio
import datetime
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from server.core.models import AuditLog
from tests.lottery.conftest import Callers, add_image, complete_house, create_house, terms
from tests.support import failure


async def audit_actions(owner_engine: AsyncEngine, house_name: str) -> list[str]:
    async with owner_engine.connect() as connection:
        rows = await connection.scalars(
            select(AuditLog.action)
            .where(AuditLog.resource_name == house_name)
            .order_by(AuditLog.create_time)
        )
        return list(rows)


async def test_publishing_a_complete_draft_makes_it_upcoming_and_audits_it(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    draft = await create_house(callers)
    await add_image(owner_engine, draft.name)

    published = await callers.stub.PublishHouse(
        pb.PublishHouseRequest(name=draft.name), metadata=callers.admin
    )

    assert published.state == pb.HOUSE_STATE_UPCOMING
    assert published.HasField("publish_time")
    assert await audit_actions(owner_engine, draft.name) == [
        "lottery.house.create",
        "lottery.house.publish",
    ]


async def test_publishing_after_sales_opened_makes_it_active(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = complete_house(lottery_terms=terms(opens_in=-datetime.timedelta(hours=1)))
    draft = await create_house(callers, house)
    await add_image(owner_engine, draft.name)

    published = await callers.stub.PublishHouse(
        pb.PublishHouseRequest(name=draft.name), metadata=callers.admin
    )

    assert published.state == pb.HOUSE_STATE_ACTIVE


async def test_an_incomplete_house_is_refused_listing_every_missing_field(
    callers: Callers,
) -> None:
    draft = await create_house(callers, pb.House(title="Only a title " + uuid.uuid4().hex))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.PublishHouse(
            pb.PublishHouseRequest(name=draft.name), metadata=callers.admin
        )

    error = failure(raised.value)
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "HOUSE_INCOMPLETE"
    assert error.error_info.metadata["missing"].split(",") == [
        "description",
        "country_code",
        "city",
        "location",
        "property_type",
        "images",
        "lottery_terms.ticket_price",
        "lottery_terms.total_tickets",
        "lottery_terms.sales_open_time",
        "lottery_terms.sales_close_time",
        "lottery_terms.draw_time",
    ]
    details = [
        d for d in error.status.details if d.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR)
    ]
    assert details


async def test_a_house_without_images_is_incomplete(callers: Callers) -> None:
    draft = await create_house(callers)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.PublishHouse(
            pb.PublishHouseRequest(name=draft.name), metadata=callers.admin
        )
    assert failure(raised.value).reason == "HOUSE_INCOMPLETE"
    assert failure(raised.value).error_info.metadata["missing"] == "images"


async def test_a_sales_window_in_the_past_is_refused(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = complete_house(lottery_terms=terms(opens_in=-datetime.timedelta(days=20)))
    draft = await create_house(callers, house)
    await add_image(owner_engine, draft.name)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.PublishHouse(
            pb.PublishHouseRequest(name=draft.name), metadata=callers.admin
        )

    assert failure(raised.value).code == grpc.StatusCode.FAILED_PRECONDITION
    assert failure(raised.value).reason == "SALES_WINDOW_IN_PAST"


async def test_publishing_twice_is_house_not_draft(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    draft = await create_house(callers)
    await add_image(owner_engine, draft.name)
    await callers.stub.PublishHouse(pb.PublishHouseRequest(name=draft.name), metadata=callers.admin)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.PublishHouse(
            pb.PublishHouseRequest(name=draft.name), metadata=callers.admin
        )

    error = failure(raised.value)
    assert error.reason == "HOUSE_NOT_DRAFT"
    assert error.error_info.metadata["state"] == "UPCOMING"


async def test_two_admins_publishing_at_once_exactly_one_wins(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    draft = await create_house(callers)
    await add_image(owner_engine, draft.name)
    request = pb.PublishHouseRequest(name=draft.name)

    results = await asyncio.gather(
        *(callers.stub.PublishHouse(request, metadata=callers.admin) for _ in range(2)),
        return_exceptions=True,
    )

    winners = [r for r in results if isinstance(r, pb.House)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1
    assert len(losers) == 1
    assert failure(losers[0]).reason == "HOUSE_NOT_DRAFT"
    assert (await audit_actions(owner_engine, draft.name)).count("lottery.house.publish") == 1


async def test_users_cannot_publish(callers: Callers) -> None:
    draft = await create_house(callers)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.PublishHouse(
            pb.PublishHouseRequest(name=draft.name), metadata=callers.user
        )
    assert failure(raised.value).code == grpc.StatusCode.PERMISSION_DENIED


async def test_unknown_house_is_not_found(callers: Callers) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.PublishHouse(
            pb.PublishHouseRequest(name=f"houses/{uuid.uuid4()}"), metadata=callers.admin
        )
    assert failure(raised.value).reason == "HOUSE_NOT_FOUND"
