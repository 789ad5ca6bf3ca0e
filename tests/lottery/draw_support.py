"""Arranging lotteries for the draw tests: a house on sale that closes in seconds (the test
beacon makes a round every second and the test delay is zero, so its target round follows at
once), its tickets sold through the purchase path's functions, and waiting for its close."""

from __future__ import annotations

import asyncio
import datetime
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from server.app import App
from server.lottery.models import Draw, House
from tests.lottery.conftest import (
    Callers,
    buy_tickets,
    complete_house,
    new_user,
    published_house,
    terms,
    ts,
)

CLOSES_IN = datetime.timedelta(seconds=2)


def house_id_of(name: str) -> uuid.UUID:
    return uuid.UUID(name.split("/")[1])


async def selling_house(
    callers: Callers,
    owner_engine: AsyncEngine,
    *,
    total: int = 20,
    min_participation: int = 0,
    closes_in: datetime.timedelta = CLOSES_IN,
) -> pb.House:
    """A published ACTIVE house whose sales close `closes_in` from now."""
    closes = datetime.datetime.now(datetime.UTC) + closes_in
    lottery_terms = terms(total=total, opens_in=-datetime.timedelta(hours=1))
    lottery_terms.min_participation = min_participation
    lottery_terms.max_tickets_per_order = total
    lottery_terms.max_tickets_per_user = total
    lottery_terms.sales_close_time.CopyFrom(ts(closes))
    lottery_terms.draw_time.CopyFrom(ts(closes + datetime.timedelta(milliseconds=100)))
    house = await published_house(
        callers, owner_engine, complete_house(lottery_terms=lottery_terms)
    )
    assert house.state == pb.HOUSE_STATE_ACTIVE
    return house


async def sell(
    app: App, owner_engine: AsyncEngine, house: pb.House, quantities: list[int]
) -> list[uuid.UUID]:
    """One buyer per quantity; returns the buyers in order."""
    buyers = []
    for quantity in quantities:
        user_id, _ = await new_user(app, owner_engine)
        await buy_tickets(app, owner_engine, house=house.name, user_id=user_id, quantity=quantity)
        buyers.append(user_id)
    return buyers


async def sleep_until(moment: datetime.datetime, margin: float = 0.15) -> None:
    delay = (moment - datetime.datetime.now(datetime.UTC)).total_seconds() + margin
    if delay > 0:
        await asyncio.sleep(delay)


async def wait_for_close_and_round(app: App, house: pb.House) -> None:
    """Until the house's sales closed and its target beacon round exists."""
    house_id = house_id_of(house.name)
    async with app.deps.database.session(system=True) as session:
        close = await session.scalar(select(House.sales_close_time).where(House.id == house_id))
        beacon_time = await session.scalar(
            select(Draw.beacon_time).where(Draw.house_id == house_id)
        )
    assert close is not None
    assert beacon_time is not None
    await sleep_until(max(close, beacon_time))
