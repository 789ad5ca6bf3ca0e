"""Clients of the payment providers: `stripe_gateway` (Stripe through the official library),
`paypal` (PayPal's REST API over httpx) and `webhooks` (signature checks).

Callers never see a provider's own types: results are small frozen dataclasses and every failure
is one of the exceptions below, so the service decides on our classes alone. Every call that moves
money or creates an object carries an idempotency key, so retrying after `ProviderUnavailable`
with the same key is always safe.
"""

from __future__ import annotations


class ProviderError(Exception):
    """A provider refused a call, or answered in a way we cannot use.

    `code` is the provider's machine-readable reason when it gave one (Stripe `error.code`,
    PayPal `details[0].issue` or `name`); `http_status` the HTTP status it answered with.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        code: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.code = code
        self.http_status = http_status

    def __str__(self) -> str:
        return f"{self.provider}: {self.message} (code={self.code}, http_status={self.http_status})"


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or asked us to come back later (network error,
    timeout, 5xx, 409 lock conflict, rate limit): the outcome of the call is unknown, so retry it
    with the same idempotency key or re-read the provider's state."""


class ProviderNotFound(ProviderError):
    """The object named in the call does not exist at the provider."""


class CardDeclined(ProviderError):
    """The payment was refused by the card issuer or the payer's instrument.

    `decline_code` is the issuer's reason when known (Stripe `decline_code`, e.g.
    "insufficient_funds"; PayPal's issue, e.g. "INSTRUMENT_DECLINED"). `payment_reference` is the
    provider payment the attempt belongs to (a Stripe "pi_…" or a PayPal order id) when known.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        code: str | None = None,
        http_status: int | None = None,
        decline_code: str | None = None,
        payment_reference: str | None = None,
        charge_reference: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, code=code, http_status=http_status)
        self.decline_code = decline_code
        self.payment_reference = payment_reference
        self.charge_reference = charge_reference


class PaymentNotApproved(ProviderError):
    """A capture was attempted before the payer approved the payment (PayPal
    `ORDER_NOT_APPROVED`): nothing was charged."""
