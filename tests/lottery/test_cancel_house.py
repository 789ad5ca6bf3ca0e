"""LotteryService.CancelHouse: published lotteries only, idempotent, audited, one winner."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from server.app import App
from server.core.models import AuditLog
from server.lottery.models import HouseState
from tests.lottery.conftest import (
    Callers,
    add_image,
    create_house,
    force_state,
    published_house,
)
from tests.support import failure


async def cancel_audits(owner_engine: AsyncEngine, house_name: str) -> list[AuditLog]:
    async with owner_engine.connect() as connection:
        rows = await connection.execute(
            select(AuditLog.before, AuditLog.after).where(
                AuditLog.resource_name == house_name, AuditLog.action == "lottery.house.cancel"
            )
        )
        return list(rows)  # type: ignore[arg-type]


async def test_cancelling_a_published_house_records_reason_time_and_audit(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await published_house(callers, owner_engine)

    cancelled = await callers.stub.CancelHouse(
        pb.CancelHouseRequest(name=house.name, reason="Owner withdrew"), metadata=callers.admin
    )

    assert cancelled.state == pb.HOUSE_STATE_CANCELLED
    assert cancelled.cancel_reason == "Owner withdrew"
    assert cancelled.HasField("cancel_time")
    audits = await cancel_audits(owner_engine, house.name)
    assert [(a.before, a.after) for a in audits] == [
        ({"state": "UPCOMING"}, {"state": "CANCELLED", "cancel_reason": "Owner withdrew"})
    ]


@pytest.mark.parametrize("state", [HouseState.ACTIVE, HouseState.SOLD_OUT, HouseState.CLOSED])
async def test_every_published_state_before_the_draw_can_be_cancelled(
    app: App, callers: Callers, owner_engine: AsyncEngine, state: HouseState
) -> None:
    house = await published_house(callers, owner_engine)
    await force_state(app, owner_engine, house.name, state)

    cancelled = await callers.stub.CancelHouse(
        pb.CancelHouseRequest(name=house.name, reason="r"), metadata=callers.admin
    )

    assert cancelled.state == pb.HOUSE_STATE_CANCELLED


async def test_cancelling_a_cancelled_house_returns_it_unchanged(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await published_house(callers, owner_engine)
    first = await callers.stub.CancelHouse(
        pb.CancelHouseRequest(name=house.name, reason="first"), metadata=callers.admin
    )
    again = await callers.stub.CancelHouse(
        pb.CancelHouseRequest(name=house.name, reason="second"), metadata=callers.admin
    )
    assert again == first
    assert len(await cancel_audits(owner_engine, house.name)) == 1


async def test_a_draft_is_not_cancellable(callers: Callers) -> None:
    draft = await create_house(callers)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.CancelHouse(
            pb.CancelHouseRequest(name=draft.name, reason="r"), metadata=callers.admin
        )
    error = failure(raised.value)
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "HOUSE_NOT_CANCELLABLE"
    assert error.error_info.metadata["state"] == "DRAFT"


async def test_a_drawn_house_is_not_cancellable(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await published_house(callers, owner_engine)
    await force_state(app, owner_engine, house.name, HouseState.DRAWN)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.CancelHouse(
            pb.CancelHouseRequest(name=house.name, reason="r"), metadata=callers.admin
        )
    assert failure(raised.value).reason == "HOUSE_NOT_CANCELLABLE"
    assert failure(raised.value).error_info.metadata["state"] == "DRAWN"


async def test_two_admins_cancelling_at_once_cancel_once(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await published_house(callers, owner_engine)

    results = await asyncio.gather(
        *(
            callers.stub.CancelHouse(
                pb.CancelHouseRequest(name=house.name, reason=f"reason {i}"),
                metadata=callers.admin,
            )
            for i in range(2)
        )
    )

    # Both see the cancelled house, with the winner's reason; one transition is recorded.
    assert results[0] == results[1]
    audits = await cancel_audits(owner_engine, house.name)
    assert len(audits) == 1
    assert audits[0].after == {"state": "CANCELLED", "cancel_reason": results[0].cancel_reason}


async def test_publish_racing_cancel_on_a_draft_publish_wins_and_cancel_is_refused(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    draft = await create_house(callers)
    await add_image(owner_engine, draft.name)
    publish, cancel = await asyncio.gather(
        callers.stub.PublishHouse(pb.PublishHouseRequest(name=draft.name), metadata=callers.admin),
        callers.stub.CancelHouse(
            pb.CancelHouseRequest(name=draft.name, reason="r"), metadata=callers.admin
        ),
        return_exceptions=True,
    )
    assert isinstance(publish, pb.House)
    if isinstance(cancel, pb.House):  # cancel ran after the publish committed
        assert cancel.state == pb.HOUSE_STATE_CANCELLED
    else:
        assert isinstance(cancel, grpc.aio.AioRpcError)
        assert failure(cancel).reason == "HOUSE_NOT_CANCELLABLE"


async def test_unknown_house_is_not_found(callers: Callers) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.CancelHouse(
            pb.CancelHouseRequest(name=f"houses/{uuid.uuid4()}", reason="r"),
            metadata=callers.admin,
        )
    assert failure(raised.value).reason == "HOUSE_NOT_FOUND"
