"""Stripe webhook signatures: ours against Stripe's format, and a real delivery from localstripe
(which signs like Stripe) to a local receiver."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import stripe

from server.payment.providers.stripe_gateway import StripeGateway
from server.payment.providers.webhooks import (
    WebhookSignatureInvalid,
    sign_stripe_payload,
    verify_stripe_signature,
)
from tests.payment.localstripe import (  # noqa: F401 - fixtures
    LocalStripe,
    localstripe_fixture,
    make_stripe_gateway_fixture,
    stripe_gateway_fixture,
)

SECRET = "whsec_test_amesa"
NOW = 1_795_000_000
EVENT = {
    "id": "evt_1",
    "object": "event",
    "type": "payment_intent.succeeded",
    "data": {"object": {"id": "pi_1", "object": "payment_intent", "amount": 100}},
}
PAYLOAD = json.dumps(EVENT, indent=2).encode()


def test_good_signature_returns_the_event() -> None:
    header = sign_stripe_payload(PAYLOAD, SECRET, NOW)

    assert verify_stripe_signature(PAYLOAD, header, SECRET, now=NOW) == EVENT


def test_signature_matches_the_stripe_library() -> None:
    ours = sign_stripe_payload(PAYLOAD, SECRET, NOW)

    assert ours == stripe.WebhookSignature.generate_signature_header(
        PAYLOAD.decode(), SECRET, timestamp=NOW
    )


def test_one_matching_signature_among_several_is_enough() -> None:
    # While a secret rolls, Stripe signs with both the old and the new secret.
    good = sign_stripe_payload(PAYLOAD, SECRET, NOW).split(",v1=")[1]
    header = f"t={NOW},v1={'0' * 64},v1={good},v0=legacy"

    assert verify_stripe_signature(PAYLOAD, header, SECRET, now=NOW)["id"] == "evt_1"


@pytest.mark.parametrize("header", [None, ""])
def test_missing_header_is_refused(header: str | None) -> None:
    with pytest.raises(WebhookSignatureInvalid) as invalid:
        verify_stripe_signature(PAYLOAD, header, SECRET, now=NOW)

    assert invalid.value.reason == "missing_header"


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        f"v1={'a' * 64}",
        f"t={NOW}",
        f"t=soon,v1={'a' * 64}",
        f"t={NOW},t={NOW},v1={'a' * 64}",
        f"t=-{NOW},v1={'a' * 64}",
        f"t={NOW},v1=",
    ],
)
def test_malformed_header_is_refused(header: str) -> None:
    with pytest.raises(WebhookSignatureInvalid) as invalid:
        verify_stripe_signature(PAYLOAD, header, SECRET, now=NOW)

    assert invalid.value.reason == "malformed_header"


def test_signature_under_another_secret_is_refused() -> None:
    header = sign_stripe_payload(PAYLOAD, "whsec_someone_else", NOW)

    with pytest.raises(WebhookSignatureInvalid) as invalid:
        verify_stripe_signature(PAYLOAD, header, SECRET, now=NOW)

    assert invalid.value.reason == "bad_signature"


def test_tampered_body_is_refused() -> None:
    header = sign_stripe_payload(PAYLOAD, SECRET, NOW)
    tampered = PAYLOAD.replace(b'"amount": 100', b'"amount": 1')

    with pytest.raises(WebhookSignatureInvalid) as invalid:
        verify_stripe_signature(tampered, header, SECRET, now=NOW)

    assert invalid.value.reason == "bad_signature"


def test_re_serialised_body_is_refused() -> None:
    # The raw bytes are signed: the same event with other whitespace does not verify.
    header = sign_stripe_payload(PAYLOAD, SECRET, NOW)

    with pytest.raises(WebhookSignatureInvalid) as invalid:
        verify_stripe_signature(json.dumps(EVENT).encode(), header, SECRET, now=NOW)

    assert invalid.value.reason == "bad_signature"


def test_signature_with_moved_timestamp_is_refused() -> None:
    signature = sign_stripe_payload(PAYLOAD, SECRET, NOW - 1000).split(",v1=")[1]

    with pytest.raises(WebhookSignatureInvalid) as invalid:
        verify_stripe_signature(PAYLOAD, f"t={NOW},v1={signature}", SECRET, now=NOW)

    assert invalid.value.reason == "bad_signature"


@pytest.mark.parametrize(
    ("age_s", "reason"), [(301, "stale_timestamp"), (-301, "future_timestamp")]
)
def test_timestamp_outside_tolerance_is_refused(age_s: int, reason: str) -> None:
    header = sign_stripe_payload(PAYLOAD, SECRET, NOW - age_s)

    with pytest.raises(WebhookSignatureInvalid) as invalid:
        verify_stripe_signature(PAYLOAD, header, SECRET, now=NOW)

    assert invalid.value.reason == reason


@pytest.mark.parametrize("age_s", [300, -300, 0])
def test_timestamp_at_the_tolerance_edge_is_accepted(age_s: int) -> None:
    header = sign_stripe_payload(PAYLOAD, SECRET, NOW - age_s)

    assert verify_stripe_signature(PAYLOAD, header, SECRET, now=NOW) == EVENT


def test_tolerance_is_configurable() -> None:
    header = sign_stripe_payload(PAYLOAD, SECRET, NOW - 20)

    with pytest.raises(WebhookSignatureInvalid):
        verify_stripe_signature(PAYLOAD, header, SECRET, tolerance_s=10, now=NOW)


def test_without_now_the_clock_is_used() -> None:
    fresh = sign_stripe_payload(PAYLOAD, SECRET, int(time.time()))
    stale = sign_stripe_payload(PAYLOAD, SECRET, int(time.time()) - 3600)

    assert verify_stripe_signature(PAYLOAD, fresh, SECRET) == EVENT
    with pytest.raises(WebhookSignatureInvalid):
        verify_stripe_signature(PAYLOAD, stale, SECRET)


@pytest.mark.parametrize("payload", [b"\xff\xfe not utf-8", b"not json", b"[1, 2]"])
def test_signed_payload_that_is_not_an_event_object_is_refused(payload: bytes) -> None:
    header = sign_stripe_payload(payload, SECRET, NOW)

    with pytest.raises(WebhookSignatureInvalid) as invalid:
        verify_stripe_signature(payload, header, SECRET, now=NOW)

    assert invalid.value.reason == "malformed_payload"


def test_empty_secret_is_refused() -> None:
    header = sign_stripe_payload(PAYLOAD, "", NOW)

    with pytest.raises(WebhookSignatureInvalid) as invalid:
        verify_stripe_signature(PAYLOAD, header, "", now=NOW)

    assert invalid.value.reason == "missing_secret"


# --- A real delivery from localstripe ----------------------------------------------------------


@dataclass
class Receiver:
    url: str = ""
    deliveries: list[tuple[bytes, str | None]] = field(default_factory=list)


def _receiver_handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            receiver.deliveries.append((self.rfile.read(length), self.headers["Stripe-Signature"]))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@pytest.fixture(name="receiver")
def receiver_fixture() -> Iterator[Receiver]:
    receiver = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _receiver_handler(receiver))
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/stripe"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


async def test_delivery_signed_by_localstripe_verifies(
    localstripe: LocalStripe, stripe_gateway: StripeGateway, receiver: Receiver
) -> None:
    secret = f"whsec_{uuid.uuid4().hex}"
    await localstripe.register_webhook(
        f"amesa-{uuid.uuid4().hex[:8]}", receiver.url, secret, events=["customer.created"]
    )
    user_id = str(uuid.uuid4())

    customer = await stripe_gateway.ensure_customer(
        user_id, "ada@example.org", idempotency_key=user_id
    )

    # localstripe delivers one second after the event.
    event = None
    for _ in range(60):
        for body, header in receiver.deliveries:
            candidate = verify_stripe_signature(body, header, secret)
            if candidate["data"]["object"]["id"] == customer:
                event = candidate
        if event is not None:
            break
        await asyncio.sleep(0.1)
    assert event is not None, "localstripe delivered no customer.created for the customer"
    assert event["type"] == "customer.created"
    assert event["id"].startswith("evt_")
    body, header = next(
        (body, header) for body, header in receiver.deliveries if customer.encode() in body
    )
    with pytest.raises(WebhookSignatureInvalid) as invalid:
        verify_stripe_signature(body, header, "whsec_wrong")
    assert invalid.value.reason == "bad_signature"
