"""StripeWebhook: deliveries signed like Stripe's are applied once, in any order; a bad or stale
signature is refused and changes nothing."""

from __future__ import annotations

import json
import time
import uuid

import grpc
import pytest
from google.api import httpbody_pb2
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.payment.v1 import payment_service_pb2 as ppb
from amesa.payment.v1 import payment_service_pb2_grpc
from server.app import App
from server.payment.models import ProviderEvent
from server.payment.providers.webhooks import sign_stripe_payload
from tests.conftest import STRIPE_WEBHOOK_SECRET
from tests.lottery.conftest import Callers, active_house
from tests.payment.localstripe import LocalStripe
from tests.payment.support import buyer, purchase
from tests.support import failure


def event(event_type: str, object_id: str, *, event_id: str | None = None) -> bytes:
    body = {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": {"id": object_id, "object": event_type.split(".", maxsplit=1)[0]}},
    }
    return json.dumps(body).encode()


async def deliver(
    payments: payment_service_pb2_grpc.PaymentServiceAsyncStub,
    payload: bytes,
    *,
    secret: str = STRIPE_WEBHOOK_SECRET,
    timestamp: int | None = None,
    signature: str | None = None,
) -> None:
    header = signature or sign_stripe_payload(payload, secret, timestamp or int(time.time()))
    await payments.StripeWebhook(
        ppb.StripeWebhookRequest(
            payload=httpbody_pb2.HttpBody(content_type="application/json", data=payload)
        ),
        metadata=(("stripe-signature", header),),
    )


async def stored_events(app: App, event_id: str) -> int:
    async with app.deps.database.session(system=True) as session:
        count = await session.scalar(select(func.count()).where(ProviderEvent.event_id == event_id))
    return int(count or 0)


async def pending_paid_at_stripe(
    app: App, callers: Callers, owner_engine: AsyncEngine, localstripe: LocalStripe
) -> tuple[ppb.Order, tuple[tuple[str, str | bytes], ...]]:
    """An order the buyer paid with Stripe.js, of which the server knows nothing yet."""
    house = await active_house(callers, owner_engine, total=10)
    who = await buyer(app, owner_engine, card=None)
    order = (await purchase(callers.stub, who, house.name, 2, saved_card=False)).order
    path = f"/v1/payment_intents/{order.provider_payment_reference}"
    assert (await localstripe.request("POST", path, {"payment_method": "pm_card_visa"})).is_success
    assert (await localstripe.request("POST", f"{path}/confirm")).is_success
    return order, who.metadata


async def test_a_succeeded_event_fulfils_once_however_often_and_late_it_arrives(
    app: App,
    callers: Callers,
    owner_engine: AsyncEngine,
    localstripe: LocalStripe,
    payments: payment_service_pb2_grpc.PaymentServiceAsyncStub,
) -> None:
    order, metadata = await pending_paid_at_stripe(app, callers, owner_engine, localstripe)
    reference = order.provider_payment_reference
    succeeded = event("payment_intent.succeeded", reference, event_id=f"evt_{uuid.uuid4().hex}")
    created_late = event("payment_intent.created", reference)

    await deliver(payments, succeeded)
    await deliver(payments, succeeded)  # duplicate delivery
    await deliver(payments, created_late)  # an older event arriving after

    paid = await payments.GetOrder(ppb.GetOrderRequest(name=order.name), metadata=metadata)
    assert paid.state == ppb.ORDER_STATE_PAID
    assert list(paid.ticket_numbers) == [1, 2]
    assert await stored_events(app, json.loads(succeeded)["id"]) == 1
    listed = await payments.ListTransactions(
        ppb.ListTransactionsRequest(parent="users/me"), metadata=metadata
    )
    assert [t.state for t in listed.transactions] == [ppb.TRANSACTION_STATE_SUCCEEDED]


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("wrong secret", "SIGNATURE_INVALID"),
        ("no header", "SIGNATURE_INVALID"),
        ("tampered body", "SIGNATURE_INVALID"),
        ("stale", "SIGNATURE_STALE"),
        ("future", "SIGNATURE_STALE"),
    ],
)
async def test_a_bad_or_stale_signature_is_refused_and_changes_nothing(  # noqa: PLR0917
    app: App,
    callers: Callers,
    owner_engine: AsyncEngine,
    localstripe: LocalStripe,
    payments: payment_service_pb2_grpc.PaymentServiceAsyncStub,
    how: str,
    reason: str,
) -> None:
    order, metadata = await pending_paid_at_stripe(app, callers, owner_engine, localstripe)
    payload = event("payment_intent.succeeded", order.provider_payment_reference)
    now = int(time.time())
    signature = {
        "wrong secret": sign_stripe_payload(payload, "whsec_not_ours", now),
        "no header": "",
        "tampered body": sign_stripe_payload(
            payload.replace(b"event", b"evenT"), STRIPE_WEBHOOK_SECRET, now
        ),
        "stale": sign_stripe_payload(payload, STRIPE_WEBHOOK_SECRET, now - 301),
        "future": sign_stripe_payload(payload, STRIPE_WEBHOOK_SECRET, now + 301),
    }[how]

    call = (
        payments.StripeWebhook(
            ppb.StripeWebhookRequest(payload=httpbody_pb2.HttpBody(data=payload))
        )
        if how == "no header"
        else deliver(payments, payload, signature=signature)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call

    seen = failure(caught.value)
    assert (seen.code, seen.reason) == (grpc.StatusCode.UNAUTHENTICATED, reason)
    assert await stored_events(app, json.loads(payload)["id"]) == 0
    still = await payments.GetOrder(ppb.GetOrderRequest(name=order.name), metadata=metadata)
    assert still.state == ppb.ORDER_STATE_PENDING_PAYMENT
