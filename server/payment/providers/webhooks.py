"""Signature checks of incoming provider webhooks.

Stripe signs `"{t}.{raw body}"` with HMAC-SHA256 under the endpoint's secret and sends
`Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]` (several v1 while a secret rolls). The
HMAC is checked by the stripe library's own `WebhookSignature`; the timestamp window is ours,
because the library only refuses timestamps that are too old, while a delivery dated in the future
beyond the tolerance is just as suspect (a replay with a forged clock, or a badly skewed sender).

PayPal signs with a certificate and is verified through its API:
`PayPalClient.verify_webhook_signature` in `server.payment.providers.paypal`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import stripe


class WebhookSignatureInvalid(Exception):
    """The delivery cannot be trusted; `reason` says why (for logs and the error detail):
    "missing_header", "malformed_header", "bad_signature", "stale_timestamp",
    "future_timestamp", "malformed_payload" or "missing_secret"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def verify_stripe_signature(
    payload: bytes,
    header: str | None,
    secret: str,
    *,
    tolerance_s: int = 300,
    now: float | None = None,
) -> dict[str, Any]:
    """The verified event (parsed JSON object) of a Stripe delivery, or `WebhookSignatureInvalid`.

    `payload` must be the body exactly as received: re-serialised JSON does not verify.
    """
    if not secret:
        raise WebhookSignatureInvalid("missing_secret")
    if not header:
        raise WebhookSignatureInvalid("missing_header")
    timestamp = _stripe_timestamp(header)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookSignatureInvalid("malformed_payload") from None
    try:
        # tolerance=None: the library checks only the HMAC; the window is checked below.
        stripe.WebhookSignature.verify_header(text, header, secret, tolerance=None)
    except stripe.SignatureVerificationError:
        raise WebhookSignatureInvalid("bad_signature") from None
    current = time.time() if now is None else now
    if timestamp < current - tolerance_s:
        raise WebhookSignatureInvalid("stale_timestamp")
    if timestamp > current + tolerance_s:
        raise WebhookSignatureInvalid("future_timestamp")
    try:
        event = json.loads(text)
    except ValueError:
        raise WebhookSignatureInvalid("malformed_payload") from None
    if not isinstance(event, dict):
        raise WebhookSignatureInvalid("malformed_payload")
    return event


def sign_stripe_payload(payload: bytes, secret: str, timestamp: int) -> str:
    """A `Stripe-Signature` header value exactly as Stripe makes it, for tests and for
    deliveries we forward from a stand-in."""
    signed = b"%d." % timestamp + payload
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _stripe_timestamp(header: str) -> int:
    """The `t` of a header with exactly one `t` and at least one `v1`, else malformed."""
    timestamps: list[str] = []
    signatures = 0
    for item in header.split(","):
        key, separator, value = item.strip().partition("=")
        if not separator or not value:
            raise WebhookSignatureInvalid("malformed_header")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures += 1
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise WebhookSignatureInvalid("malformed_header")
    if signatures == 0:
        raise WebhookSignatureInvalid("malformed_header")
    return int(timestamps[0])
