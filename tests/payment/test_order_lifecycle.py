"""After the purchase: cancelling and expiring unpaid orders, a payment that succeeds after its
reservation was released (fulfilled while tickets remain, refunded otherwise), admin refunds,
and a cancelled lottery refunding everyone."""

from __future__ import annotations

import datetime
import uuid

import grpc
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from amesa.payment.v1 import payment_service_pb2 as ppb
from amesa.payment.v1 import payment_service_pb2_grpc
from amesa.type.v1 import money_pb2
from amesa.user.v1 import user_service_pb2 as upb
from amesa.user.v1 import user_service_pb2_grpc
from server.app import App
from server.lottery.lifecycle import utcnow
from server.lottery.models import Ticket, TicketState
from server.payment import orders
from server.payment.checkout import Checkout
from server.payment.invariants import check_invariants
from server.payment.jobs import PaymentJob
from server.payment.models import Order, OrderState
from tests.lottery.conftest import Callers, active_house
from tests.payment.localstripe import LocalStripe
from tests.payment.support import Buyer, buyer, purchase
from tests.payment.test_stripe_webhook import deliver, event
from tests.support import failure


def order_id(order: ppb.Order) -> uuid.UUID:
    return uuid.UUID(order.name.split("/")[-1])


async def remaining(callers: Callers, house: pb.House) -> int:
    seen = await callers.stub.GetHouse(pb.GetHouseRequest(name=house.name))
    return seen.tickets_remaining


async def pay_with_stripe_js(localstripe: LocalStripe, order: ppb.Order) -> None:
    """What Stripe.js does in the buyer's browser."""
    path = f"/v1/payment_intents/{order.provider_payment_reference}"
    assert (await localstripe.request("POST", path, {"payment_method": "pm_card_visa"})).is_success
    assert (await localstripe.request("POST", f"{path}/confirm")).is_success


async def test_cancelling_an_unpaid_order_releases_its_tickets_and_payment(
    app: App,
    callers: Callers,
    owner_engine: AsyncEngine,
    localstripe: LocalStripe,
    payments: payment_service_pb2_grpc.PaymentServiceAsyncStub,
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    who = await buyer(app, owner_engine, card=None)
    order = (await purchase(callers.stub, who, house.name, 4, saved_card=False)).order
    held = await remaining(callers, house)

    cancelled = await payments.CancelOrder(
        ppb.CancelOrderRequest(name=order.name), metadata=who.metadata
    )
    again = await payments.CancelOrder(
        ppb.CancelOrderRequest(name=order.name), metadata=who.metadata
    )

    assert held == 6
    assert cancelled.state == again.state == ppb.ORDER_STATE_CANCELLED
    assert await remaining(callers, house) == 10
    intent = await localstripe.get(f"/v1/payment_intents/{order.provider_payment_reference}")
    assert intent["status"] == "canceled"
    someone_else = await buyer(app, owner_engine, card=None)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await payments.CancelOrder(
            ppb.CancelOrderRequest(name=order.name), metadata=someone_else.metadata
        )
    assert failure(caught.value).reason == "NOT_OWNER"


async def test_unpaid_orders_expire_and_their_tickets_go_back_on_sale(
    app: App,
    callers: Callers,
    owner_engine: AsyncEngine,
    payments: payment_service_pb2_grpc.PaymentServiceAsyncStub,
) -> None:
    house = await active_house(callers, owner_engine, total=5)
    who = await buyer(app, owner_engine, card=None)
    order = (await purchase(callers.stub, who, house.name, 5, saved_card=False)).order
    async with owner_engine.begin() as connection:
        await connection.execute(
            update(Order)
            .where(Order.id == order_id(order))
            .values(expire_time=utcnow() - datetime.timedelta(seconds=1))
        )

    await Checkout(app.deps).expire_due()

    expired = await payments.GetOrder(ppb.GetOrderRequest(name=order.name), metadata=who.metadata)
    assert expired.state == ppb.ORDER_STATE_EXPIRED
    assert await remaining(callers, house) == 5


async def _released_then_paid(
    app: App, callers: Callers, owner_engine: AsyncEngine, localstripe: LocalStripe, *, total: int
) -> tuple[pb.House, ppb.Order, Buyer]:
    """An order whose reservation was released (as expiry does) while its buyer still paid."""
    house = await active_house(callers, owner_engine, total=total)
    who = await buyer(app, owner_engine, card=None)
    order = (await purchase(callers.stub, who, house.name, 2, saved_card=False)).order
    async with app.deps.database.session(system=True) as session:
        await orders.release(
            session,
            order_id=order_id(order),
            state=OrderState.EXPIRED,
            failure_reason=None,
            now=utcnow(),
        )
    return house, order, who


async def test_a_payment_after_release_is_fulfilled_while_tickets_remain(
    app: App,
    callers: Callers,
    owner_engine: AsyncEngine,
    localstripe: LocalStripe,
    payments: payment_service_pb2_grpc.PaymentServiceAsyncStub,
) -> None:
    house, order, who = await _released_then_paid(app, callers, owner_engine, localstripe, total=5)
    await pay_with_stripe_js(localstripe, order)

    await deliver(payments, event("payment_intent.succeeded", order.provider_payment_reference))

    paid = await payments.GetOrder(ppb.GetOrderRequest(name=order.name), metadata=who.metadata)
    assert paid.state == ppb.ORDER_STATE_PAID
    assert len(paid.ticket_numbers) == 2
    assert await remaining(callers, house) == 3


async def test_a_payment_after_release_with_no_tickets_left_is_refunded(
    app: App,
    callers: Callers,
    owner_engine: AsyncEngine,
    localstripe: LocalStripe,
    payments: payment_service_pb2_grpc.PaymentServiceAsyncStub,
) -> None:
    house, order, who = await _released_then_paid(app, callers, owner_engine, localstripe, total=2)
    rival = await buyer(app, owner_engine)
    await purchase(callers.stub, rival, house.name, 2)  # the released tickets sell at once
    await pay_with_stripe_js(localstripe, order)

    await deliver(payments, event("payment_intent.succeeded", order.provider_payment_reference))

    refunded = await payments.GetOrder(ppb.GetOrderRequest(name=order.name), metadata=who.metadata)
    assert refunded.state == ppb.ORDER_STATE_REFUNDED
    assert not refunded.ticket_numbers
    assert refunded.refunded_amount.amount_minor == refunded.total.amount_minor
    ledger = await payments.ListTransactions(
        ppb.ListTransactionsRequest(parent="users/me", order=order.name), metadata=who.metadata
    )
    kinds = {(t.kind, t.state) for t in ledger.transactions}
    assert kinds == {
        (ppb.TRANSACTION_KIND_CHARGE, ppb.TRANSACTION_STATE_SUCCEEDED),
        (ppb.TRANSACTION_KIND_REFUND, ppb.TRANSACTION_STATE_SUCCEEDED),
    }
    refund = next(t for t in ledger.transactions if t.kind == ppb.TRANSACTION_KIND_REFUND)
    at_stripe = await localstripe.get(f"/v1/refunds/{refund.provider_reference}")
    assert at_stripe["amount"] == refunded.total.amount_minor


# --- RefundOrder ---------------------------------------------------------------------------------


async def test_admins_refund_in_part_then_in_full_and_tickets_are_voided(
    app: App,
    callers: Callers,
    owner_engine: AsyncEngine,
    localstripe: LocalStripe,
    payments: payment_service_pb2_grpc.PaymentServiceAsyncStub,
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    who = await buyer(app, owner_engine)
    order = (await purchase(callers.stub, who, house.name, 3)).order
    total = order.total.amount_minor
    part = ppb.RefundOrderRequest(
        name=order.name,
        amount=money_pb2.Money(currency_code=order.total.currency_code, amount_minor=500),
        reason="goodwill",
        request_id=str(uuid.uuid4()),
    )

    first = await payments.RefundOrder(part, metadata=callers.admin)
    retried = await payments.RefundOrder(part, metadata=callers.admin)
    too_much = ppb.RefundOrderRequest(
        name=order.name,
        amount=money_pb2.Money(currency_code=order.total.currency_code, amount_minor=total),
        reason="oops",
        request_id=str(uuid.uuid4()),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await payments.RefundOrder(too_much, metadata=callers.admin)
    rest = await payments.RefundOrder(
        ppb.RefundOrderRequest(
            name=order.name, reason="cancelled by support", request_id=str(uuid.uuid4())
        ),
        metadata=callers.admin,
    )
    with pytest.raises(grpc.aio.AioRpcError) as by_user:
        await payments.RefundOrder(part, metadata=who.metadata)

    assert first.order.state == ppb.ORDER_STATE_PARTIALLY_REFUNDED
    assert first.transaction.state == ppb.TRANSACTION_STATE_SUCCEEDED
    assert retried.transaction.name == first.transaction.name
    assert failure(caught.value).reason == "REFUND_AMOUNT_TOO_LARGE"
    assert rest.order.state == ppb.ORDER_STATE_REFUNDED
    assert rest.transaction.amount.amount_minor == total - 500
    assert failure(by_user.value).code == grpc.StatusCode.PERMISSION_DENIED
    refund = await localstripe.get(f"/v1/refunds/{rest.transaction.provider_reference}")
    assert refund["amount"] == total - 500
    async with app.deps.database.session(system=True) as session:
        states = set(
            (
                await session.scalars(
                    select(Ticket.state).where(Ticket.order_id == order_id(order))
                )
            ).all()
        )
    assert states == {TicketState.VOIDED}
    violations = await check_invariants(
        app.deps.database,
        gateway=app.deps.gateways.stripe,
        house_ids=[uuid.UUID(house.name.split("/")[1])],
    )
    assert violations == []


async def test_a_cancelled_lottery_refunds_every_paid_order_and_cancels_pending_ones(
    app: App,
    callers: Callers,
    owner_engine: AsyncEngine,
    localstripe: LocalStripe,
    payments: payment_service_pb2_grpc.PaymentServiceAsyncStub,
) -> None:
    house = await active_house(callers, owner_engine, total=20)
    buyers = [await buyer(app, owner_engine) for _ in range(3)]
    paid = [(await purchase(callers.stub, who, house.name, 2)).order for who in buyers[:2]]
    pending = (await purchase(callers.stub, buyers[2], house.name, 1, saved_card=False)).order

    await callers.stub.CancelHouse(
        pb.CancelHouseRequest(name=house.name, reason="the seller withdrew"),
        metadata=callers.admin,
    )
    job = PaymentJob(app.deps)
    await job.run()
    await job.run()  # a second round changes nothing

    for order, who in zip(paid, buyers, strict=False):
        now = await payments.GetOrder(ppb.GetOrderRequest(name=order.name), metadata=who.metadata)
        assert now.state == ppb.ORDER_STATE_REFUNDED
        ledger = await payments.ListTransactions(
            ppb.ListTransactionsRequest(
                parent="users/me", order=order.name, kind=ppb.TRANSACTION_KIND_REFUND
            ),
            metadata=who.metadata,
        )
        assert [t.state for t in ledger.transactions] == [ppb.TRANSACTION_STATE_SUCCEEDED]
        assert ledger.transactions[0].reason == "lottery cancelled"
    cancelled = await payments.GetOrder(
        ppb.GetOrderRequest(name=pending.name), metadata=buyers[2].metadata
    )
    assert cancelled.state == ppb.ORDER_STATE_CANCELLED
    violations = await check_invariants(
        app.deps.database,
        gateway=app.deps.gateways.stripe,
        house_ids=[uuid.UUID(house.name.split("/")[1])],
    )
    assert violations == []


async def test_self_exclusion_cancels_unpaid_orders_and_a_late_payment_is_refunded(  # noqa: PLR0917
    app: App,
    callers: Callers,
    channel: grpc.aio.Channel,
    owner_engine: AsyncEngine,
    localstripe: LocalStripe,
    payments: payment_service_pb2_grpc.PaymentServiceAsyncStub,
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    who = await buyer(app, owner_engine, card=None)
    order = (await purchase(callers.stub, who, house.name, 3, saved_card=False)).order
    users = user_service_pb2_grpc.UserServiceStub(channel)

    await users.SelfExclude(
        upb.SelfExcludeRequest(name="users/me", months=6), metadata=who.metadata
    )
    cancelled = await payments.GetOrder(
        ppb.GetOrderRequest(name=order.name), metadata=callers.admin
    )
    held = await remaining(callers, house)
    await pay_with_stripe_js(localstripe, order)  # the browser had the client secret already
    await deliver(payments, event("payment_intent.succeeded", order.provider_payment_reference))
    late = await payments.GetOrder(ppb.GetOrderRequest(name=order.name), metadata=callers.admin)

    assert cancelled.state == ppb.ORDER_STATE_CANCELLED
    assert held == 10
    assert late.state == ppb.ORDER_STATE_REFUNDED
    assert not late.ticket_numbers
    assert await remaining(callers, house) == 10
