"""PurchaseTickets end to end against localstripe: a saved card pays at once, Stripe.js orders
wait for ConfirmOrderPayment, every eligibility check has its own reason, retries never charge
twice, and a declined card gives the tickets back."""

from __future__ import annotations

import datetime
import uuid

import grpc
import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from amesa.payment.v1 import payment_service_pb2 as ppb
from amesa.payment.v1 import payment_service_pb2_grpc
from server.app import App
from server.core.models import AuditLog
from server.lottery.models import House, HouseState
from server.payment.models import Transaction, TransactionState
from server.user.models import (
    KycStatus,
    PlayLimit,
    PlayLimitPeriod,
    SelfExclusion,
    User,
    UserStatus,
)
from tests.lottery.conftest import Callers, active_house, force_state, published_house
from tests.payment.localstripe import LocalStripe
from tests.payment.support import Buyer, buyer, purchase
from tests.support import failure


def house_id(name: str) -> uuid.UUID:
    return uuid.UUID(name.split("/")[1])


async def reason_of(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    seen = failure(caught.value)
    return seen.code, seen.reason


async def test_a_saved_card_pays_at_once_and_the_tickets_are_issued(
    app: App,
    callers: Callers,
    owner_engine: AsyncEngine,
    payments: payment_service_pb2_grpc.PaymentServiceAsyncStub,
    localstripe: LocalStripe,
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    who = await buyer(app, owner_engine)

    response = await purchase(callers.stub, who, house.name, 3)

    order = response.order
    assert order.state == ppb.ORDER_STATE_PAID
    assert [t.number for t in response.tickets] == [1, 2, 3] == list(order.ticket_numbers)
    assert order.total.amount_minor == 3 * house.lottery_terms.ticket_price.amount_minor
    intent = await localstripe.get(f"/v1/payment_intents/{order.provider_payment_reference}")
    assert intent["status"] == "succeeded"
    assert intent["amount"] == order.total.amount_minor
    assert intent["metadata"]["order_id"] == order.name.split("/")[-1]
    listed = await payments.ListTransactions(
        ppb.ListTransactionsRequest(parent="users/me"), metadata=who.metadata
    )
    assert [(t.kind, t.state) for t in listed.transactions] == [
        (ppb.TRANSACTION_KIND_CHARGE, ppb.TRANSACTION_STATE_SUCCEEDED)
    ]
    fetched = await payments.GetOrder(ppb.GetOrderRequest(name=order.name), metadata=who.metadata)
    assert fetched.state == ppb.ORDER_STATE_PAID
    seen = await callers.stub.GetHouse(pb.GetHouseRequest(name=house.name))
    assert seen.tickets_sold == 3


async def test_a_retry_with_the_same_request_id_returns_the_order_and_charges_once(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    who = await buyer(app, owner_engine)
    request_id = str(uuid.uuid4())

    first = await purchase(callers.stub, who, house.name, 2, request_id=request_id)
    again = await purchase(callers.stub, who, house.name, 2, request_id=request_id)
    other = callers.stub.PurchaseTickets(
        pb.PurchaseTicketsRequest(
            house=house.name, quantity=3, request_id=request_id, payment_method=who.card
        ),
        metadata=who.metadata,
    )

    assert again.order.name == first.order.name
    assert again.order.state == ppb.ORDER_STATE_PAID
    assert list(again.order.ticket_numbers) == [1, 2]
    assert await reason_of(other) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_REUSED")
    async with app.deps.database.session(system=True) as session:
        charges = await session.scalar(
            select(func.count()).where(
                Transaction.user_id == who.user_id, Transaction.state == TransactionState.SUCCEEDED
            )
        )
        sold = await session.scalar(
            select(House.tickets_sold).where(House.id == house_id(house.name))
        )
    assert (charges, sold) == (1, 2)


async def test_without_a_saved_card_the_client_confirms_then_the_order_is_paid(
    app: App,
    callers: Callers,
    owner_engine: AsyncEngine,
    payments: payment_service_pb2_grpc.PaymentServiceAsyncStub,
    localstripe: LocalStripe,
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    who = await buyer(app, owner_engine, card=None)

    response = await purchase(callers.stub, who, house.name, 2, saved_card=False)
    order = response.order
    assert order.state == ppb.ORDER_STATE_PENDING_PAYMENT
    assert order.client_secret
    assert not response.tickets
    still_pending = await payments.ConfirmOrderPayment(
        ppb.ConfirmOrderPaymentRequest(name=order.name), metadata=who.metadata
    )
    # What Stripe.js does in the browser with the client secret.
    intent_path = f"/v1/payment_intents/{order.provider_payment_reference}"
    attached = await localstripe.request("POST", intent_path, {"payment_method": "pm_card_visa"})
    assert attached.status_code == 200, attached.text
    confirmed = await localstripe.request("POST", f"{intent_path}/confirm")
    assert confirmed.status_code == 200, confirmed.text

    paid = await payments.ConfirmOrderPayment(
        ppb.ConfirmOrderPaymentRequest(name=order.name), metadata=who.metadata
    )
    paid_again = await payments.ConfirmOrderPayment(
        ppb.ConfirmOrderPaymentRequest(name=order.name), metadata=who.metadata
    )

    assert still_pending.state == ppb.ORDER_STATE_PENDING_PAYMENT
    assert paid.state == ppb.ORDER_STATE_PAID
    assert list(paid.ticket_numbers) == [1, 2] == list(paid_again.ticket_numbers)
    assert not paid.client_secret


async def test_a_declined_card_fails_the_order_and_gives_the_tickets_back(
    app: App,
    callers: Callers,
    owner_engine: AsyncEngine,
    payments: payment_service_pb2_grpc.PaymentServiceAsyncStub,
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    who = await buyer(app, owner_engine, card="pm_card_chargeCustomerFail")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await purchase(callers.stub, who, house.name, 4)

    seen = failure(caught.value)
    assert (seen.code, seen.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_DECLINED")
    order_name = seen.error_info.metadata["order"]
    order = await payments.GetOrder(ppb.GetOrderRequest(name=order_name), metadata=who.metadata)
    assert order.state == ppb.ORDER_STATE_FAILED
    assert order.failure_reason
    seen_house = await callers.stub.GetHouse(pb.GetHouseRequest(name=house.name))
    assert seen_house.tickets_sold == 0
    assert seen_house.tickets_remaining == 10


async def _ineligible(app: App, owner_engine: AsyncEngine, case: str) -> Buyer:
    if case == "EMAIL_NOT_VERIFIED":
        return await buyer(app, owner_engine, card=None, verified=False)
    if case == "KYC_REQUIRED":
        return await buyer(app, owner_engine, card=None, kyc=KycStatus.PENDING)
    if case == "UNDERAGE":
        today = datetime.datetime.now(datetime.UTC).date()
        return await buyer(
            app, owner_engine, card=None, birth_date=today.replace(year=today.year - 17)
        )
    who = await buyer(app, owner_engine, card=None)
    async with owner_engine.begin() as connection:
        if case == "ACCOUNT_SUSPENDED":
            await connection.execute(
                update(User).where(User.id == who.user_id).values(status=UserStatus.SUSPENDED)
            )
        elif case == "SELF_EXCLUDED":
            await connection.execute(
                insert(SelfExclusion).values(
                    user_id=who.user_id, start_time=datetime.datetime.now(datetime.UTC)
                )
            )
        else:  # PLAY_LIMIT_EXCEEDED: a daily limit below one ticket's price
            await connection.execute(
                insert(PlayLimit).values(
                    user_id=who.user_id,
                    period=PlayLimitPeriod.DAILY,
                    amount_minor=1,
                    currency="EUR",
                )
            )
    return who


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("EMAIL_NOT_VERIFIED", grpc.StatusCode.FAILED_PRECONDITION),
        ("KYC_REQUIRED", grpc.StatusCode.FAILED_PRECONDITION),
        ("UNDERAGE", grpc.StatusCode.FAILED_PRECONDITION),
        ("ACCOUNT_SUSPENDED", grpc.StatusCode.FAILED_PRECONDITION),
        ("SELF_EXCLUDED", grpc.StatusCode.FAILED_PRECONDITION),
        ("PLAY_LIMIT_EXCEEDED", grpc.StatusCode.RESOURCE_EXHAUSTED),
    ],
)
async def test_each_buyer_check_has_its_own_reason_and_reserves_nothing(
    app: App, callers: Callers, owner_engine: AsyncEngine, case: str, code: grpc.StatusCode
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    who = await _ineligible(app, owner_engine, case)

    result = await reason_of(purchase(callers.stub, who, house.name, 1, saved_card=False))

    assert result == (code, case)
    seen = await callers.stub.GetHouse(pb.GetHouseRequest(name=house.name))
    assert seen.tickets_remaining == 10


async def test_house_state_and_caps_are_checked(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    upcoming = await published_house(callers, owner_engine)
    house = await active_house(callers, owner_engine, total=6)
    who = await buyer(app, owner_engine, card=None)

    not_open = await reason_of(purchase(callers.stub, who, upcoming.name, 1, saved_card=False))
    over_order_cap = await reason_of(purchase(callers.stub, who, house.name, 7, saved_card=False))
    await purchase(callers.stub, who, house.name, 5, saved_card=False)  # pending, holds 5
    other = await buyer(app, owner_engine, card=None)
    sold_out = await reason_of(purchase(callers.stub, other, house.name, 2, saved_card=False))

    over_user_cap = await reason_of(purchase(callers.stub, who, house.name, 2, saved_card=False))
    unknown_code = await reason_of(
        purchase(callers.stub, other, house.name, 1, saved_card=False, promotion_code="NOPE99")
    )
    not_my_card = await reason_of(
        callers.stub.PurchaseTickets(
            pb.PurchaseTicketsRequest(
                house=house.name,
                quantity=1,
                request_id=str(uuid.uuid4()),
                payment_method=f"users/me/paymentMethods/{uuid.uuid4()}",
            ),
            metadata=other.metadata,
        )
    )
    await force_state(app, owner_engine, house.name, HouseState.CLOSED)
    closed = await reason_of(purchase(callers.stub, other, house.name, 1, saved_card=False))

    assert not_open == (grpc.StatusCode.FAILED_PRECONDITION, "SALES_NOT_OPEN")
    assert over_order_cap == (grpc.StatusCode.INVALID_ARGUMENT, "QUANTITY_ABOVE_ORDER_CAP")
    assert sold_out == (grpc.StatusCode.RESOURCE_EXHAUSTED, "SOLD_OUT")
    assert over_user_cap == (grpc.StatusCode.RESOURCE_EXHAUSTED, "QUANTITY_ABOVE_USER_CAP")
    assert unknown_code == (grpc.StatusCode.FAILED_PRECONDITION, "PROMOTION_INVALID")
    assert not_my_card == (grpc.StatusCode.NOT_FOUND, "PAYMENT_METHOD_NOT_FOUND")
    assert closed == (grpc.StatusCode.FAILED_PRECONDITION, "SALES_CLOSED")


async def test_a_promotion_lowers_the_charge_and_a_full_refund_gives_its_use_back(
    app: App,
    callers: Callers,
    owner_engine: AsyncEngine,
    localstripe: LocalStripe,
    payments: payment_service_pb2_grpc.PaymentServiceAsyncStub,
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    code = f"TEN{uuid.uuid4().hex[:6].upper()}"
    promotion = await payments.CreatePromotion(
        ppb.CreatePromotionRequest(
            promotion=ppb.Promotion(code=code, percent_off_bps=1000, max_total_uses=1)
        ),
        metadata=callers.admin,
    )
    first, second = await buyer(app, owner_engine), await buyer(app, owner_engine, card=None)

    paid = (await purchase(callers.stub, first, house.name, 2, promotion_code=code.lower())).order
    exhausted = await reason_of(
        purchase(callers.stub, second, house.name, 2, saved_card=False, promotion_code=code)
    )

    price = house.lottery_terms.ticket_price.amount_minor
    assert paid.discount.amount_minor == 2 * price // 10
    assert paid.total.amount_minor == 2 * price - 2 * price // 10
    intent = await localstripe.get(f"/v1/payment_intents/{paid.provider_payment_reference}")
    assert intent["amount"] == paid.total.amount_minor
    assert exhausted == (grpc.StatusCode.RESOURCE_EXHAUSTED, "PROMOTION_EXHAUSTED")

    await payments.RefundOrder(
        ppb.RefundOrderRequest(name=paid.name, reason="test", request_id=str(uuid.uuid4())),
        metadata=callers.admin,
    )
    again = await purchase(
        callers.stub, second, house.name, 2, saved_card=False, promotion_code=code
    )
    assert again.order.promotion_code == code
    seen = await payments.GetPromotion(
        ppb.GetPromotionRequest(name=promotion.name), metadata=callers.admin
    )
    assert seen.uses_count == 1


async def test_fulfilment_is_audited_from_the_pending_state(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=5)
    who = await buyer(app, owner_engine)
    order = (await purchase(callers.stub, who, house.name, 1)).order

    async with app.deps.database.session(system=True) as session:
        before = await session.scalar(
            select(AuditLog.before).where(
                AuditLog.action == "payment.order.fulfil", AuditLog.resource_name == order.name
            )
        )

    assert before == {"state": "PENDING_PAYMENT"}
