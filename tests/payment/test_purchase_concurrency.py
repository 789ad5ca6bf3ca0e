"""1,000 concurrent purchase attempts against a house with far fewer tickets: nothing is
oversold, every number is sold once, every paid order has its tickets and a succeeded payment
at localstripe, and no payment was captured for an order without tickets."""

from __future__ import annotations

import asyncio
import random
import uuid

import grpc
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from server.app import App
from server.lottery.models import House, Ticket
from server.payment.invariants import check_invariants
from server.payment.models import Order, OrderState
from tests.lottery.conftest import Callers, active_house
from tests.payment.localstripe import LocalStripe
from tests.payment.support import buyer, purchase
from tests.support import failure

ATTEMPTS = 1000
BUYERS = 40
TICKETS = 60


async def test_a_thousand_concurrent_attempts_never_oversell_or_charge_without_tickets(
    app: App, callers: Callers, owner_engine: AsyncEngine, localstripe: LocalStripe
) -> None:
    house = await active_house(callers, owner_engine, total=TICKETS)
    house_id = uuid.UUID(house.name.split("/")[1])
    buyers = await asyncio.gather(*(buyer(app, owner_engine) for _ in range(BUYERS)))
    chooser = random.Random(20261125)  # noqa: S311 - test data
    plan = [(chooser.choice(buyers), chooser.randint(1, 3)) for _ in range(ATTEMPTS)]

    results = await asyncio.gather(
        *(purchase(callers.stub, who, house.name, quantity) for who, quantity in plan),
        return_exceptions=True,
    )

    refusals = [failure(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
    unexpected = [
        r for r in results if not isinstance(r, (pb.PurchaseTicketsResponse, grpc.aio.AioRpcError))
    ]
    assert not unexpected, unexpected[:3]
    assert {(f.code, f.reason) for f in refusals} <= {
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "SOLD_OUT"),
        (grpc.StatusCode.FAILED_PRECONDITION, "SALES_CLOSED"),
    }
    async with app.deps.database.session(system=True) as session:
        sold, reserved = (
            await session.execute(
                select(House.tickets_sold, House.tickets_reserved).where(House.id == house_id)
            )
        ).one()
        numbers = list(
            (await session.scalars(select(Ticket.number).where(Ticket.house_id == house_id))).all()
        )
        orders = list(
            (await session.scalars(select(Order).where(Order.house_id == house_id))).all()
        )
        tickets_per_order = dict(
            (
                await session.execute(
                    select(Ticket.order_id, func.count())
                    .where(Ticket.house_id == house_id)
                    .group_by(Ticket.order_id)
                )
            ).all()
        )

    assert sold <= TICKETS
    assert reserved == 0
    assert sorted(numbers) == list(range(1, sold + 1))  # every number once, no gap
    paid = [o for o in orders if o.state is OrderState.PAID]
    assert sum(o.quantity for o in paid) == sold
    assert sold >= TICKETS - 2  # it sold out (a last order of 3 may not fit the last 1-2)
    for order in orders:
        assert order.provider_payment_reference is not None or order.state is not OrderState.PAID
        if order.provider_payment_reference is None:
            continue
        intent = await localstripe.get(f"/v1/payment_intents/{order.provider_payment_reference}")
        if order.state is OrderState.PAID:
            assert tickets_per_order[order.id] == order.quantity
            assert (intent["status"], intent["amount"]) == ("succeeded", order.total_minor)
        else:
            assert intent["status"] != "succeeded" or order.state is OrderState.REFUNDED
    successes = [r for r in results if isinstance(r, pb.PurchaseTicketsResponse)]
    assert len(successes) == len(paid)
    violations = await check_invariants(
        app.deps.database, gateway=app.deps.gateways.stripe, house_ids=[house_id]
    )
    assert violations == []
