"""Stripe through the official library's async client (`StripeClient` over httpx, `*_async`).

Results are frozen dataclasses with upper-case ISO 4217 currencies (Stripe speaks lower case);
errors are the classes of `server.payment.providers`. Every create call carries an idempotency
key: real Stripe replays the first response for 24 hours to a retry with the same key.

What localstripe 1.15.10 (the stand-in the tests run as a separate process) does NOT do like
Stripe — checked against its behaviour, see tests/payment/test_stripe_gateway.py:

- Idempotency keys are ignored: the `Idempotency-Key` header is accepted and a second create with
  the same key makes a second object. Idempotency can only be tested against real Stripe; the
  money path must also stay correct without it (unique constraints, re-reading by order id).
- A card decline is HTTP 402 with `type: invalid_request_error` (real: `card_error`) and carries
  neither `decline_code` nor `payment_intent`, only `charge`; `create_payment_intent` then reads
  the charge to find the PaymentIntent id. The declined PaymentIntent stays
  `requires_payment_method` as on Stripe.
- Test cards: on Stripe 4000000000000002 (`pm_card_visa_chargeDeclined`) is declined when
  charged; localstripe declines it only when *attached* to a customer or used in a SetupIntent,
  and lets a PaymentIntent charge it successfully. The card that attaches fine and is declined
  when charged — the "saved card declined" case — is 4000000000000341
  (`pm_card_chargeCustomerFail`) on both. 4242424242424242 / `pm_card_visa` succeed; the 3-D
  Secure cards (4000002500003155, 4000002760003184, …) give `requires_action`.
- `pm_card_*` tokens: localstripe makes a NEW PaymentMethod each time such a token is referenced,
  even by a GET (Stripe does too, for attach/confirm), so always keep the returned `pm_…` id.
- A PaymentIntent cannot be confirmed later with a payment method (`confirm` with
  `payment_method` → 500 "Not implemented"): create it with `payment_method` and `confirm=True`
  (or with `payment_method` and confirm it later without one).
- `latest_charge` is returned as a whole Charge object (Stripe: an id unless expanded); both
  shapes are read. `description`, `receipt_email`, `automatic_payment_methods`, `return_url` and
  `off_session` without `confirm` are refused (400 "Unexpected …"), so none is sent.
- Refunds: the `reason` parameter is refused (400), so it is sent only when the caller asks for a
  Stripe reason and otherwise kept in metadata; refunds are always `succeeded` at once; the
  refunded total is NOT checked against the charge (Stripe refuses over-refunds with
  `charge_already_refunded` / amount errors); a refund of a canceled PaymentIntent is a 500.
- SetupIntents: create and confirm work, but a confirmed SetupIntent does NOT attach its payment
  method to the customer (Stripe does), so listing the customer's methods stays empty until
  `attach_payment_method` is called; 4000000000000002 is declined at confirm (402).
- Cancelling a PaymentIntent twice, or a succeeded one, is a 400 without a code (Stripe:
  `payment_intent_unexpected_state`).
- Webhooks: only if registered through `POST /_config/webhooks/{id}` (url, secret, events); sent
  one second after the event, once, signed exactly like Stripe (t=…,v1=…).
- No search API (`/v1/customers/search` is a 404), no filters when listing PaymentIntents
  (`customer=` is a 400), no API versions, no rate limits, no livemode. `off_session=true` with
  `confirm=true` is accepted.
- It binds every interface (`::`), not only loopback, and rewrites /tmp/localstripe.pickle after
  every change (start it with `--from-scratch`, or it loads another run's objects).
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import stripe

from server.payment.providers import (
    CardDeclined,
    ProviderError,
    ProviderNotFound,
    ProviderUnavailable,
)

PROVIDER = "stripe"

RefundReason = Literal["duplicate", "fraudulent", "requested_by_customer"]


class PaymentIntentStatus(enum.StrEnum):
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    CANCELED = "canceled"
    SUCCEEDED = "succeeded"


@dataclass(frozen=True, slots=True)
class SetupIntentResult:
    id: str
    # Handed to Stripe.js, which collects and confirms the card in the browser.
    client_secret: str
    status: str
    customer: str | None
    payment_method: str | None


@dataclass(frozen=True, slots=True)
class CardPaymentMethod:
    """A saved card as we may store it: never the number, only display data."""

    id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    customer: str | None


@dataclass(frozen=True, slots=True)
class PaymentIntentResult:
    id: str
    status: PaymentIntentStatus
    client_secret: str | None
    amount: int
    currency: str
    customer: str | None
    payment_method: str | None
    latest_charge: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)
    # Why the last attempt failed, when it did ("card_declined", "insufficient_funds").
    last_error_code: str | None = None
    last_decline_code: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is PaymentIntentStatus.SUCCEEDED


@dataclass(frozen=True, slots=True)
class RefundResult:
    id: str
    # "pending", "requires_action", "succeeded", "failed" or "canceled".
    status: str
    amount: int
    currency: str
    payment_intent: str | None
    charge: str | None


class StripeGateway:
    """The Stripe calls of the money path. `base_url` points the client at a stand-in (tests,
    local runs); None means Stripe itself. `localstripe_compatible` leaves out the parameters
    localstripe refuses (`allowed_payment_method_types`), which real Stripe needs to confirm a
    card server-side without a `return_url`. Network errors, 409 and 5xx are retried
    `max_network_retries` times with the same idempotency key. Close with `aclose()` or
    `async with`."""

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        *,
        timeout_s: float = 20.0,
        max_network_retries: int = 2,
        localstripe_compatible: bool = False,
    ) -> None:
        # The library's telemetry (a process-wide switch) writes ~/.config/stripe/telemetry_id
        # on the first request — blocking file I/O on the event loop, outside our data — and
        # sends platform details and request timings along with every call.
        stripe.enable_telemetry = False
        self._http = stripe.HTTPXClient(timeout=timeout_s)
        self._client = stripe.StripeClient(
            api_key,
            http_client=self._http,
            base_addresses={"api": base_url.rstrip("/")} if base_url is not None else None,
            max_network_retries=max_network_retries,
        )
        self._localstripe = localstripe_compatible

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> StripeGateway:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def ensure_customer(self, user_id: str, email: str, *, idempotency_key: str) -> str:
        """Creates the user's Stripe customer and returns its "cus_…" id. The caller keeps the id
        (payment_customers) and calls this only when it has none; the idempotency key (e.g.
        derived from the user id) makes concurrent first calls yield one customer at Stripe."""
        with _translate_errors():
            customer = await self._client.v1.customers.create_async(
                {"email": email, "metadata": {"user_id": user_id}},
                {"idempotency_key": idempotency_key},
            )
        return customer.id

    async def create_setup_intent(
        self, customer: str, *, idempotency_key: str | None = None
    ) -> SetupIntentResult:
        """A SetupIntent saving a card for later off-session use by this customer."""
        params: stripe.params.SetupIntentCreateParams = {
            "customer": customer,
            "usage": "off_session",
        }
        if not self._localstripe:
            params["allowed_payment_method_types"] = ["card"]
        with _translate_errors():
            intent = await self._client.v1.setup_intents.create_async(
                params, _options(idempotency_key)
            )
        if intent.client_secret is None:
            raise ProviderError("setup intent without client secret", provider=PROVIDER)
        return SetupIntentResult(
            id=intent.id,
            client_secret=intent.client_secret,
            status=intent.status,
            customer=_ref(intent.customer),
            payment_method=_ref(intent.payment_method),
        )

    async def list_payment_methods(self, customer: str) -> list[CardPaymentMethod]:
        """The customer's saved cards, every page."""
        methods: list[CardPaymentMethod] = []
        starting_after: str | None = None
        while True:
            params: stripe.params.PaymentMethodListParams = {
                "customer": customer,
                "type": "card",
                "limit": 100,
            }
            if starting_after is not None:
                params["starting_after"] = starting_after
            with _translate_errors():
                page = await self._client.v1.payment_methods.list_async(params)
            methods.extend(_card(method) for method in page.data)
            if not page.has_more or not page.data:
                return methods
            starting_after = page.data[-1].id

    async def retrieve_payment_method(self, payment_method: str) -> CardPaymentMethod:
        with _translate_errors():
            method = await self._client.v1.payment_methods.retrieve_async(payment_method)
        return _card(method)

    async def attach_payment_method(
        self, payment_method: str, customer: str, *, idempotency_key: str | None = None
    ) -> CardPaymentMethod:
        """Attaches a card to a customer; a card refused at attach raises `CardDeclined`."""
        with _translate_errors():
            method = await self._client.v1.payment_methods.attach_async(
                payment_method, {"customer": customer}, _options(idempotency_key)
            )
        return _card(method)

    async def detach_payment_method(self, payment_method: str) -> None:
        with _translate_errors():
            await self._client.v1.payment_methods.detach_async(payment_method)

    async def create_payment_intent(
        self,
        *,
        amount_minor: int,
        currency: str,
        customer: str | None,
        payment_method: str | None,
        order_id: str,
        confirm: bool,
        idempotency_key: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PaymentIntentResult:
        """A card PaymentIntent for an order, idempotent on the order id unless another key is
        given. With `confirm` (and a saved `payment_method`) it is charged now: the result is
        `succeeded`, `requires_action` (3-D Secure: the client finishes it with the client
        secret) or `processing`; a refusal raises `CardDeclined` carrying the intent's id.
        Without `confirm` the client confirms it with Stripe.js and the client secret."""
        if amount_minor <= 0:
            raise ValueError("amount_minor must be positive")
        params: stripe.params.PaymentIntentCreateParams = {
            "amount": amount_minor,
            "currency": currency.lower(),
            "metadata": {**(metadata or {}), "order_id": order_id},
        }
        if not self._localstripe:
            # Cards only: no redirect-based methods, so no return_url is needed to confirm.
            params["allowed_payment_method_types"] = ["card"]
        if customer is not None:
            params["customer"] = customer
        if payment_method is not None:
            params["payment_method"] = payment_method
        if confirm:
            if payment_method is None:
                raise ValueError("confirming server-side needs a payment method")
            params["confirm"] = True
        try:
            with _translate_errors():
                intent = await self._client.v1.payment_intents.create_async(
                    params, {"idempotency_key": idempotency_key or order_id}
                )
        except CardDeclined as declined:
            if declined.payment_reference is None and declined.charge_reference is not None:
                declined.payment_reference = await self._payment_intent_of_charge(
                    declined.charge_reference
                )
            raise
        return _payment_intent(intent)

    async def find_payment_intent(
        self, *, order_id: str, customer: str | None
    ) -> PaymentIntentResult | None:
        """The newest PaymentIntent whose metadata names `order_id`, among the customer's
        recent ones (the reconciler's way to find a payment whose id was never stored).
        localstripe ignores list filters, so the metadata is matched here either way."""
        params: stripe.params.PaymentIntentListParams = {"limit": 100}
        if customer is not None and not self._localstripe:
            params["customer"] = customer
        with _translate_errors():
            page = await self._client.v1.payment_intents.list_async(params)
        matches = [
            intent for intent in page.data if _metadata(intent.metadata).get("order_id") == order_id
        ]
        if not matches:
            return None
        return _payment_intent(max(matches, key=lambda intent: intent.created))

    async def retrieve_payment_intent(self, payment_intent: str) -> PaymentIntentResult:
        with _translate_errors():
            intent = await self._client.v1.payment_intents.retrieve_async(payment_intent)
        return _payment_intent(intent)

    async def cancel_payment_intent(
        self, payment_intent: str, *, idempotency_key: str | None = None
    ) -> PaymentIntentResult:
        """Cancels an unpaid PaymentIntent (any status but `succeeded`, `processing`,
        `canceled`); Stripe answers a refused cancel with `ProviderError`."""
        with _translate_errors():
            intent = await self._client.v1.payment_intents.cancel_async(
                payment_intent, None, _options(idempotency_key)
            )
        return _payment_intent(intent)

    async def create_refund(
        self,
        *,
        payment_intent: str,
        amount_minor: int | None,
        idempotency_key: str,
        reason: str | None = None,
        stripe_reason: RefundReason | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> RefundResult:
        """Refunds a paid PaymentIntent, wholly (`amount_minor` None) or partly. `reason` is our
        free text, kept in the refund's metadata; `stripe_reason` is Stripe's own enum."""
        if amount_minor is not None and amount_minor <= 0:
            raise ValueError("amount_minor must be positive")
        refund_metadata = dict(metadata or {})
        if reason:
            refund_metadata["reason"] = reason[:500]
        params: stripe.params.RefundCreateParams = {"payment_intent": payment_intent}
        if amount_minor is not None:
            params["amount"] = amount_minor
        if refund_metadata:
            params["metadata"] = refund_metadata
        if stripe_reason is not None:
            params["reason"] = stripe_reason
        with _translate_errors():
            refund = await self._client.v1.refunds.create_async(
                params, {"idempotency_key": idempotency_key}
            )
        return RefundResult(
            id=refund.id,
            status=refund.status or "pending",
            amount=refund.amount,
            currency=refund.currency.upper(),
            payment_intent=_ref(refund.payment_intent),
            charge=_ref(refund.charge),
        )

    async def _payment_intent_of_charge(self, charge: str) -> str | None:
        try:
            with _translate_errors():
                found = await self._client.v1.charges.retrieve_async(charge)
        except ProviderError:
            # Only a lookup to enrich the decline: the decline itself is what the caller needs.
            return None
        return _ref(found.payment_intent)


def _options(idempotency_key: str | None) -> stripe.RequestOptions:
    return {"idempotency_key": idempotency_key} if idempotency_key else {}


def _ref(value: str | stripe.StripeObject | None) -> str | None:
    """The id of an expandable field, whether Stripe sent an id or the whole object."""
    if value is None or isinstance(value, str):
        return value
    found = getattr(value, "id", None)
    return found if isinstance(found, str) else None


def _metadata(value: object) -> dict[str, str]:
    raw: Mapping[Any, Any]
    if isinstance(value, stripe.StripeObject):
        raw = value.to_dict()
    elif isinstance(value, Mapping):
        raw = value
    else:
        return {}
    return {str(key): str(item) for key, item in raw.items()}


def _card(method: stripe.PaymentMethod) -> CardPaymentMethod:
    card = method.card
    if method.type != "card" or card is None:
        raise ProviderError(f"payment method {method.id} is not a card", provider=PROVIDER)
    return CardPaymentMethod(
        id=method.id,
        brand=card.brand,
        last4=card.last4,
        exp_month=card.exp_month,
        exp_year=card.exp_year,
        customer=_ref(method.customer),
    )


def _payment_intent(intent: stripe.PaymentIntent) -> PaymentIntentResult:
    error = intent.last_payment_error
    return PaymentIntentResult(
        id=intent.id,
        status=PaymentIntentStatus(intent.status),
        client_secret=intent.client_secret,
        amount=intent.amount,
        currency=intent.currency.upper(),
        customer=_ref(intent.customer),
        payment_method=_ref(intent.payment_method),
        latest_charge=_ref(intent.latest_charge),
        metadata=_metadata(intent.metadata),
        # getattr: a stand-in may leave out keys that Stripe always sends.
        last_error_code=getattr(error, "code", None),
        last_decline_code=getattr(error, "decline_code", None),
    )


@contextlib.contextmanager
def _translate_errors() -> Iterator[None]:
    try:
        yield
    except stripe.StripeError as error:
        raise _provider_error(error) from error


def _provider_error(error: stripe.StripeError) -> ProviderError:
    message = error.user_message or str(error) or type(error).__name__
    status = error.http_status
    code = error.code
    if isinstance(error, stripe.CardError):
        details = error.error
        return CardDeclined(
            message,
            provider=PROVIDER,
            code=code,
            http_status=status,
            decline_code=getattr(details, "decline_code", None),
            payment_reference=_ref(getattr(details, "payment_intent", None)),
            charge_reference=getattr(details, "charge", None),
        )
    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError) or (
        status is not None and (status >= 500 or status == 409)
    ):
        return ProviderUnavailable(message, provider=PROVIDER, code=code, http_status=status)
    if status == 404:
        return ProviderNotFound(message, provider=PROVIDER, code=code, http_status=status)
    return ProviderError(message, provider=PROVIDER, code=code, http_status=status)
