"""The money path through Envoy's JSON/REST edge, as the web app drives it: save a card
(SetupIntent, confirmed in the browser, saved by Stripe's webhook through Envoy), buy tickets
with it, read the order and the ledger, and an admin refunds — all against localstripe."""

from __future__ import annotations

import json
import time
import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from server.app import App
from server.payment.providers.webhooks import sign_stripe_payload
from tests.conftest import STRIPE_WEBHOOK_SECRET
from tests.lottery.conftest import Callers, active_house
from tests.payment.localstripe import LocalStripe
from tests.payment.support import buyer


async def test_save_a_card_buy_tickets_and_get_refunded_over_json(
    app: App, envoy: str, callers: Callers, owner_engine: AsyncEngine, localstripe: LocalStripe
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    who = await buyer(app, owner_engine, card=None)
    bearer = {key: str(value) for key, value in who.metadata}  # {"authorization": "Bearer …"}
    admin = {key: str(value) for key, value in callers.admin}
    async with httpx.AsyncClient(base_url=envoy, timeout=20) as client:
        setup = await client.post(
            "/v1/users/me/paymentMethods:setupIntent", json={}, headers=bearer
        )
        assert setup.status_code == 200, setup.text
        secret = setup.json()["clientSecret"]
        setup_id = secret.split("_secret_")[0]
        # Stripe.js confirmCardSetup in the browser:
        confirmed = await localstripe.request(
            "POST",
            f"/v1/setup_intents/{setup_id}/confirm",
            {"client_secret": secret, "payment_method": "pm_card_visa"},
        )
        assert confirmed.is_success, confirmed.text
        # Stripe's webhook, raw body and signature header, through Envoy:
        body = json.dumps(
            {
                "id": f"evt_{uuid.uuid4().hex}",
                "object": "event",
                "type": "setup_intent.succeeded",
                "data": {"object": {"id": setup_id, "object": "setup_intent"}},
            }
        ).encode()
        delivered = await client.post(
            "/v1/webhooks/stripe",
            content=body,
            headers={
                "content-type": "application/json",
                "stripe-signature": sign_stripe_payload(
                    body, STRIPE_WEBHOOK_SECRET, int(time.time())
                ),
            },
        )
        assert delivered.status_code == 200, delivered.text
        methods = await client.get("/v1/users/me/paymentMethods", headers=bearer)
        assert methods.status_code == 200, methods.text
        (card,) = methods.json()["paymentMethods"]
        assert card["last4"] == "4242"

        bought = await client.post(
            f"/v1/{house.name}:purchaseTickets",
            json={"quantity": 2, "requestId": str(uuid.uuid4()), "paymentMethod": card["name"]},
            headers=bearer,
        )
        assert bought.status_code == 200, bought.text
        order = bought.json()["order"]
        assert order["state"] == "ORDER_STATE_PAID"
        assert [t["number"] for t in bought.json()["tickets"]] == [1, 2]

        listed = await client.get("/v1/users/me/orders", headers=bearer)
        assert [o["name"] for o in listed.json()["orders"]] == [order["name"]]
        ledger = await client.get("/v1/users/me/transactions", headers=bearer)
        assert [t["state"] for t in ledger.json()["transactions"]] == [
            "TRANSACTION_STATE_SUCCEEDED"
        ]
        refund = await client.post(
            f"/v1/{order['name']}:refund",
            json={"reason": "changed my mind", "requestId": str(uuid.uuid4())},
            headers=admin,
        )
        assert refund.status_code == 200, refund.text
        assert refund.json()["order"]["state"] == "ORDER_STATE_REFUNDED"
        assert refund.json()["transaction"]["state"] == "TRANSACTION_STATE_SUCCEEDED"
        forbidden = await client.post(
            f"/v1/{order['name']}:refund",
            json={"reason": "me too", "requestId": str(uuid.uuid4())},
            headers=bearer,
        )
    assert forbidden.status_code == 403
