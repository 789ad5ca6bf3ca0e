"""LotteryService.CreateHouse: a DRAFT from the given fields, coherent terms, idempotent retries."""

from __future__ import annotations

import asyncio
import datetime
import uuid

import grpc
import pytest

from amesa.lottery.v1 import lottery_service_pb2 as pb
from tests.lottery.conftest import Callers, complete_house, eur, now, terms, ts
from tests.support import failure


async def test_creates_a_draft_with_every_field(callers: Callers) -> None:
    house = complete_house()
    house.metadata.update({"energy_rating": "A", "floors": 2})

    created = await callers.stub.CreateHouse(
        pb.CreateHouseRequest(house=house), metadata=callers.admin
    )

    assert created.name.startswith("houses/")
    assert created.state == pb.HOUSE_STATE_DRAFT
    expected = pb.House()
    expected.CopyFrom(house)
    actual = pb.House()
    actual.CopyFrom(created)
    for message in (expected, actual):
        for field in ("name", "state", "tickets_remaining", "create_time", "update_time"):
            message.ClearField(field)
    assert actual == expected
    assert created.tickets_remaining == 100


async def test_a_title_alone_is_enough_for_a_draft(callers: Callers) -> None:
    created = await callers.stub.CreateHouse(
        pb.CreateHouseRequest(house=pb.House(title="Just a title")), metadata=callers.admin
    )
    assert created.state == pb.HOUSE_STATE_DRAFT
    assert not created.lottery_terms.HasField("ticket_price")
    assert not created.HasField("location")


async def test_a_retry_with_the_same_request_id_returns_the_first_house(callers: Callers) -> None:
    request = pb.CreateHouseRequest(house=complete_house(), request_id=str(uuid.uuid4()))

    first, second = await asyncio.gather(
        callers.stub.CreateHouse(request, metadata=callers.admin),
        callers.stub.CreateHouse(request, metadata=callers.admin),
    )
    third = await callers.stub.CreateHouse(request, metadata=callers.admin)

    assert first.name == second.name == third.name


async def test_a_request_id_reused_with_other_parameters_is_invalid_argument(
    callers: Callers,
) -> None:
    request_id = str(uuid.uuid4())
    await callers.stub.CreateHouse(
        pb.CreateHouseRequest(house=complete_house(), request_id=request_id),
        metadata=callers.admin,
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.CreateHouse(
            pb.CreateHouseRequest(house=complete_house(), request_id=request_id),
            metadata=callers.admin,
        )
    assert failure(raised.value).code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure(raised.value).reason == "REQUEST_ID_REUSED"


async def test_metadata_above_16_kib_is_refused(callers: Callers) -> None:
    house = complete_house()
    house.metadata.update({"notes": "x" * 17000})
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.CreateHouse(pb.CreateHouseRequest(house=house), metadata=callers.admin)
    assert failure(raised.value).reason == "HOUSE_METADATA_TOO_LARGE"
    assert [v.field for v in failure(raised.value).field_violations] == ["house.metadata"]


@pytest.mark.parametrize(
    ("lottery_terms", "field"),
    [
        # Rules the field validation cannot see because one side is unset there.
        (pb.LotteryTerms(min_participation=5), "house.lottery_terms.min_participation"),
        (
            pb.LotteryTerms(
                sales_open_time=ts(now() + datetime.timedelta(days=3)),
                draw_time=ts(now() + datetime.timedelta(days=2)),
            ),
            "house.lottery_terms.draw_time",
        ),
    ],
)
async def test_incoherent_terms_are_lottery_terms_invalid(
    callers: Callers, lottery_terms: pb.LotteryTerms, field: str
) -> None:
    house = pb.House(title="Incoherent", lottery_terms=lottery_terms)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.CreateHouse(pb.CreateHouseRequest(house=house), metadata=callers.admin)
    error = failure(raised.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "LOTTERY_TERMS_INVALID"
    assert [v.field for v in error.field_violations] == [field]


async def test_terms_the_field_rules_catch_are_invalid_request(callers: Callers) -> None:
    lottery_terms = terms()
    lottery_terms.sales_close_time.CopyFrom(lottery_terms.draw_time)
    house = complete_house(lottery_terms=lottery_terms)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.CreateHouse(pb.CreateHouseRequest(house=house), metadata=callers.admin)
    assert failure(raised.value).reason == "INVALID_REQUEST"
    zero_price = complete_house(lottery_terms=pb.LotteryTerms(ticket_price=eur(0)))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.CreateHouse(
            pb.CreateHouseRequest(house=zero_price), metadata=callers.admin
        )
    assert failure(raised.value).reason == "INVALID_REQUEST"


async def test_users_and_anonymous_callers_cannot_create(callers: Callers) -> None:
    request = pb.CreateHouseRequest(house=pb.House(title="Nope"))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.CreateHouse(request, metadata=callers.user)
    assert failure(raised.value).code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.CreateHouse(request)
    assert failure(raised.value).code == grpc.StatusCode.UNAUTHENTICATED
