"""GetRevenueReport: revenue from the ledger by day (in a time zone), house and provider.

Orders and their transactions are arranged as the table owner. Each test reports over a year of
its own in the past, so the orders other tests create (paid now) never enter its range.
"""

from __future__ import annotations

import datetime
import itertools
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.type import date_pb2  # type: ignore[import-untyped]
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from amesa.payment.v1 import payment_service_pb2 as pb
from amesa.payment.v1 import payment_service_pb2_grpc
from amesa.type.v1 import money_pb2
from server.app import App
from server.lottery.models import House, HouseState, Ticket, TicketState
from server.payment.models import (
    Order,
    OrderState,
    PaymentProvider,
    Transaction,
    TransactionKind,
    TransactionState,
)
from server.user.models import User
from tests.support import bearer, failure, token_for

Metadata = tuple[tuple[str, str], ...]
PRICE = 1000
_years = itertools.count(1990)

STRIPE, PAYPAL = PaymentProvider.STRIPE, PaymentProvider.PAYPAL
SUCCEEDED, PENDING, FAILED = (
    TransactionState.SUCCEEDED,
    TransactionState.PENDING,
    TransactionState.FAILED,
)


@dataclass(frozen=True)
class Callers:
    stub: payment_service_pb2_grpc.PaymentServiceAsyncStub
    admin: Metadata
    user: Metadata


@pytest.fixture
def callers(app: App, channel: grpc.aio.Channel) -> Callers:
    return Callers(
        stub=payment_service_pb2_grpc.PaymentServiceStub(channel),
        admin=tuple(bearer(token_for(app, roles=("user", "admin")))),
        user=tuple(bearer(token_for(app))),
    )


@pytest.fixture
def year() -> int:
    """A year no other test reports on."""
    return next(_years)


def at(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> datetime.datetime:
    return datetime.datetime(year, month, day, hour, minute, tzinfo=datetime.UTC)


def ts(moment: datetime.datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(moment)
    return message


def money(amount_minor: int, currency: str = "EUR") -> money_pb2.Money:
    return money_pb2.Money(currency_code=currency, amount_minor=amount_minor)


def row(
    *,
    gross: int,
    refunds: int = 0,
    orders: int,
    tickets: int,
    currency: str = "EUR",
    day: datetime.date | None = None,
    house: str = "",
    provider: pb.PaymentProvider.ValueType = pb.PAYMENT_PROVIDER_UNSPECIFIED,
) -> pb.RevenueReportRow:
    message = pb.RevenueReportRow(
        house=house,
        provider=provider,
        currency_code=currency,
        gross=money(gross, currency),
        refunds=money(refunds, currency),
        net=money(gross - refunds, currency),
        paid_orders=orders,
        tickets=tickets,
    )
    if day is not None:
        message.day.CopyFrom(date_pb2.Date(year=day.year, month=day.month, day=day.day))
    return message


# --- Arranging rows ----------------------------------------------------------------------------


async def add_user(connection: AsyncConnection) -> uuid.UUID:
    user_id = await connection.scalar(
        insert(User)
        .values(
            email=f"revenue-{uuid.uuid4().hex[:12]}@example.com",
            given_name="Rev",
            family_name="Enue",
        )
        .returning(User.id)
    )
    assert isinstance(user_id, uuid.UUID)
    return user_id


async def add_house(connection: AsyncConnection) -> uuid.UUID:
    opened = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    house_id = await connection.scalar(
        insert(House)
        .values(
            title=f"Revenue house {uuid.uuid4().hex[:8]}",
            ticket_price_minor=PRICE,
            currency="EUR",
            total_tickets=1000,
            sales_open_time=opened,
            sales_close_time=opened + datetime.timedelta(days=10),
            draw_time=opened + datetime.timedelta(days=11),
            state=HouseState.ACTIVE,
            publish_time=opened,
        )
        .returning(House.id)
    )
    assert isinstance(house_id, uuid.UUID)
    return house_id


@dataclass(frozen=True)
class Shop:
    house_id: uuid.UUID
    user_id: uuid.UUID

    @property
    def house(self) -> str:
        return f"houses/{self.house_id}"


async def shop(connection: AsyncConnection) -> Shop:
    return Shop(house_id=await add_house(connection), user_id=await add_user(connection))


async def add_order(
    connection: AsyncConnection,
    s: Shop,
    *,
    paid_time: datetime.datetime,
    quantity: int = 1,
    state: OrderState = OrderState.PAID,
    provider: PaymentProvider = STRIPE,
    currency: str = "EUR",
    charges: Sequence[tuple[int, TransactionState]] | None = None,
    refunds: Sequence[tuple[int, TransactionState]] = (),
    voided: int = 0,
) -> uuid.UUID:
    """An order of the shop's user for its house, paid at `paid_time` with `quantity` tickets
    (`voided` of them VOIDED), its CHARGE transactions (default: one SUCCEEDED of the total) and
    REFUND transactions."""
    total = PRICE * quantity
    refunded = sum(amount for amount, state in refunds if state is SUCCEEDED)
    order_id = await connection.scalar(
        insert(Order)
        .values(
            user_id=s.user_id,
            house_id=s.house_id,
            request_id=uuid.uuid4(),
            quantity=quantity,
            unit_price_minor=PRICE,
            subtotal_minor=total,
            total_minor=total,
            currency=currency,
            state=state,
            provider=provider,
            refunded_minor=min(refunded, total),
            expire_time=paid_time + datetime.timedelta(minutes=15),
            paid_time=paid_time if state is not OrderState.EXPIRED else None,
            reservation_release_time=paid_time,
        )
        .returning(Order.id)
    )
    assert isinstance(order_id, uuid.UUID)
    if state is not OrderState.EXPIRED:
        sold = await connection.scalar(
            update(House)
            .where(House.id == s.house_id)
            .values(tickets_sold=House.tickets_sold + quantity)
            .returning(House.tickets_sold)
        )
        assert isinstance(sold, int)
        for index, number in enumerate(range(sold - quantity + 1, sold + 1)):
            void = index < voided
            await connection.execute(
                insert(Ticket).values(
                    house_id=s.house_id,
                    order_id=order_id,
                    user_id=s.user_id,
                    number=number,
                    secret_id=secrets.token_bytes(16),
                    purchase_time=paid_time,
                    state=TicketState.VOIDED if void else TicketState.ACTIVE,
                    void_time=paid_time if void else None,
                )
            )
    movements = [
        (TransactionKind.CHARGE, amount, s) for amount, s in charges or [(total, SUCCEEDED)]
    ]
    movements += [(TransactionKind.REFUND, amount, s) for amount, s in refunds]
    for kind, amount, transaction_state in movements:
        await connection.execute(
            insert(Transaction).values(
                user_id=s.user_id,
                order_id=order_id,
                kind=kind,
                state=transaction_state,
                amount_minor=amount,
                currency=currency,
                provider=provider,
                idempotency_key=f"test-{uuid.uuid4()}",
            )
        )
    return order_id


async def report(
    callers: Callers,
    *,
    start: datetime.datetime,
    end: datetime.datetime,
    group_by: pb.RevenueGroupBy.ValueType,
    house: str = "",
    time_zone: str = "",
    metadata: Metadata | None = None,
) -> pb.RevenueReport:
    result: pb.RevenueReport = await callers.stub.GetRevenueReport(
        pb.GetRevenueReportRequest(
            start_time=ts(start),
            end_time=ts(end),
            group_by=group_by,
            house=house,
            time_zone=time_zone,
        ),
        metadata=callers.admin if metadata is None else metadata,
    )
    return result


# --- Sums --------------------------------------------------------------------------------------


async def test_revenue_by_day_is_charges_minus_refunds_of_orders_paid_in_range(
    callers: Callers, owner_engine: AsyncEngine, year: int
) -> None:
    async with owner_engine.begin() as connection:
        s = await shop(connection)
        # Day one: a plain order of two tickets, and one refunded in part (a pending refund
        # counts, a failed one does not) that also has a failed charge attempt.
        await add_order(connection, s, paid_time=at(year, 3, 1, 0, 0), quantity=2)
        await add_order(
            connection,
            s,
            paid_time=at(year, 3, 1, 18),
            quantity=3,
            state=OrderState.PARTIALLY_REFUNDED,
            charges=[(3000, FAILED), (3000, SUCCEEDED)],
            refunds=[(400, SUCCEEDED), (100, PENDING), (700, FAILED)],
            voided=1,
        )
        # Day two: an order refunded in full, its ticket voided.
        await add_order(
            connection,
            s,
            paid_time=at(year, 3, 2),
            state=OrderState.REFUNDED,
            refunds=[(1000, SUCCEEDED)],
            voided=1,
        )
        # Not counted: paid at the exclusive end, paid before the start, never paid (its charge
        # captured nonetheless), and a charge still pending.
        await add_order(connection, s, paid_time=at(year, 3, 4, 0, 0))
        await add_order(connection, s, paid_time=at(year, 2, 28, 23, 59))
        await add_order(connection, s, paid_time=at(year, 3, 2), state=OrderState.EXPIRED)
        await add_order(connection, s, paid_time=at(year, 3, 3), charges=[(1000, PENDING)])

    result = await report(
        callers,
        start=at(year, 3, 1, 0, 0),
        end=at(year, 3, 4, 0, 0),
        group_by=pb.REVENUE_GROUP_BY_DAY,
    )

    assert result == pb.RevenueReport(
        rows=[
            row(day=datetime.date(year, 3, 1), gross=5000, refunds=500, orders=2, tickets=4),
            row(day=datetime.date(year, 3, 2), gross=1000, refunds=1000, orders=1, tickets=0),
            row(day=datetime.date(year, 3, 3), gross=0, orders=1, tickets=1),
        ],
        totals=[row(gross=6000, refunds=1500, orders=4, tickets=5)],
    )


async def test_day_is_the_calendar_day_in_the_requested_time_zone(
    callers: Callers, owner_engine: AsyncEngine, year: int
) -> None:
    async with owner_engine.begin() as connection:
        s = await shop(connection)
        # 23:30 UTC is 01:30 or 02:30 the next day in Jerusalem.
        await add_order(connection, s, paid_time=at(year, 6, 10, 23, 30))
    start, end = at(year, 6, 1), at(year, 7, 1)

    utc = await report(callers, start=start, end=end, group_by=pb.REVENUE_GROUP_BY_DAY)
    jerusalem = await report(
        callers, start=start, end=end, group_by=pb.REVENUE_GROUP_BY_DAY, time_zone="Asia/Jerusalem"
    )
    new_york = await report(
        callers,
        start=start,
        end=end,
        group_by=pb.REVENUE_GROUP_BY_DAY,
        time_zone="America/New_York",
    )

    assert [r.day for r in utc.rows] == [date_pb2.Date(year=year, month=6, day=10)]
    assert [r.day for r in jerusalem.rows] == [date_pb2.Date(year=year, month=6, day=11)]
    assert [r.day for r in new_york.rows] == [date_pb2.Date(year=year, month=6, day=10)]
    assert utc.totals == jerusalem.totals == [row(gross=1000, orders=1, tickets=1)]


async def test_revenue_by_house_has_a_row_per_house_and_currency_ordered_by_name(
    callers: Callers, owner_engine: AsyncEngine, year: int
) -> None:
    async with owner_engine.begin() as connection:
        first, second = await shop(connection), await shop(connection)
        for s in (first, second):
            await add_order(connection, s, paid_time=at(year, 5, 5))
        await add_order(
            connection,
            second,
            paid_time=at(year, 5, 6),
            quantity=2,
            currency="USD",
            refunds=[(500, SUCCEEDED)],
        )

    result = await report(
        callers, start=at(year, 1, 1), end=at(year, 12, 31), group_by=pb.REVENUE_GROUP_BY_HOUSE
    )

    houses = sorted([first.house, second.house])
    by_house = {first.house: [row(house=first.house, gross=1000, orders=1, tickets=1)]}
    by_house[second.house] = [
        row(house=second.house, gross=1000, orders=1, tickets=1),
        row(house=second.house, currency="USD", gross=2000, refunds=500, orders=1, tickets=2),
    ]
    assert result == pb.RevenueReport(
        rows=[*by_house[houses[0]], *by_house[houses[1]]],
        totals=[
            row(gross=2000, orders=2, tickets=2),
            row(currency="USD", gross=2000, refunds=500, orders=1, tickets=2),
        ],
    )


async def test_revenue_by_provider_and_for_one_house(
    callers: Callers, owner_engine: AsyncEngine, year: int
) -> None:
    async with owner_engine.begin() as connection:
        mine, other = await shop(connection), await shop(connection)
        for provider in (PAYPAL, STRIPE, STRIPE):
            await add_order(
                connection,
                mine,
                paid_time=at(year, 8, 8),
                provider=provider,
            )
        await add_order(
            connection,
            other,
            paid_time=at(year, 8, 8),
            provider=PAYPAL,
            quantity=4,
        )
    start, end = at(year, 8, 1), at(year, 9, 1)

    everything = await report(callers, start=start, end=end, group_by=pb.REVENUE_GROUP_BY_PROVIDER)
    one_house = await report(
        callers, start=start, end=end, group_by=pb.REVENUE_GROUP_BY_PROVIDER, house=mine.house
    )

    stripe_row = row(provider=pb.PAYMENT_PROVIDER_STRIPE, gross=2000, orders=2, tickets=2)
    assert everything == pb.RevenueReport(
        rows=[
            stripe_row,
            row(provider=pb.PAYMENT_PROVIDER_PAYPAL, gross=5000, orders=2, tickets=5),
        ],
        totals=[row(gross=7000, orders=4, tickets=7)],
    )
    assert one_house == pb.RevenueReport(
        rows=[
            stripe_row,
            row(provider=pb.PAYMENT_PROVIDER_PAYPAL, gross=1000, orders=1, tickets=1),
        ],
        totals=[row(gross=3000, orders=3, tickets=3)],
    )


async def test_range_without_paid_orders_is_an_empty_report(callers: Callers, year: int) -> None:
    result = await report(
        callers, start=at(year, 1, 1), end=at(year, 2, 1), group_by=pb.REVENUE_GROUP_BY_DAY
    )

    assert result == pb.RevenueReport()


# --- Errors and access -------------------------------------------------------------------------


async def test_unknown_time_zone_is_invalid_argument(callers: Callers, year: int) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await report(
            callers,
            start=at(year, 1, 1),
            end=at(year, 2, 1),
            group_by=pb.REVENUE_GROUP_BY_DAY,
            time_zone="Mars/Olympus_Mons",
        )

    problem = failure(raised.value)
    assert problem.code == grpc.StatusCode.INVALID_ARGUMENT
    assert problem.reason == "TIME_ZONE_UNKNOWN"
    assert [v.field for v in problem.field_violations] == ["time_zone"]


async def test_unknown_house_is_not_found(callers: Callers, year: int) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await report(
            callers,
            start=at(year, 1, 1),
            end=at(year, 2, 1),
            group_by=pb.REVENUE_GROUP_BY_HOUSE,
            house=f"houses/{uuid.uuid4()}",
        )

    problem = failure(raised.value)
    assert (problem.code, problem.reason) == (grpc.StatusCode.NOT_FOUND, "HOUSE_NOT_FOUND")


async def test_missing_group_by_is_invalid_argument(callers: Callers, year: int) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await report(
            callers,
            start=at(year, 1, 1),
            end=at(year, 2, 1),
            group_by=pb.REVENUE_GROUP_BY_UNSPECIFIED,
        )

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_user_may_not_get_the_report(callers: Callers, year: int) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await report(
            callers,
            start=at(year, 1, 1),
            end=at(year, 2, 1),
            group_by=pb.REVENUE_GROUP_BY_DAY,
            metadata=callers.user,
        )

    problem = failure(raised.value)
    assert (problem.code, problem.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ADMIN_REQUIRED")


async def test_anonymous_caller_may_not_get_the_report(callers: Callers, year: int) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await report(
            callers,
            start=at(year, 1, 1),
            end=at(year, 2, 1),
            group_by=pb.REVENUE_GROUP_BY_DAY,
            metadata=(),
        )

    assert failure(raised.value).code == grpc.StatusCode.UNAUTHENTICATED
