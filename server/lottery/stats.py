"""GetLotteryStats: participation, sales over time (UTC buckets) and unique buyers per house.

"Sold" means a paid order: PAID, or paid and later (partly) refunded — amounts are gross, before
refunds. An order counts in the bucket of its `paid_time`.
"""

from __future__ import annotations

import datetime
import enum
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, and_, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import FieldViolation, InvalidArgument, NotFound
from server.lottery.models import House, HouseState, Ticket, TicketState
from server.payment.models import Order, OrderState

MAX_BUCKETS = 1000
TOP_HOUSES = 100
DEFAULT_SPAN = datetime.timedelta(days=30)
PAID_STATES = (OrderState.PAID, OrderState.REFUNDED, OrderState.PARTIALLY_REFUNDED)


class BucketSize(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass
class Bucket:
    start: datetime.datetime
    tickets_sold: int = 0
    paid_orders: int = 0
    unique_buyers: int = 0
    gross_sales: dict[str, int] = field(default_factory=dict)


@dataclass
class Participation:
    house: House
    unique_buyers: int
    tickets_sold_in_interval: int
    gross_sales_minor: int


@dataclass
class Stats:
    start: datetime.datetime
    end: datetime.datetime
    bucket_size: BucketSize
    tickets_sold: int
    unique_buyers: int
    paid_orders: int
    gross_sales: dict[str, int]
    houses_by_state: dict[HouseState, int]
    buckets: list[Bucket]
    houses: list[Participation]


def _truncate(moment: datetime.datetime, size: BucketSize) -> datetime.datetime:
    moment = moment.astimezone(datetime.UTC)
    if size is BucketSize.HOUR:
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if size is BucketSize.DAY:
        return day
    if size is BucketSize.WEEK:
        return day - datetime.timedelta(days=day.weekday())
    return day.replace(day=1)


def _next(start: datetime.datetime, size: BucketSize) -> datetime.datetime:
    if size is BucketSize.HOUR:
        return start + datetime.timedelta(hours=1)
    if size is BucketSize.DAY:
        return start + datetime.timedelta(days=1)
    if size is BucketSize.WEEK:
        return start + datetime.timedelta(weeks=1)
    return (start + datetime.timedelta(days=32)).replace(day=1)


def bucket_starts(
    start: datetime.datetime, end: datetime.datetime, size: BucketSize
) -> list[datetime.datetime]:
    """Every bucket overlapping [start, end); STATS_TOO_MANY_BUCKETS beyond 1,000."""

    def starts() -> Iterator[datetime.datetime]:
        moment = _truncate(start, size)
        while moment < end:
            yield moment
            moment = _next(moment, size)

    result: list[datetime.datetime] = []
    for moment in starts():
        if len(result) == MAX_BUCKETS:
            raise InvalidArgument(
                "STATS_TOO_MANY_BUCKETS",
                f"the interval holds more than {MAX_BUCKETS} buckets of a {size.value}",
                violations=[FieldViolation("bucket_size", "too small for the interval")],
            )
        result.append(moment)
    return result


def _paid_in(start: datetime.datetime, end: datetime.datetime) -> ColumnElement[bool]:
    return and_(Order.state.in_(list(PAID_STATES)), Order.paid_time >= start, Order.paid_time < end)


async def _scope(
    session: AsyncSession,
    *,
    house_ids: Sequence[uuid.UUID],
    start: datetime.datetime,
    end: datetime.datetime,
) -> list[uuid.UUID]:
    if house_ids:
        found = set(await session.scalars(select(House.id).where(House.id.in_(house_ids))))
        if missing := [h for h in house_ids if h not in found]:
            raise NotFound("HOUSE_NOT_FOUND", f"no such house: houses/{missing[0]}")
        return list(house_ids)
    sold = func.sum(Order.quantity)
    rows = await session.execute(
        select(Order.house_id)
        .where(_paid_in(start, end))
        .group_by(Order.house_id)
        .order_by(sold.desc(), Order.house_id)
        .limit(TOP_HOUSES)
    )
    return [house_id for (house_id,) in rows]


async def lottery_stats(
    session: AsyncSession,
    *,
    start: datetime.datetime | None,
    end: datetime.datetime | None,
    bucket_size: BucketSize,
    house_ids: Sequence[uuid.UUID],
    now: datetime.datetime,
) -> Stats:
    end = end or now
    start = start or end - DEFAULT_SPAN
    starts = bucket_starts(start, end, bucket_size)
    scope = await _scope(session, house_ids=house_ids, start=start, end=end)
    in_scope = and_(_paid_in(start, end), Order.house_id.in_(scope))

    totals = (
        await session.execute(
            select(
                func.coalesce(func.sum(Order.quantity), 0),
                func.count(distinct(Order.user_id)),
                func.count(),
            ).where(in_scope)
        )
    ).one()
    gross = dict(
        (currency, int(amount))
        for currency, amount in await session.execute(
            select(Order.currency, func.sum(Order.total_minor))
            .where(in_scope)
            .group_by(Order.currency)
        )
    )
    by_state = {
        state: int(count)
        for state, count in await session.execute(
            select(House.state, func.count())
            .where(House.delete_time.is_(None))
            .group_by(House.state)
        )
    }
    buckets = await _buckets(session, starts=starts, size=bucket_size, where=in_scope)
    houses = await _participation(session, scope=scope, start=start, end=end)
    return Stats(
        start=start,
        end=end,
        bucket_size=bucket_size,
        tickets_sold=int(totals[0]),
        unique_buyers=int(totals[1]),
        paid_orders=int(totals[2]),
        gross_sales=gross,
        houses_by_state=by_state,
        buckets=buckets,
        houses=houses,
    )


async def _buckets(
    session: AsyncSession,
    *,
    starts: list[datetime.datetime],
    size: BucketSize,
    where: ColumnElement[bool],
) -> list[Bucket]:
    # date_trunc with an explicit zone: buckets start at UTC boundaries whatever the session's.
    bucket = func.date_trunc(size.value, Order.paid_time, "UTC").label("bucket")
    buckets = {moment: Bucket(start=moment) for moment in starts}
    counts = await session.execute(
        select(bucket, func.sum(Order.quantity), func.count(), func.count(distinct(Order.user_id)))
        .where(where)
        .group_by(bucket)
    )
    for moment, tickets, orders, buyers in counts:
        target = buckets[moment.astimezone(datetime.UTC)]
        target.tickets_sold, target.paid_orders, target.unique_buyers = (
            int(tickets),
            int(orders),
            int(buyers),
        )
    amounts = await session.execute(
        select(bucket, Order.currency, func.sum(Order.total_minor))
        .where(where)
        .group_by(bucket, Order.currency)
    )
    for moment, currency, amount in amounts:
        buckets[moment.astimezone(datetime.UTC)].gross_sales[currency] = int(amount)
    return [buckets[moment] for moment in starts]


async def _participation(
    session: AsyncSession,
    *,
    scope: list[uuid.UUID],
    start: datetime.datetime,
    end: datetime.datetime,
) -> list[Participation]:
    if not scope:
        return []
    houses = {
        house.id: house for house in await session.scalars(select(House).where(House.id.in_(scope)))
    }
    buyers: dict[uuid.UUID, int] = defaultdict(int)
    for house_id, count in await session.execute(
        select(Ticket.house_id, func.count(distinct(Ticket.user_id)))
        .where(Ticket.house_id.in_(scope), Ticket.state != TicketState.VOIDED)
        .group_by(Ticket.house_id)
    ):
        buyers[house_id] = int(count)
    in_interval: dict[uuid.UUID, int] = defaultdict(int)
    for house_id, sold in await session.execute(
        select(Order.house_id, func.sum(Order.quantity))
        .where(_paid_in(start, end), Order.house_id.in_(scope))
        .group_by(Order.house_id)
    ):
        in_interval[house_id] = int(sold)
    gross: dict[uuid.UUID, int] = defaultdict(int)
    for house_id, amount in await session.execute(
        select(Order.house_id, func.sum(Order.total_minor))
        .join(House, House.id == Order.house_id)
        .where(
            Order.state.in_(list(PAID_STATES)),
            Order.house_id.in_(scope),
            Order.currency == House.currency,
        )
        .group_by(Order.house_id)
    ):
        gross[house_id] = int(amount)
    rows = [
        Participation(
            house=houses[house_id],
            unique_buyers=buyers[house_id],
            tickets_sold_in_interval=in_interval[house_id],
            gross_sales_minor=gross[house_id],
        )
        for house_id in scope
    ]
    rows.sort(key=lambda row: (-row.tickets_sold_in_interval, str(row.house.id)))
    return rows
