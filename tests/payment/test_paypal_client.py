"""PayPalClient against the local PayPal stand-in (tests/payment/paypal_standin.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from server.payment.providers import (
    CardDeclined,
    PaymentNotApproved,
    ProviderError,
    ProviderNotFound,
    ProviderUnavailable,
)
from server.payment.providers.paypal import (
    PayPalClient,
    PayPalOrder,
    from_paypal_amount,
    to_paypal_amount,
)
from tests.payment.paypal_standin import CLIENT_ID, CLIENT_SECRET, WEBHOOK_ID, PayPalStandIn


@pytest_asyncio.fixture(loop_scope="session", name="paypal")
async def paypal_fixture(paypal_standin: PayPalStandIn) -> AsyncIterator[PayPalClient]:
    async with PayPalClient(
        paypal_standin.base_url, CLIENT_ID, CLIENT_SECRET, timeout_s=5.0
    ) as client:
        yield client


async def approved_order(
    paypal: PayPalClient, standin: PayPalStandIn, amount_minor: int = 1050, currency: str = "USD"
) -> PayPalOrder:
    order = await paypal.create_order(
        amount_minor=amount_minor,
        currency=currency,
        reference_id=str(uuid.uuid4()),
        request_id=str(uuid.uuid4()),
    )
    standin.approve(order.id)
    return order


@pytest.mark.parametrize(
    ("amount_minor", "currency", "value"),
    [
        (1050, "USD", "10.50"),
        (1, "EUR", "0.01"),
        (100, "ils", "1.00"),
        (123456789, "GBP", "1234567.89"),
        (500, "JPY", "500"),
        (120000, "HUF", "1200"),
        (0, "USD", "0.00"),
    ],
)
def test_minor_units_convert_to_paypal_decimal_strings_and_back(
    amount_minor: int, currency: str, value: str
) -> None:
    assert to_paypal_amount(amount_minor, currency) == value
    assert from_paypal_amount(value, currency) == amount_minor


@pytest.mark.parametrize(
    ("amount_minor", "currency"), [(150, "HUF"), (100, "XYZ"), (100, "KWD"), (-1, "USD")]
)
def test_amounts_paypal_cannot_take_are_refused(amount_minor: int, currency: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        to_paypal_amount(amount_minor, currency)


def test_paypal_amount_finer_than_minor_units_is_refused() -> None:
    with pytest.raises(ValueError, match="minor units"):
        from_paypal_amount("10.505", "USD")
    with pytest.raises(ValueError, match="minor units"):
        from_paypal_amount("10.5", "JPY")


async def test_create_approve_capture_refund(
    paypal: PayPalClient, paypal_standin: PayPalStandIn
) -> None:
    reference_id = str(uuid.uuid4())

    order = await paypal.create_order(
        amount_minor=2599, currency="EUR", reference_id=reference_id, request_id=reference_id
    )

    assert order.status == "CREATED"
    assert order.approve_url == f"{paypal_standin.base_url}/checkoutnow?token={order.id}"
    assert (order.reference_id, order.amount_minor, order.currency) == (reference_id, 2599, "EUR")
    assert order.captures == ()
    stored = paypal_standin.orders[order.id]
    assert stored["intent"] == "CAPTURE"
    assert stored["purchase_units"][0]["amount"] == {"currency_code": "EUR", "value": "25.99"}
    # The buyer follows the approve link.
    async with httpx.AsyncClient() as browser:
        assert (await browser.get(order.approve_url)).status_code == 200
    assert (await paypal.get_order(order.id)).status == "APPROVED"

    captured = await paypal.capture_order(order.id, request_id=f"capture-{reference_id}")

    assert (captured.order_id, captured.order_status) == (order.id, "COMPLETED")
    assert (captured.capture.status, captured.capture.amount_minor) == ("COMPLETED", 2599)
    assert captured.capture.currency == "EUR"
    assert (await paypal.get_order(order.id)).captures == (captured.capture,)

    partial = await paypal.refund_capture(
        captured.capture.id, amount_minor=599, currency="EUR", request_id=f"refund-{reference_id}-1"
    )
    rest = await paypal.refund_capture(
        captured.capture.id,
        amount_minor=None,
        currency="EUR",
        request_id=f"refund-{reference_id}-2",
    )

    assert (partial.status, partial.amount_minor, partial.currency) == ("COMPLETED", 599, "EUR")
    assert (rest.status, rest.amount_minor) == ("COMPLETED", 2000)
    assert partial.id != rest.id
    assert paypal_standin.captures[captured.capture.id].status == "REFUNDED"


async def test_jpy_order_is_sent_without_decimals(
    paypal: PayPalClient, paypal_standin: PayPalStandIn
) -> None:
    order = await approved_order(paypal, paypal_standin, amount_minor=3000, currency="JPY")

    captured = await paypal.capture_order(order.id, request_id=str(uuid.uuid4()))
    refund = await paypal.refund_capture(
        captured.capture.id, amount_minor=1000, currency="JPY", request_id=str(uuid.uuid4())
    )

    amount = paypal_standin.orders[order.id]["purchase_units"][0]["amount"]
    assert amount == {"currency_code": "JPY", "value": "3000"}
    assert (captured.capture.amount_minor, refund.amount_minor) == (3000, 1000)


async def test_create_order_with_same_request_id_returns_the_same_order(
    paypal: PayPalClient, paypal_standin: PayPalStandIn
) -> None:
    request_id = str(uuid.uuid4())

    first = await paypal.create_order(
        amount_minor=100, currency="USD", reference_id="o-1", request_id=request_id
    )
    second = await paypal.create_order(
        amount_minor=100, currency="USD", reference_id="o-1", request_id=request_id
    )

    assert first == second
    assert len(paypal_standin.orders) == 1


async def test_capture_retry_with_same_request_id_returns_the_first_capture(
    paypal: PayPalClient, paypal_standin: PayPalStandIn
) -> None:
    order = await approved_order(paypal, paypal_standin)
    request_id = f"capture-{order.id}"

    first = await paypal.capture_order(order.id, request_id=request_id)
    retry = await paypal.capture_order(order.id, request_id=request_id)

    assert retry == first
    assert len(paypal_standin.captures) == 1


async def test_second_capture_with_new_request_id_is_refused(
    paypal: PayPalClient, paypal_standin: PayPalStandIn
) -> None:
    order = await approved_order(paypal, paypal_standin)
    await paypal.capture_order(order.id, request_id=str(uuid.uuid4()))

    with pytest.raises(ProviderError) as refused:
        await paypal.capture_order(order.id, request_id=str(uuid.uuid4()))

    assert (refused.value.code, refused.value.http_status) == ("ORDER_ALREADY_CAPTURED", 422)


async def test_capture_before_approval_is_refused(
    paypal: PayPalClient, paypal_standin: PayPalStandIn
) -> None:
    order = await paypal.create_order(
        amount_minor=100, currency="USD", reference_id="o-2", request_id=str(uuid.uuid4())
    )

    with pytest.raises(PaymentNotApproved) as refused:
        await paypal.capture_order(order.id, request_id=str(uuid.uuid4()))

    assert (refused.value.code, refused.value.http_status) == ("ORDER_NOT_APPROVED", 422)
    assert paypal_standin.captures == {}
    assert (await paypal.get_order(order.id)).status == "CREATED"


async def test_declined_instrument_at_capture_is_card_declined(
    paypal: PayPalClient, paypal_standin: PayPalStandIn
) -> None:
    order = await approved_order(paypal, paypal_standin)
    paypal_standin.decline(order.id)

    with pytest.raises(CardDeclined) as declined:
        await paypal.capture_order(order.id, request_id=str(uuid.uuid4()))

    assert declined.value.decline_code == "INSTRUMENT_DECLINED"
    assert declined.value.payment_reference == order.id


async def test_refund_beyond_the_capture_is_refused(
    paypal: PayPalClient, paypal_standin: PayPalStandIn
) -> None:
    order = await approved_order(paypal, paypal_standin, amount_minor=1000)
    captured = await paypal.capture_order(order.id, request_id=str(uuid.uuid4()))

    with pytest.raises(ProviderError) as refused:
        await paypal.refund_capture(
            captured.capture.id, amount_minor=1001, currency="USD", request_id=str(uuid.uuid4())
        )

    assert refused.value.code == "REFUND_AMOUNT_EXCEEDED"


async def test_refund_with_same_request_id_refunds_once(
    paypal: PayPalClient, paypal_standin: PayPalStandIn
) -> None:
    order = await approved_order(paypal, paypal_standin, amount_minor=1000)
    captured = await paypal.capture_order(order.id, request_id=str(uuid.uuid4()))
    request_id = str(uuid.uuid4())

    first = await paypal.refund_capture(
        captured.capture.id, amount_minor=400, currency="USD", request_id=request_id
    )
    retry = await paypal.refund_capture(
        captured.capture.id, amount_minor=400, currency="USD", request_id=request_id
    )

    assert retry == first
    assert paypal_standin.captures[captured.capture.id].status == "PARTIALLY_REFUNDED"


async def test_unknown_order_is_not_found(paypal: PayPalClient) -> None:
    with pytest.raises(ProviderNotFound) as missing:
        await paypal.get_order("0XXXXXXXXXXXXXXXX")

    assert missing.value.code == "INVALID_RESOURCE_ID"


async def test_id_that_would_change_the_path_is_refused(paypal: PayPalClient) -> None:
    with pytest.raises(ValueError, match="not a PayPal id"):
        await paypal.get_order("../../v1/oauth2/token")


async def test_token_is_fetched_once_and_reused(
    paypal: PayPalClient, paypal_standin: PayPalStandIn
) -> None:
    for index in range(3):
        await paypal.create_order(
            amount_minor=100 + index,
            currency="USD",
            reference_id=f"o-{index}",
            request_id=str(uuid.uuid4()),
        )

    assert paypal_standin.token_requests == 1


async def test_token_is_fetched_again_once_it_expires(paypal_standin: PayPalStandIn) -> None:
    # A lifetime inside the refresh margin: the token counts as expired as soon as it is issued.
    paypal_standin.token_lifetime_s = 30
    async with PayPalClient(paypal_standin.base_url, CLIENT_ID, CLIENT_SECRET) as client:
        for _ in range(2):
            await client.verify_webhook_signature(*paypal_standin.sign_webhook({"id": "e"}), "W")

    assert paypal_standin.token_requests == 2


async def test_revoked_token_is_replaced_once(
    paypal: PayPalClient, paypal_standin: PayPalStandIn
) -> None:
    order = await approved_order(paypal, paypal_standin)
    paypal_standin.expire_tokens()

    captured = await paypal.capture_order(order.id, request_id=str(uuid.uuid4()))

    assert captured.order_status == "COMPLETED"
    assert paypal_standin.token_requests == 2


async def test_wrong_client_secret_is_provider_error(paypal_standin: PayPalStandIn) -> None:
    async with PayPalClient(paypal_standin.base_url, CLIENT_ID, "wrong") as client:
        with pytest.raises(ProviderError) as refused:
            await client.get_order("ABC")

    assert (refused.value.code, refused.value.http_status) == ("invalid_client", 401)


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_server_errors_are_provider_unavailable(
    paypal: PayPalClient, paypal_standin: PayPalStandIn, status: int
) -> None:
    paypal_standin.fail_next(status)

    with pytest.raises(ProviderUnavailable) as unavailable:
        await paypal.create_order(
            amount_minor=100, currency="USD", reference_id="o", request_id=str(uuid.uuid4())
        )

    assert unavailable.value.http_status == status


async def test_unreachable_paypal_is_provider_unavailable() -> None:
    async with PayPalClient("http://127.0.0.1:1", CLIENT_ID, CLIENT_SECRET) as client:
        with pytest.raises(ProviderUnavailable):
            await client.get_order("ABC")


# --- Webhook verification through PayPal's API --------------------------------------------------


def capture_completed_event(standin: PayPalStandIn) -> dict[str, object]:
    return standin.event(
        "PAYMENT.CAPTURE.COMPLETED",
        {
            "id": "2GG279541U471931P",
            "status": "COMPLETED",
            "amount": {"currency_code": "USD", "value": "10.50"},
            "custom_id": "o-1",
        },
    )


async def test_delivery_signed_by_paypal_verifies(
    paypal: PayPalClient, paypal_standin: PayPalStandIn
) -> None:
    headers, body = paypal_standin.sign_webhook(capture_completed_event(paypal_standin))
    # gRPC metadata arrives lower-cased.
    lowered = {name.lower(): value for name, value in headers.items()}

    assert await paypal.verify_webhook_signature(headers, body, WEBHOOK_ID)
    assert await paypal.verify_webhook_signature(lowered, body, WEBHOOK_ID)


async def test_delivery_changed_after_signing_fails_verification(
    paypal: PayPalClient, paypal_standin: PayPalStandIn
) -> None:
    headers, body = paypal_standin.sign_webhook(capture_completed_event(paypal_standin))
    tampered = body.replace(b'"10.50"', b'"99.99"')

    assert not await paypal.verify_webhook_signature(headers, tampered, WEBHOOK_ID)


async def test_delivery_for_another_webhook_fails_verification(
    paypal: PayPalClient, paypal_standin: PayPalStandIn
) -> None:
    headers, body = paypal_standin.sign_webhook(capture_completed_event(paypal_standin))

    assert not await paypal.verify_webhook_signature(headers, body, "OTHERWEBHOOKID")


async def test_delivery_with_forged_signature_fails_verification(
    paypal: PayPalClient, paypal_standin: PayPalStandIn
) -> None:
    headers, body = paypal_standin.sign_webhook(capture_completed_event(paypal_standin))
    headers["PAYPAL-TRANSMISSION-SIG"] = "Zm9yZ2Vk"

    assert not await paypal.verify_webhook_signature(headers, body, WEBHOOK_ID)


@pytest.mark.parametrize("missing", ["PAYPAL-TRANSMISSION-SIG", "PAYPAL-CERT-URL"])
async def test_delivery_without_signature_headers_is_refused_without_asking(
    paypal: PayPalClient, paypal_standin: PayPalStandIn, missing: str
) -> None:
    headers, body = paypal_standin.sign_webhook(capture_completed_event(paypal_standin))
    del headers[missing]

    assert not await paypal.verify_webhook_signature(headers, body, WEBHOOK_ID)
    assert paypal_standin.requests == []


@pytest.mark.parametrize("body", [b"not json", b"[]"])
async def test_delivery_that_is_not_an_event_is_refused(
    paypal: PayPalClient, paypal_standin: PayPalStandIn, body: bytes
) -> None:
    headers, _ = paypal_standin.sign_webhook(capture_completed_event(paypal_standin))

    assert not await paypal.verify_webhook_signature(headers, body, WEBHOOK_ID)
