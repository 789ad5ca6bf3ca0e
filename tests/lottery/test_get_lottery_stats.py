"""LotteryService.GetLotteryStats: totals, UTC buckets with zeros, participation per house."""

from __future__ import annotations

import datetime
import uuid

import grpc
import pytest
from google.protobuf import timestamp_pb2
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from server.lottery.models import House, Ticket
from server.payment.models import Order, OrderState, PaymentProvider
from server.user.models import User
from tests.lottery.conftest import Callers, complete_house, eur, published_house, terms
from tests.support import failure

DAY = datetime.datetime(2026, 3, 2, tzinfo=datetime.UTC)  # a Monday


def at(hours: float) -> datetime.datetime:
    return DAY + datetime.timedelta(hours=hours)


def ts(value: datetime.datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value)
    return message


async def new_user(owner_engine: AsyncEngine) -> uuid.UUID:
    async with owner_engine.begin() as connection:
        user_id = await connection.scalar(
            insert(User)
            .values(
                email=f"stats-{uuid.uuid4().hex[:12]}@example.com", given_name="S", family_name="T"
            )
            .returning(User.id)
        )
    assert isinstance(user_id, uuid.UUID)
    return user_id


async def paid_order(
    owner_engine: AsyncEngine,
    *,
    house: str,
    user_id: uuid.UUID,
    quantity: int,
    paid_time: datetime.datetime,
    first_number: int,
    state: OrderState = OrderState.PAID,
) -> None:
    """A paid order with its tickets (what fulfilment will write), and the house's counter."""
    house_id = uuid.UUID(house.split("/")[1])
    async with owner_engine.begin() as connection:
        order_id = await connection.scalar(
            insert(Order)
            .values(
                user_id=user_id,
                house_id=house_id,
                request_id=uuid.uuid4(),
                quantity=quantity,
                unit_price_minor=1000,
                subtotal_minor=1000 * quantity,
                total_minor=1000 * quantity,
                currency="EUR",
                state=state,
                provider=PaymentProvider.STRIPE,
                expire_time=paid_time,
                paid_time=paid_time,
            )
            .returning(Order.id)
        )
        await connection.execute(
            insert(Ticket).values(
                [
                    {
                        "house_id": house_id,
                        "order_id": order_id,
                        "user_id": user_id,
                        "number": first_number + i,
                        "secret_id": uuid.uuid4().bytes,
                        "purchase_time": paid_time,
                    }
                    for i in range(quantity)
                ]
            )
        )
        await connection.execute(
            update(House)
            .where(House.id == house_id)
            .values(tickets_sold=House.tickets_sold + quantity)
        )


async def test_totals_buckets_and_participation_over_the_houses_asked_for(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    big = await published_house(
        callers, owner_engine, complete_house(title="big", lottery_terms=terms(total=100))
    )
    small = await published_house(
        callers, owner_engine, complete_house(title="small", lottery_terms=terms(total=10))
    )
    alice, bob = await new_user(owner_engine), await new_user(owner_engine)
    await paid_order(
        owner_engine, house=big.name, user_id=alice, quantity=3, paid_time=at(1), first_number=1
    )
    await paid_order(
        owner_engine, house=big.name, user_id=bob, quantity=2, paid_time=at(1.5), first_number=4
    )
    await paid_order(
        owner_engine, house=small.name, user_id=alice, quantity=1, paid_time=at(26), first_number=1
    )
    # Before the interval: counts for the house's all-time figures only.
    await paid_order(
        owner_engine, house=small.name, user_id=bob, quantity=4, paid_time=at(-30), first_number=2
    )

    stats = await callers.stub.GetLotteryStats(
        pb.GetLotteryStatsRequest(
            start_time=ts(DAY),
            end_time=ts(at(72)),
            houses=[small.name, big.name],
        ),
        metadata=callers.admin,
    )

    assert (stats.tickets_sold, stats.paid_orders, stats.unique_buyers) == (6, 3, 2)
    assert list(stats.gross_sales) == [eur(6000)]
    assert stats.bucket_size == pb.STATS_BUCKET_SIZE_DAY
    assert [
        (b.start_time.ToDatetime(datetime.UTC), b.tickets_sold, b.paid_orders, b.unique_buyers)
        for b in stats.sales
    ] == [
        (DAY, 5, 2, 2),
        (at(24), 1, 1, 1),
        (at(48), 0, 0, 0),
    ]
    assert [list(b.gross_sales) for b in stats.sales] == [[eur(5000)], [eur(1000)], []]
    assert [h.house for h in stats.houses] == [big.name, small.name]
    big_row, small_row = stats.houses
    assert (big_row.tickets_sold, big_row.tickets_sold_in_interval, big_row.unique_buyers) == (
        5,
        5,
        2,
    )
    assert big_row.sold_ratio == pytest.approx(0.05)
    assert (
        small_row.tickets_sold,
        small_row.tickets_sold_in_interval,
        small_row.unique_buyers,
    ) == (5, 1, 2)
    assert small_row.gross_sales == eur(5000)
    assert small_row.min_participation_reached
    assert {c.state for c in stats.houses_by_state} >= {pb.HOUSE_STATE_UPCOMING}


async def test_hour_buckets_start_at_utc_boundaries(callers: Callers) -> None:
    stats = await callers.stub.GetLotteryStats(
        pb.GetLotteryStatsRequest(
            start_time=ts(at(0.5)),
            end_time=ts(at(3)),
            bucket_size=pb.STATS_BUCKET_SIZE_HOUR,
            houses=[(await draft_house_name(callers))],
        ),
        metadata=callers.admin,
    )
    assert [b.start_time.ToDatetime(datetime.UTC) for b in stats.sales] == [at(0), at(1), at(2)]


async def draft_house_name(callers: Callers) -> str:
    created = await callers.stub.CreateHouse(
        pb.CreateHouseRequest(house=pb.House(title="stats scope")), metadata=callers.admin
    )
    return created.name


async def test_week_and_month_buckets(callers: Callers) -> None:
    scope = [await draft_house_name(callers)]
    weeks = await callers.stub.GetLotteryStats(
        pb.GetLotteryStatsRequest(
            start_time=ts(at(24 * 3)),  # Thursday
            end_time=ts(at(24 * 10)),
            bucket_size=pb.STATS_BUCKET_SIZE_WEEK,
            houses=scope,
        ),
        metadata=callers.admin,
    )
    assert [b.start_time.ToDatetime(datetime.UTC) for b in weeks.sales] == [DAY, at(24 * 7)]
    months = await callers.stub.GetLotteryStats(
        pb.GetLotteryStatsRequest(
            start_time=ts(datetime.datetime(2025, 12, 15, tzinfo=datetime.UTC)),
            end_time=ts(datetime.datetime(2026, 2, 2, tzinfo=datetime.UTC)),
            bucket_size=pb.STATS_BUCKET_SIZE_MONTH,
            houses=scope,
        ),
        metadata=callers.admin,
    )
    assert [b.start_time.ToDatetime(datetime.UTC).date() for b in months.sales] == [
        datetime.date(2025, 12, 1),
        datetime.date(2026, 1, 1),
        datetime.date(2026, 2, 1),
    ]


async def test_more_than_a_thousand_buckets_is_refused(callers: Callers) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.GetLotteryStats(
            pb.GetLotteryStatsRequest(
                start_time=ts(DAY),
                end_time=ts(DAY + datetime.timedelta(days=60)),
                bucket_size=pb.STATS_BUCKET_SIZE_HOUR,
            ),
            metadata=callers.admin,
        )
    assert failure(raised.value).code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure(raised.value).reason == "STATS_TOO_MANY_BUCKETS"


async def test_an_unknown_house_is_not_found(callers: Callers) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.GetLotteryStats(
            pb.GetLotteryStatsRequest(houses=[f"houses/{uuid.uuid4()}"]), metadata=callers.admin
        )
    assert failure(raised.value).reason == "HOUSE_NOT_FOUND"


async def test_users_cannot_read_stats(callers: Callers) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.GetLotteryStats(pb.GetLotteryStatsRequest(), metadata=callers.user)
    assert failure(raised.value).code == grpc.StatusCode.PERMISSION_DENIED
