"""PayPal orders end to end over the real channel, against a server configured for the local
PayPal stand-in: CreatePayPalOrder → the buyer approves at PayPal → CapturePayPalOrder → PAID;
declines, webhooks applied once, refused deliveries, ownership, switching from Stripe, refunds."""

from __future__ import annotations

import asyncio
import datetime
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import grpc
import httpx
import pytest
import pytest_asyncio
from google.api import httpbody_pb2
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as lpb
from amesa.lottery.v1 import lottery_service_pb2_grpc
from amesa.payment.v1 import payment_service_pb2 as pb
from amesa.payment.v1 import payment_service_pb2_grpc
from amesa.type.v1 import money_pb2
from server.app import App
from server.core.settings import Settings
from server.lottery.lifecycle import utcnow
from server.payment import orders
from server.payment.invariants import check_invariants
from server.payment.models import (
    Order,
    OrderState,
    PaymentProvider,
    ProviderEvent,
    Transaction,
    TransactionKind,
    TransactionState,
)
from server.payment.paypal_flow import PayPalFlow, capture_request_id, send_paypal_refund
from server.payment.providers.paypal import PayPalClient
from tests.lottery.conftest import Callers, active_house
from tests.payment.localstripe import LocalStripe
from tests.payment.paypal_standin import CLIENT_ID, CLIENT_SECRET, WEBHOOK_ID, PayPalStandIn
from tests.payment.support import Buyer, buyer, purchase
from tests.payment.test_stripe_webhook import deliver as deliver_stripe
from tests.payment.test_stripe_webhook import event as stripe_event
from tests.support import failure, separate_server


@dataclass(frozen=True)
class PayPalServer:
    app: App
    lottery: lottery_service_pb2_grpc.LotteryServiceAsyncStub
    payments: payment_service_pb2_grpc.PaymentServiceAsyncStub
    standin: PayPalStandIn


@pytest_asyncio.fixture(loop_scope="session", name="paypal")
async def paypal_fixture(
    settings: Settings, paypal_standin: PayPalStandIn
) -> AsyncIterator[PayPalServer]:
    """A server whose gateways reach the stand-in (the shared one has PayPal disabled)."""
    payment = replace(
        settings.payment,
        paypal_client_id=CLIENT_ID,
        paypal_client_secret=CLIENT_SECRET,
        paypal_base_url=paypal_standin.base_url,
        paypal_webhook_id=WEBHOOK_ID,
    )
    async with (
        separate_server(settings, payment=payment) as app,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel,
    ):
        yield PayPalServer(
            app=app,
            lottery=lottery_service_pb2_grpc.LotteryServiceStub(channel),
            payments=payment_service_pb2_grpc.PaymentServiceStub(channel),
            standin=paypal_standin,
        )


def order_id(order: pb.Order) -> uuid.UUID:
    return uuid.UUID(order.name.split("/")[-1])


async def paypal_purchase(
    paypal: PayPalServer, who: Buyer, house: lpb.House, quantity: int
) -> pb.Order:
    response = await paypal.lottery.PurchaseTickets(
        lpb.PurchaseTicketsRequest(
            house=house.name,
            quantity=quantity,
            request_id=str(uuid.uuid4()),
            provider=pb.PAYMENT_PROVIDER_PAYPAL,
        ),
        metadata=who.metadata,
    )
    assert response.order.provider_payment_reference == ""
    return response.order


async def create(paypal: PayPalServer, who: Buyer, order: pb.Order) -> pb.CreatePayPalOrderResponse:
    response: pb.CreatePayPalOrderResponse = await paypal.payments.CreatePayPalOrder(
        pb.CreatePayPalOrderRequest(name=order.name), metadata=who.metadata
    )
    return response


async def capture(paypal: PayPalServer, who: Buyer, order: pb.Order) -> pb.Order:
    captured: pb.Order = await paypal.payments.CapturePayPalOrder(
        pb.CapturePayPalOrderRequest(name=order.name), metadata=who.metadata
    )
    return captured


async def approve(approval_url: str) -> None:
    """What the buyer does on PayPal's page."""
    async with httpx.AsyncClient() as client:
        assert (await client.get(approval_url)).is_success


async def remaining(paypal: PayPalServer, house: lpb.House) -> int:
    seen = await paypal.lottery.GetHouse(lpb.GetHouseRequest(name=house.name))
    return seen.tickets_remaining


async def charge_of(app: App, order: pb.Order) -> Transaction:
    async with app.deps.database.session(system=True) as session:
        charge = await session.scalar(
            select(Transaction).where(
                Transaction.order_id == order_id(order),
                Transaction.kind == TransactionKind.CHARGE,
            )
        )
    assert charge is not None
    return charge


async def test_paypal_order_is_approved_captured_and_paid_with_tickets(
    callers: Callers, owner_engine: AsyncEngine, paypal: PayPalServer
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    who = await buyer(paypal.app, owner_engine, card=None)
    order = await paypal_purchase(paypal, who, house, 3)

    created = await create(paypal, who, order)
    again = await create(paypal, who, order)
    await approve(created.approval_url)
    paid = await capture(paypal, who, order)

    reference = created.order.provider_payment_reference
    assert created.order.state == pb.ORDER_STATE_PENDING_PAYMENT
    assert created.order.provider == pb.PAYMENT_PROVIDER_PAYPAL
    assert reference in paypal.standin.orders
    assert created.approval_url.endswith(f"token={reference}")
    assert again.order.provider_payment_reference == reference
    assert again.approval_url == created.approval_url
    assert len(paypal.standin.orders) == 1
    unit = paypal.standin.orders[reference]["purchase_units"][0]
    assert unit["reference_id"] == str(order_id(order))
    assert unit["amount"] == {"currency_code": "EUR", "value": "30.00"}
    assert paid.state == pb.ORDER_STATE_PAID
    assert list(paid.ticket_numbers) == [1, 2, 3]
    assert paid.provider_payment_reference == reference
    assert await remaining(paypal, house) == 7
    (capture_id,) = paypal.standin.captures
    charge = await charge_of(paypal.app, order)
    assert charge.state is TransactionState.SUCCEEDED
    assert charge.provider is PaymentProvider.PAYPAL
    assert charge.provider_reference == capture_id
    assert charge.provider_payment_reference == reference
    house_id = uuid.UUID(house.name.split("/")[1])
    assert (
        await check_invariants(paypal.app.deps.database, gateway=None, house_ids=[house_id]) == []
    )


async def test_capture_before_approval_is_paypal_order_not_approved(
    callers: Callers, owner_engine: AsyncEngine, paypal: PayPalServer
) -> None:
    house = await active_house(callers, owner_engine, total=5)
    who = await buyer(paypal.app, owner_engine, card=None)
    order = await paypal_purchase(paypal, who, house, 1)

    with pytest.raises(grpc.aio.AioRpcError) as not_created:
        await capture(paypal, who, order)
    created = await create(paypal, who, order)
    with pytest.raises(grpc.aio.AioRpcError) as not_approved:
        await capture(paypal, who, order)
    await approve(created.approval_url)
    paid = await capture(paypal, who, order)

    assert not_created.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert failure(not_created.value).reason == "PAYPAL_ORDER_NOT_CREATED"
    assert not_approved.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert failure(not_approved.value).reason == "PAYPAL_ORDER_NOT_APPROVED"
    assert paid.state == pb.ORDER_STATE_PAID


async def test_capturing_twice_returns_the_same_order_and_captures_once(
    callers: Callers, owner_engine: AsyncEngine, paypal: PayPalServer
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    who = await buyer(paypal.app, owner_engine, card=None)
    order = await paypal_purchase(paypal, who, house, 2)
    await approve((await create(paypal, who, order)).approval_url)

    racing = await asyncio.gather(*(capture(paypal, who, order) for _ in range(3)))
    later = await capture(paypal, who, order)

    assert {o.state for o in [*racing, later]} == {pb.ORDER_STATE_PAID}
    assert {tuple(o.ticket_numbers) for o in [*racing, later]} == {(1, 2)}
    assert len(paypal.standin.captures) == 1
    capture_calls = [path for method, path in paypal.standin.requests if path.endswith("/capture")]
    # The later call finds the order PAID and does not ask PayPal again.
    assert len(capture_calls) <= 3
    assert await remaining(paypal, house) == 8


async def test_a_declined_funding_source_keeps_the_order_until_the_buyer_picks_another(
    callers: Callers, owner_engine: AsyncEngine, paypal: PayPalServer
) -> None:
    house = await active_house(callers, owner_engine, total=5)
    who = await buyer(paypal.app, owner_engine, card=None)
    order = await paypal_purchase(paypal, who, house, 4)
    created = await create(paypal, who, order)
    await approve(created.approval_url)
    paypal.standin.decline(created.order.provider_payment_reference)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await capture(paypal, who, order)
    pending = await paypal.payments.GetOrder(
        pb.GetOrderRequest(name=order.name), metadata=who.metadata
    )
    held = await remaining(paypal, house)
    await approve(created.approval_url)  # back on PayPal's page, another funding source
    paid = await capture(paypal, who, order)

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert failure(caught.value).reason == "PAYMENT_DECLINED"
    assert failure(caught.value).error_info.metadata["provider_code"] == "INSTRUMENT_DECLINED"
    assert pending.state == pb.ORDER_STATE_PENDING_PAYMENT
    assert held == 1
    assert paid.state == pb.ORDER_STATE_PAID
    assert len(paid.ticket_numbers) == 4
    assert len(paypal.standin.captures) == 1


def capture_event(
    standin: PayPalStandIn, paypal_order_id: str, event_type: str
) -> dict[str, object]:
    """PayPal's event about the order's capture, with the capture as its resource."""
    order = standin.orders[paypal_order_id]
    unit = order["purchase_units"][0]
    (captured,) = unit["payments"]["captures"]
    resource = {
        **captured,
        "custom_id": unit["custom_id"],
        "supplementary_data": {"related_ids": {"order_id": paypal_order_id}},
    }
    return standin.event(event_type, resource)


async def deliver(paypal: PayPalServer, headers: dict[str, str], body: bytes) -> None:
    await paypal.payments.PayPalWebhook(
        pb.PayPalWebhookRequest(
            payload=httpbody_pb2.HttpBody(content_type="application/json", data=body)
        ),
        metadata=tuple(
            (name.lower(), value) for name, value in headers.items() if name != "Content-Type"
        ),
    )


async def inbox(app: App, event_id: str) -> list[ProviderEvent]:
    async with app.deps.database.session(system=True) as session:
        rows = await session.scalars(
            select(ProviderEvent).where(ProviderEvent.event_id == event_id)
        )
        return list(rows.all())


async def captured_elsewhere(paypal: PayPalServer, order: pb.Order, reference: str) -> None:
    """The capture happened at PayPal, but its answer never reached the server."""
    async with PayPalClient(paypal.standin.base_url, CLIENT_ID, CLIENT_SECRET) as client:
        await client.capture_order(reference, request_id=capture_request_id(order_id(order)))


async def test_capture_completed_webhook_fulfils_the_order_once(
    callers: Callers, owner_engine: AsyncEngine, paypal: PayPalServer
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    who = await buyer(paypal.app, owner_engine, card=None)
    order = await paypal_purchase(paypal, who, house, 2)
    created = await create(paypal, who, order)
    reference = created.order.provider_payment_reference
    await approve(created.approval_url)
    await captured_elsewhere(paypal, order, reference)
    event = capture_event(paypal.standin, reference, "PAYMENT.CAPTURE.COMPLETED")
    headers, body = paypal.standin.sign_webhook(event)

    await deliver(paypal, headers, body)
    paid = await paypal.payments.GetOrder(
        pb.GetOrderRequest(name=order.name), metadata=who.metadata
    )
    await deliver(paypal, headers, body)
    await deliver(paypal, *paypal.standin.sign_webhook({**event, "id": "WH-REDELIVERED-1"}))
    after_capture = await capture(paypal, who, order)

    assert paid.state == pb.ORDER_STATE_PAID
    assert list(paid.ticket_numbers) == [1, 2]
    assert list(after_capture.ticket_numbers) == [1, 2]
    assert await remaining(paypal, house) == 8
    (stored,) = await inbox(paypal.app, str(event["id"]))
    assert stored.provider is PaymentProvider.PAYPAL
    assert stored.process_time is not None
    assert stored.attempt_count == 1
    async with paypal.app.deps.database.session(system=True) as session:
        ledger_rows = await session.scalar(
            select(func.count())
            .select_from(Transaction)
            .where(Transaction.order_id == order_id(order))
        )
    assert ledger_rows == 1
    house_id = uuid.UUID(house.name.split("/")[1])
    assert (
        await check_invariants(paypal.app.deps.database, gateway=None, house_ids=[house_id]) == []
    )


async def test_badly_signed_or_stale_webhook_is_refused_and_changes_nothing(
    callers: Callers, owner_engine: AsyncEngine, paypal: PayPalServer
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    who = await buyer(paypal.app, owner_engine, card=None)
    order = await paypal_purchase(paypal, who, house, 2)
    created = await create(paypal, who, order)
    reference = created.order.provider_payment_reference
    await approve(created.approval_url)
    await captured_elsewhere(paypal, order, reference)
    event = capture_event(paypal.standin, reference, "PAYMENT.CAPTURE.COMPLETED")
    headers, body = paypal.standin.sign_webhook(event)
    tampered = json.dumps({**event, "summary": "changed in transit"}).encode()
    old = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=301)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    stale = headers | {
        "PAYPAL-TRANSMISSION-TIME": old,
        "PAYPAL-TRANSMISSION-SIG": paypal.standin._signature(
            headers["PAYPAL-TRANSMISSION-ID"], old, WEBHOOK_ID, event
        ),
    }
    unsigned = {k: v for k, v in headers.items() if k != "PAYPAL-TRANSMISSION-SIG"}
    foreign_cert = headers | {"PAYPAL-CERT-URL": "https://certs.example.com/cert.pem"}
    other_hook = paypal.standin.sign_webhook(event, webhook_id="ANOTHER-WEBHOOK")[0]

    refused = {}
    for label, (sent_headers, sent_body) in {
        "tampered": (headers, tampered),
        "stale": (stale, body),
        "unsigned": (unsigned, body),
        "foreign_cert": (foreign_cert, body),
        "other_hook": (other_hook, body),
        "not_json": (headers, b"not json"),
    }.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await deliver(paypal, sent_headers, sent_body)
        refused[label] = (caught.value.code(), failure(caught.value).reason)
    seen = await paypal.payments.GetOrder(
        pb.GetOrderRequest(name=order.name), metadata=who.metadata
    )

    invalid = (grpc.StatusCode.UNAUTHENTICATED, "SIGNATURE_INVALID")
    assert refused == {
        "tampered": invalid,
        "stale": (grpc.StatusCode.UNAUTHENTICATED, "SIGNATURE_STALE"),
        "unsigned": invalid,
        "foreign_cert": invalid,
        "other_hook": invalid,
        "not_json": invalid,
    }
    assert seen.state == pb.ORDER_STATE_PENDING_PAYMENT
    assert await inbox(paypal.app, str(event["id"])) == []
    assert await remaining(paypal, house) == 8


async def test_capture_denied_webhook_fails_the_order_only_when_paypal_says_so(
    callers: Callers, owner_engine: AsyncEngine, paypal: PayPalServer
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    who = await buyer(paypal.app, owner_engine, card=None)
    order = await paypal_purchase(paypal, who, house, 1)
    created = await create(paypal, who, order)
    reference = created.order.provider_payment_reference
    await approve(created.approval_url)
    await captured_elsewhere(paypal, order, reference)
    # A forged-looking (but validly delivered) DENIED about a capture PayPal has COMPLETED: the
    # server re-reads PayPal, which says the opposite, so the order is fulfilled, not failed.
    event = capture_event(paypal.standin, reference, "PAYMENT.CAPTURE.DENIED")

    await deliver(paypal, *paypal.standin.sign_webhook(event))

    seen = await paypal.payments.GetOrder(
        pb.GetOrderRequest(name=order.name), metadata=who.metadata
    )
    assert seen.state == pb.ORDER_STATE_PAID


async def test_another_user_cannot_create_or_capture_your_paypal_order(
    callers: Callers, owner_engine: AsyncEngine, paypal: PayPalServer
) -> None:
    house = await active_house(callers, owner_engine, total=5)
    who = await buyer(paypal.app, owner_engine, card=None)
    other = await buyer(paypal.app, owner_engine, card=None)
    order = await paypal_purchase(paypal, who, house, 1)
    as_me = pb.Order(name=f"users/me/orders/{order_id(order)}")

    reasons = []
    for call in (
        create(paypal, other, order),
        capture(paypal, other, order),
        create(paypal, other, as_me),
        capture(paypal, other, as_me),
        create(paypal, Buyer(user_id=callers.user_id, metadata=callers.admin), order),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        reasons.append((caught.value.code(), failure(caught.value).reason))

    assert reasons == [
        (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER"),
        (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER"),
        (grpc.StatusCode.NOT_FOUND, "ORDER_NOT_FOUND"),
        (grpc.StatusCode.NOT_FOUND, "ORDER_NOT_FOUND"),
        (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER"),
    ]
    assert paypal.standin.orders == {}


async def test_create_refuses_foreign_redirects_settled_orders_and_disabled_paypal(
    callers: Callers,
    owner_engine: AsyncEngine,
    paypal: PayPalServer,
    payments: payment_service_pb2_grpc.PaymentServiceAsyncStub,
    settings: Settings,
) -> None:
    house = await active_house(callers, owner_engine, total=5)
    who = await buyer(paypal.app, owner_engine, card=None)
    order = await paypal_purchase(paypal, who, house, 1)
    base = settings.notify.web_base_url

    with pytest.raises(grpc.aio.AioRpcError) as foreign:
        await paypal.payments.CreatePayPalOrder(
            pb.CreatePayPalOrderRequest(
                name=order.name, return_url="https://evil.example/paid", cancel_url=f"{base}/c"
            ),
            metadata=who.metadata,
        )
    with pytest.raises(grpc.aio.AioRpcError) as disabled:
        await payments.CreatePayPalOrder(
            pb.CreatePayPalOrderRequest(name=order.name), metadata=who.metadata
        )
    allowed = await paypal.payments.CreatePayPalOrder(
        pb.CreatePayPalOrderRequest(
            name=order.name, return_url=f"{base}/checkout/done", cancel_url=f"{base}/checkout"
        ),
        metadata=who.metadata,
    )
    await paypal.payments.CancelOrder(pb.CancelOrderRequest(name=order.name), metadata=who.metadata)
    with pytest.raises(grpc.aio.AioRpcError) as cancelled:
        await create(paypal, who, order)

    assert foreign.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failure(foreign.value).reason == "REDIRECT_URL_NOT_ALLOWED"
    assert [v.field for v in failure(foreign.value).field_violations] == ["return_url"]
    assert failure(disabled.value).reason == "PROVIDER_DISABLED"
    assert allowed.approval_url
    assert failure(cancelled.value).reason == "ORDER_NOT_PENDING"
    assert failure(cancelled.value).error_info.metadata["state"] == "CANCELLED"


async def test_an_order_started_with_stripe_switches_to_paypal(
    callers: Callers,
    owner_engine: AsyncEngine,
    paypal: PayPalServer,
    localstripe: LocalStripe,
) -> None:
    house = await active_house(callers, owner_engine, total=5)
    who = await buyer(paypal.app, owner_engine, card=None)
    order = (await purchase(paypal.lottery, who, house.name, 2, saved_card=False)).order
    intent_id = order.provider_payment_reference

    created = await create(paypal, who, order)
    await approve(created.approval_url)
    paid = await capture(paypal, who, order)

    assert intent_id.startswith("pi_")
    intent = await localstripe.get(f"/v1/payment_intents/{intent_id}")
    assert intent["status"] == "canceled"
    assert created.order.provider == pb.PAYMENT_PROVIDER_PAYPAL
    assert created.order.provider_payment_reference in paypal.standin.orders
    assert paid.state == pb.ORDER_STATE_PAID
    charge = await charge_of(paypal.app, order)
    assert charge.provider is PaymentProvider.PAYPAL
    assert charge.state is TransactionState.SUCCEEDED
    house_id = uuid.UUID(house.name.split("/")[1])
    assert (
        await check_invariants(paypal.app.deps.database, gateway=None, house_ids=[house_id]) == []
    )


async def test_paypal_refunds_are_sent_by_capture_with_the_refund_key(
    callers: Callers, owner_engine: AsyncEngine, paypal: PayPalServer
) -> None:
    house = await active_house(callers, owner_engine, total=5)
    who = await buyer(paypal.app, owner_engine, card=None)
    order = await paypal_purchase(paypal, who, house, 2)
    await approve((await create(paypal, who, order)).approval_url)
    await capture(paypal, who, order)
    partial = await paypal.payments.RefundOrder(
        pb.RefundOrderRequest(
            name=order.name,
            amount=money_pb2.Money(currency_code="EUR", amount_minor=500),
            reason="goodwill",
            request_id=str(uuid.uuid4()),
        ),
        metadata=callers.admin,
    )
    async with paypal.app.deps.database.session(system=True) as session:
        refund = await session.scalar(
            select(Transaction).where(
                Transaction.order_id == order_id(order), Transaction.kind == TransactionKind.REFUND
            )
        )
    assert refund is not None

    sent = await send_paypal_refund(paypal.app.deps.gateways, refund)
    again = await send_paypal_refund(paypal.app.deps.gateways, refund)

    assert partial.order.state == pb.ORDER_STATE_PARTIALLY_REFUNDED
    assert sent is not None
    assert sent["state"] is TransactionState.SUCCEEDED
    assert again == sent  # PayPal replays the first answer for the same key
    (captured,) = paypal.standin.captures.values()
    assert (captured.status, str(captured.refunded)) == ("PARTIALLY_REFUNDED", "5.00")
    async with paypal.app.deps.database.session(system=True) as session:
        state = await session.scalar(select(Order.state).where(Order.id == order_id(order)))
    assert state is OrderState.PARTIALLY_REFUNDED


async def test_reconciler_fulfils_a_capture_whose_answer_and_webhook_were_lost(
    callers: Callers, owner_engine: AsyncEngine, paypal: PayPalServer
) -> None:
    house = await active_house(callers, owner_engine, total=5)
    who = await buyer(paypal.app, owner_engine, card=None)
    order = await paypal_purchase(paypal, who, house, 2)
    waiting = await paypal_purchase(paypal, who, house, 1)
    created = await create(paypal, who, order)
    await create(paypal, who, waiting)
    await approve(created.approval_url)
    await captured_elsewhere(paypal, order, created.order.provider_payment_reference)

    looked_at = await PayPalFlow(paypal.app.deps).reconcile(older_than=datetime.timedelta(0))

    seen = await paypal.payments.GetOrder(
        pb.GetOrderRequest(name=order.name), metadata=who.metadata
    )
    still = await paypal.payments.GetOrder(
        pb.GetOrderRequest(name=waiting.name), metadata=who.metadata
    )
    assert looked_at >= 2
    assert seen.state == pb.ORDER_STATE_PAID
    assert list(seen.ticket_numbers) == [1, 2]
    assert still.state == pb.ORDER_STATE_PENDING_PAYMENT


async def test_webhook_adopts_a_paypal_order_whose_id_was_never_stored(
    callers: Callers, owner_engine: AsyncEngine, paypal: PayPalServer
) -> None:
    house = await active_house(callers, owner_engine, total=5)
    who = await buyer(paypal.app, owner_engine, card=None)
    order = await paypal_purchase(paypal, who, house, 1)
    # CreatePayPalOrder's PayPal call went through, then the process died before storing the id.
    async with PayPalClient(paypal.standin.base_url, CLIENT_ID, CLIENT_SECRET) as client:
        made = await client.create_order(
            amount_minor=1000,
            currency="EUR",
            reference_id=str(order_id(order)),
            request_id=str(order_id(order)),
        )
    paypal.standin.approve(made.id)
    await captured_elsewhere(paypal, order, made.id)
    # Found by its custom_id (our order id): no order has the PayPal order id yet.
    event = capture_event(paypal.standin, made.id, "PAYMENT.CAPTURE.COMPLETED")

    await deliver(paypal, *paypal.standin.sign_webhook(event))

    seen = await paypal.payments.GetOrder(
        pb.GetOrderRequest(name=order.name), metadata=who.metadata
    )
    assert seen.state == pb.ORDER_STATE_PAID
    assert seen.provider_payment_reference == made.id


async def test_webhook_that_is_no_paypal_event_or_reaches_a_server_without_paypal_is_refused(
    callers: Callers,
    paypal: PayPalServer,
    payments: payment_service_pb2_grpc.PaymentServiceAsyncStub,
) -> None:
    not_an_event = {"id": "WH-NOT-AN-EVENT", "event_type": "PAYMENT.CAPTURE.COMPLETED"}
    headers, body = paypal.standin.sign_webhook(not_an_event)

    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await deliver(paypal, headers, body)
    with pytest.raises(grpc.aio.AioRpcError) as disabled:
        await payments.PayPalWebhook(
            pb.PayPalWebhookRequest(
                payload=httpbody_pb2.HttpBody(content_type="application/json", data=body)
            ),
            metadata=tuple((k.lower(), v) for k, v in headers.items() if k != "Content-Type"),
        )

    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failure(invalid.value).reason == "PAYLOAD_INVALID"
    assert disabled.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert failure(disabled.value).reason == "PROVIDER_DISABLED"
    assert await inbox(paypal.app, "WH-NOT-AN-EVENT") == []


async def test_capture_after_the_reservation_went_is_refunded_by_capture_id(
    callers: Callers, owner_engine: AsyncEngine, paypal: PayPalServer
) -> None:
    house = await active_house(callers, owner_engine, total=2)
    late = await buyer(paypal.app, owner_engine, card=None)
    rival = await buyer(paypal.app, owner_engine, card=None)
    order = await paypal_purchase(paypal, late, house, 2)
    created = await create(paypal, late, order)
    await approve(created.approval_url)
    async with paypal.app.deps.database.session(system=True) as session:
        await orders.release(
            session,
            order_id=order_id(order),
            state=OrderState.EXPIRED,
            failure_reason=None,
            now=utcnow(),
        )
    await paypal_purchase(paypal, rival, house, 2)  # the last tickets are held by someone else
    reference = created.order.provider_payment_reference
    await captured_elsewhere(paypal, order, reference)
    await deliver(
        paypal,
        *paypal.standin.sign_webhook(
            capture_event(paypal.standin, reference, "PAYMENT.CAPTURE.COMPLETED")
        ),
    )
    async with paypal.app.deps.database.session(system=True) as session:
        refund = await session.scalar(
            select(Transaction).where(
                Transaction.order_id == order_id(order), Transaction.kind == TransactionKind.REFUND
            )
        )
    assert refund is not None

    sent = await send_paypal_refund(paypal.app.deps.gateways, refund)

    seen = await paypal.payments.GetOrder(
        pb.GetOrderRequest(name=order.name), metadata=late.metadata
    )
    (captured,) = paypal.standin.captures.values()
    assert seen.state == pb.ORDER_STATE_REFUNDED
    assert list(seen.ticket_numbers) == []
    assert refund.provider_payment_reference == captured.id
    assert refund.amount_minor == 2000
    assert sent is not None
    assert sent["state"] is TransactionState.SUCCEEDED
    assert captured.status == "REFUNDED"


async def test_stripe_cancellation_webhook_leaves_a_switched_order_alone(
    callers: Callers, owner_engine: AsyncEngine, paypal: PayPalServer
) -> None:
    house = await active_house(callers, owner_engine, total=5)
    who = await buyer(paypal.app, owner_engine, card=None)
    order = (await purchase(paypal.lottery, who, house.name, 2, saved_card=False)).order
    await create(paypal, who, order)

    # Stripe announces the cancellation CreatePayPalOrder asked for.
    await deliver_stripe(
        paypal.payments, stripe_event("payment_intent.canceled", order.provider_payment_reference)
    )

    seen = await paypal.payments.GetOrder(
        pb.GetOrderRequest(name=order.name), metadata=who.metadata
    )
    assert seen.state == pb.ORDER_STATE_PENDING_PAYMENT
