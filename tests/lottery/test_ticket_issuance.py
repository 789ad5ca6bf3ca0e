"""The functions the purchase path calls: reserve_tickets, release_reservation and issue_tickets.
The counters move by conditional updates only: never oversold, numbers never duplicated or
missing, leaves appended in number order, the last ticket moves the house to SOLD_OUT."""

from __future__ import annotations

import asyncio
import datetime
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from server.app import App
from server.core.errors import FailedPrecondition, NotFound, ResourceExhausted
from server.core.models import AuditLog
from server.lottery.draw.merkle import leaf_hash
from server.lottery.draw.protocol import to_ms
from server.lottery.models import DrawEntry, House, HouseState, Ticket
from server.lottery.tickets import issue_tickets, release_reservation, reserve_tickets
from tests.lottery.conftest import (
    Callers,
    active_house,
    buy_tickets,
    create_house,
    new_user,
    pending_order,
    published_house,
)


def _id(name: str) -> uuid.UUID:
    return uuid.UUID(name.split("/")[1])


async def _counters(owner_engine: AsyncEngine, house_id: uuid.UUID) -> tuple[int, int, str]:
    async with owner_engine.connect() as connection:
        row = (
            await connection.execute(
                select(House.tickets_sold, House.tickets_reserved, House.state).where(
                    House.id == house_id
                )
            )
        ).one()
    return int(row[0]), int(row[1]), str(row[2])


async def _reserve(app: App, house_id: uuid.UUID, quantity: int) -> int:
    async with app.deps.database.session(system=True) as session:
        return await reserve_tickets(session, house_id=house_id, quantity=quantity)


async def test_reserving_returns_what_is_left_and_releasing_gives_it_back(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house_id = _id((await active_house(callers, owner_engine, total=10)).name)

    assert await _reserve(app, house_id, 3) == 7
    assert await _counters(owner_engine, house_id) == (0, 3, "ACTIVE")
    async with app.deps.database.session(system=True) as session:
        await release_reservation(session, house_id=house_id, quantity=3)
    assert await _counters(owner_engine, house_id) == (0, 0, "ACTIVE")


async def test_reserving_more_than_is_left_is_sold_out_with_the_remaining_count(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house_id = _id((await active_house(callers, owner_engine, total=5)).name)
    await _reserve(app, house_id, 4)

    with pytest.raises(ResourceExhausted) as raised:
        await _reserve(app, house_id, 2)

    assert raised.value.reason == "SOLD_OUT"
    assert raised.value.metadata == {"tickets_remaining": "1"}
    assert await _counters(owner_engine, house_id) == (0, 4, "ACTIVE")


async def test_reserving_before_sales_open_is_sales_not_open(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    upcoming = await published_house(callers, owner_engine)
    assert upcoming.state == pb.HOUSE_STATE_UPCOMING

    with pytest.raises(FailedPrecondition) as raised:
        await _reserve(app, _id(upcoming.name), 1)

    assert raised.value.reason == "SALES_NOT_OPEN"


async def test_reserving_on_a_cancelled_house_is_sales_closed(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=5)
    await callers.stub.CancelHouse(
        pb.CancelHouseRequest(name=house.name, reason="test"), metadata=callers.admin
    )

    with pytest.raises(FailedPrecondition) as raised:
        await _reserve(app, _id(house.name), 1)

    assert raised.value.reason == "SALES_CLOSED"


async def test_reserving_on_a_draft_house_is_house_not_found(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    draft = await create_house(callers)

    with pytest.raises(NotFound) as raised:
        await _reserve(app, _id(draft.name), 1)

    assert raised.value.reason == "HOUSE_NOT_FOUND"


async def test_releasing_more_than_is_reserved_is_refused_and_changes_nothing(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house_id = _id((await active_house(callers, owner_engine, total=5)).name)
    await _reserve(app, house_id, 1)

    with pytest.raises(RuntimeError):
        async with app.deps.database.session(system=True) as session:
            await release_reservation(session, house_id=house_id, quantity=2)

    assert await _counters(owner_engine, house_id) == (0, 1, "ACTIVE")


async def test_issuing_numbers_the_tickets_and_appends_their_leaves(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    house_id = _id(house.name)
    user_id, _ = await new_user(app, owner_engine)

    first = await buy_tickets(app, owner_engine, house=house.name, user_id=user_id, quantity=3)
    second = await buy_tickets(app, owner_engine, house=house.name, user_id=user_id, quantity=2)

    assert [t.number for t in first] == [1, 2, 3]
    assert [t.number for t in second] == [4, 5]
    for ticket in [*first, *second]:
        assert ticket.leaf_index == ticket.number - 1
        assert len(ticket.secret_id) == 16
        assert ticket.purchase_time.microsecond % 1000 == 0
    assert len({t.secret_id for t in [*first, *second]}) == 5
    async with owner_engine.connect() as connection:
        entries = (
            await connection.execute(
                select(DrawEntry.leaf_index, DrawEntry.ticket_id, DrawEntry.leaf_hash)
                .where(DrawEntry.house_id == house_id)
                .order_by(DrawEntry.leaf_index)
            )
        ).all()
    by_id = {t.id: t for t in [*first, *second]}
    assert [index for index, _, _ in entries] == [0, 1, 2, 3, 4]
    for index, ticket_id, stored in entries:
        ticket = by_id[ticket_id]
        assert ticket.number == index + 1
        assert stored == leaf_hash(
            house_id=house_id,
            number=ticket.number,
            secret=ticket.secret_id,
            purchase_time_ms=to_ms(ticket.purchase_time),
        )
    assert await _counters(owner_engine, house_id) == (5, 0, "ACTIVE")


async def test_issuing_the_last_ticket_sells_the_house_out_with_an_audit_row(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=3)
    user_id, _ = await new_user(app, owner_engine)

    await buy_tickets(app, owner_engine, house=house.name, user_id=user_id, quantity=3)

    assert await _counters(owner_engine, _id(house.name)) == (3, 0, "SOLD_OUT")
    async with owner_engine.connect() as connection:
        actions = (
            await connection.scalars(
                select(AuditLog.action).where(AuditLog.resource_name == house.name)
            )
        ).all()
    assert "lottery.house.sell_out" in actions
    assert "lottery.tickets.issue" in actions


async def test_issuing_after_the_house_was_cancelled_is_sales_closed(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=5)
    house_id = _id(house.name)
    user_id, _ = await new_user(app, owner_engine)
    await _reserve(app, house_id, 2)
    order_id = await pending_order(owner_engine, house_id=house_id, user_id=user_id, quantity=2)
    await callers.stub.CancelHouse(
        pb.CancelHouseRequest(name=house.name, reason="test"), metadata=callers.admin
    )

    with pytest.raises(FailedPrecondition) as raised:
        async with app.deps.database.session(system=True) as session:
            await issue_tickets(
                session,
                house_id=house_id,
                user_id=user_id,
                order_id=order_id,
                quantity=2,
                now=datetime.datetime.now(datetime.UTC),
            )

    assert raised.value.reason == "SALES_CLOSED"
    assert await _counters(owner_engine, house_id) == (0, 2, HouseState.CANCELLED.value)


async def test_concurrent_reservations_never_oversell(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house_id = _id((await active_house(callers, owner_engine, total=50)).name)

    async def attempt() -> str:
        try:
            await _reserve(app, house_id, 1)
        except ResourceExhausted as error:
            return error.reason
        return "RESERVED"

    results = await asyncio.gather(*(attempt() for _ in range(200)))

    assert results.count("RESERVED") == 50
    assert results.count("SOLD_OUT") == 150
    assert await _counters(owner_engine, house_id) == (0, 50, "ACTIVE")


async def test_concurrent_issuances_number_every_ticket_exactly_once(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=60)
    house_id = _id(house.name)
    user_id, _ = await new_user(app, owner_engine)
    quantities = [1, 2, 3, 4, 5] * 4  # 20 orders, 60 tickets
    orders = []
    for quantity in quantities:
        await _reserve(app, house_id, quantity)
        orders.append(
            await pending_order(owner_engine, house_id=house_id, user_id=user_id, quantity=quantity)
        )

    async def fulfil(order_id: uuid.UUID, quantity: int) -> list[int]:
        async with app.deps.database.session(system=True) as session:
            issued = await issue_tickets(
                session,
                house_id=house_id,
                user_id=user_id,
                order_id=order_id,
                quantity=quantity,
                now=datetime.datetime.now(datetime.UTC),
            )
            return [ticket.number for ticket in issued]

    ranges = await asyncio.gather(*(fulfil(o, q) for o, q in zip(orders, quantities, strict=True)))

    for numbers, quantity in zip(ranges, quantities, strict=True):
        assert numbers == list(range(numbers[0], numbers[0] + quantity))  # one contiguous range
    assert sorted(n for numbers in ranges for n in numbers) == list(range(1, 61))
    async with owner_engine.connect() as connection:
        rows = (
            await connection.execute(
                select(Ticket.number, DrawEntry.leaf_index)
                .join(DrawEntry, DrawEntry.ticket_id == Ticket.id)
                .where(Ticket.house_id == house_id)
            )
        ).all()
    assert sorted(number for number, _ in rows) == list(range(1, 61))
    assert all(index == number - 1 for number, index in rows)
    assert await _counters(owner_engine, house_id) == (60, 0, "SOLD_OUT")
