"""GetRevenueReport: revenue by day (in a time zone), house or provider, from the ledger.

An order counts when it is in a paid state (PAID, PARTIALLY_REFUNDED, REFUNDED) and its
`paid_time` lies in [start, end). Its amounts come from its transactions, not from the order
row: `gross` is what its SUCCEEDED charges took, `refunds` what its SUCCEEDED and PENDING refunds
give back (capped at the gross, so that `net` is never negative even for a ledger in error).
"""

from __future__ import annotations

import datetime
import enum
import functools
import uuid
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, Date, Subquery, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.errors import FieldViolation, InvalidArgument, NotFound
from server.lottery.models import House, Ticket, TicketState
from server.payment.models import (
    Order,
    OrderState,
    PaymentProvider,
    Transaction,
    TransactionKind,
    TransactionState,
)

PAID_STATES = (OrderState.PAID, OrderState.PARTIALLY_REFUNDED, OrderState.REFUNDED)
UTC = "UTC"
# Files in the zoneinfo directory that are not zones of their own.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})
# Rows by provider follow the proto enum's order.
_PROVIDER_ORDER = {PaymentProvider.STRIPE: 1, PaymentProvider.PAYPAL: 2}


class GroupBy(enum.StrEnum):
    DAY = "DAY"
    HOUSE = "HOUSE"
    PROVIDER = "PROVIDER"


@dataclass(frozen=True, slots=True)
class RevenueRow:
    """One group in one currency; the key fields of the other groupings are None (all of them
    in a total)."""

    currency: str
    gross_minor: int
    refunds_minor: int
    paid_orders: int
    tickets: int
    day: datetime.date | None = None
    house_id: uuid.UUID | None = None
    provider: PaymentProvider | None = None

    @property
    def net_minor(self) -> int:
        return self.gross_minor - self.refunds_minor


@dataclass(frozen=True, slots=True)
class RevenueReport:
    rows: list[RevenueRow]
    totals: list[RevenueRow]


@functools.cache
def _known_time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - _NOT_ZONES


def time_zone_or_utc(name: str) -> str:
    """The IANA zone `name` names (UTC when empty); INVALID_ARGUMENT TIME_ZONE_UNKNOWN when it
    names none. The zone database of this host is PostgreSQL's too (Debian builds it with the
    system tzdata), so a name accepted here is one the query understands."""
    if not name:
        return UTC
    if name not in _known_time_zones():
        raise InvalidArgument(
            "TIME_ZONE_UNKNOWN",
            f"{name!r} is not an IANA time zone name",
            violations=[
                FieldViolation("time_zone", "must be an IANA time zone, e.g. Europe/Paris")
            ],
        )
    return name


async def revenue_report(
    session: AsyncSession,
    *,
    start: datetime.datetime,
    end: datetime.datetime,
    group_by: GroupBy,
    house_id: uuid.UUID | None,
    time_zone: str,
) -> RevenueReport:
    """The report over orders paid in [start, end); NOT_FOUND HOUSE_NOT_FOUND when `house_id`
    names no house (a deleted house still has its revenue, so it is found)."""
    if house_id is not None and await session.get(House, house_id) is None:
        raise NotFound("HOUSE_NOT_FOUND", f"no such house: houses/{house_id}")
    charged = _ledger_sums(TransactionKind.CHARGE, (TransactionState.SUCCEEDED,))
    refunded = _ledger_sums(
        TransactionKind.REFUND, (TransactionState.SUCCEEDED, TransactionState.PENDING)
    )
    issued = (
        select(Ticket.order_id, func.count().label("tickets"))
        .where(Ticket.state != TicketState.VOIDED)
        .group_by(Ticket.order_id)
        .subquery()
    )
    gross = func.coalesce(charged.c.amount, 0)
    refunds = func.least(func.coalesce(refunded.c.amount, 0), gross)
    key = _group_key(group_by, time_zone).label("key")
    conditions = [
        Order.state.in_(PAID_STATES),
        Order.paid_time >= start,
        Order.paid_time < end,
    ]
    if house_id is not None:
        conditions.append(Order.house_id == house_id)
    per_order = (
        select(
            key,
            Order.currency.label("currency"),
            gross.label("gross"),
            refunds.label("refunds"),
            func.coalesce(issued.c.tickets, 0).label("tickets"),
        )
        .outerjoin(charged, charged.c.order_id == Order.id)
        .outerjoin(refunded, refunded.c.order_id == Order.id)
        .outerjoin(issued, issued.c.order_id == Order.id)
        .where(*conditions)
        .subquery()
    )
    result = await session.execute(
        select(
            per_order.c.key,
            per_order.c.currency,
            func.sum(per_order.c.gross),
            func.sum(per_order.c.refunds),
            func.count(),
            func.sum(per_order.c.tickets),
        ).group_by(per_order.c.key, per_order.c.currency)
    )
    rows = [
        _row(
            group_by,
            group_key,
            RevenueRow(
                currency=currency,
                gross_minor=int(gross_sum),
                refunds_minor=int(refund_sum),
                paid_orders=int(orders),
                tickets=int(tickets),
            ),
        )
        for group_key, currency, gross_sum, refund_sum, orders, tickets in result
    ]
    rows.sort(key=_sort_key)
    return RevenueReport(rows=rows, totals=_totals(rows))


def _group_key(group_by: GroupBy, time_zone: str) -> ColumnElement[Any]:
    if group_by is GroupBy.DAY:
        # timezone(zone, timestamptz) is the wall-clock time there; its date is the local day.
        return cast(func.timezone(time_zone, Order.paid_time), Date)
    if group_by is GroupBy.HOUSE:
        return Order.house_id.expression
    return Order.provider.expression


def _ledger_sums(kind: TransactionKind, states: Sequence[TransactionState]) -> Subquery:
    """Per order: its transactions of `kind` in `states`, summed."""
    return (
        select(Transaction.order_id, func.sum(Transaction.amount_minor).label("amount"))
        .where(Transaction.kind == kind, Transaction.state.in_(states))
        .group_by(Transaction.order_id)
        .subquery()
    )


def _row(group_by: GroupBy, group_key: object, sums: RevenueRow) -> RevenueRow:
    if group_by is GroupBy.DAY:
        assert isinstance(group_key, datetime.date)
        return replace(sums, day=group_key)
    if group_by is GroupBy.HOUSE:
        assert isinstance(group_key, uuid.UUID)
        return replace(sums, house_id=group_key)
    assert isinstance(group_key, PaymentProvider)
    return replace(sums, provider=group_key)


def _sort_key(row: RevenueRow) -> tuple[datetime.date, str, int, str]:
    # Only one of the key fields is set; houses sort by their name `houses/{uuid}`.
    return (
        row.day or datetime.date.min,
        str(row.house_id or ""),
        _PROVIDER_ORDER[row.provider] if row.provider else 0,
        row.currency,
    )


def _totals(rows: Sequence[RevenueRow]) -> list[RevenueRow]:
    totals: dict[str, RevenueRow] = {}
    for row in rows:
        total = totals.get(row.currency)
        totals[row.currency] = RevenueRow(
            currency=row.currency,
            gross_minor=row.gross_minor + (total.gross_minor if total else 0),
            refunds_minor=row.refunds_minor + (total.refunds_minor if total else 0),
            paid_orders=row.paid_orders + (total.paid_orders if total else 0),
            tickets=row.tickets + (total.tickets if total else 0),
        )
    return [totals[currency] for currency in sorted(totals)]
