"""PayPal's REST API (Orders v2, Payments v2, webhook verification) over httpx.

The official `paypal-server-sdk` is synchronous and wired to paypal.com, so the few calls the money
path needs are made here. Authentication is OAuth2 client credentials; the access token is cached
until shortly before it expires and fetched again once after a 401. Calls that create or move
money carry `PayPal-Request-Id`: PayPal answers a retry with the same id with the first result.

Amounts are integer minor units here and decimal strings at PayPal, with as many decimals as
PayPal allows for the currency: JPY, HUF and TWD take none (HUF and TWD have two minor digits in
ISO 4217, so their amounts must be whole units).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from server.payment.providers import (
    CardDeclined,
    PaymentNotApproved,
    ProviderError,
    ProviderNotFound,
    ProviderUnavailable,
)

PROVIDER = "paypal"

# PayPal's currencies and their ISO 4217 minor digits.
_MINOR_DIGITS: Mapping[str, int] = {
    "AUD": 2,
    "BRL": 2,
    "CAD": 2,
    "CHF": 2,
    "CNY": 2,
    "CZK": 2,
    "DKK": 2,
    "EUR": 2,
    "GBP": 2,
    "HKD": 2,
    "HUF": 2,
    "ILS": 2,
    "MXN": 2,
    "MYR": 2,
    "NOK": 2,
    "NZD": 2,
    "PHP": 2,
    "PLN": 2,
    "SEK": 2,
    "SGD": 2,
    "THB": 2,
    "TWD": 2,
    "USD": 2,
    "JPY": 0,
}
# Currencies PayPal refuses with decimals although ISO 4217 gives them two minor digits.
_WHOLE_UNITS_ONLY = frozenset({"HUF", "TWD"})
# Refetch the token this long before PayPal says it expires, so it never expires mid-call.
_TOKEN_MARGIN_S = 60.0
_DECLINE_ISSUES = frozenset(
    {"INSTRUMENT_DECLINED", "TRANSACTION_REFUSED", "PAYER_CANNOT_PAY", "CARD_EXPIRED"}
)
_WEBHOOK_HEADERS = {
    "auth_algo": "paypal-auth-algo",
    "cert_url": "paypal-cert-url",
    "transmission_id": "paypal-transmission-id",
    "transmission_sig": "paypal-transmission-sig",
    "transmission_time": "paypal-transmission-time",
}


def to_paypal_amount(amount_minor: int, currency: str) -> str:
    """`1050, "USD"` → `"10.50"`; `500, "JPY"` → `"500"`; `120000, "HUF"` → `"1200"`."""
    code = currency.upper()
    digits = _MINOR_DIGITS.get(code)
    if digits is None:
        raise ValueError(f"PayPal does not support currency {currency!r}")
    if amount_minor < 0:
        raise ValueError("amount must not be negative")
    if code in _WHOLE_UNITS_ONLY:
        if amount_minor % 100:
            raise ValueError(f"{code} amounts must be whole units at PayPal")
        return str(amount_minor // 100)
    return str(Decimal(amount_minor).scaleb(-digits))


def from_paypal_amount(value: str, currency: str) -> int:
    """PayPal's decimal string back to integer minor units, refusing any rounding."""
    code = currency.upper()
    digits = _MINOR_DIGITS.get(code)
    if digits is None:
        raise ValueError(f"PayPal does not support currency {currency!r}")
    minor = Decimal(value).scaleb(digits)
    if minor != minor.to_integral_value():
        raise ValueError(f"{value} {code} is not a whole number of minor units")
    return int(minor)


@dataclass(frozen=True, slots=True)
class PayPalOrder:
    id: str
    # CREATED, SAVED, APPROVED, VOIDED, COMPLETED, PAYER_ACTION_REQUIRED.
    status: str
    # Where the payer approves the order; None once there is nothing left to approve.
    approve_url: str | None
    # The purchase unit's reference_id: our order id.
    reference_id: str | None
    amount_minor: int | None
    currency: str | None
    # The captures so far (empty before capture).
    captures: tuple[PayPalCapture, ...] = ()


@dataclass(frozen=True, slots=True)
class PayPalCapture:
    id: str
    # COMPLETED, PENDING, DECLINED, REFUNDED, PARTIALLY_REFUNDED, FAILED.
    status: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class PayPalCaptureResult:
    order_id: str
    # The order's status: COMPLETED once captured.
    order_status: str
    capture: PayPalCapture


@dataclass(frozen=True, slots=True)
class PayPalRefund:
    id: str
    # COMPLETED, PENDING, FAILED, CANCELLED.
    status: str
    amount_minor: int | None
    currency: str | None


class PayPalClient:
    """The PayPal calls of the money path; `base_url` is e.g. https://api-m.paypal.com (or the
    sandbox, or a stand-in). Close with `aclose()` or `async with`."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout_s: float = 20.0,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s)
        self._client_id = client_id
        self._client_secret = client_secret
        self._token: str | None = None
        self._token_expiry = 0.0
        self._token_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> PayPalClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def create_order(
        self,
        *,
        amount_minor: int,
        currency: str,
        reference_id: str,
        request_id: str,
        description: str | None = None,
    ) -> PayPalOrder:
        """An order to be approved by the payer (`approve_url`) and then captured."""
        if amount_minor <= 0:
            raise ValueError("amount_minor must be positive")
        unit: dict[str, Any] = {
            "reference_id": reference_id,
            "custom_id": reference_id,
            "amount": {
                "currency_code": currency.upper(),
                "value": to_paypal_amount(amount_minor, currency),
            },
        }
        if description:
            unit["description"] = description[:127]
        body = await self._call(
            "POST",
            "/v2/checkout/orders",
            json_body={"intent": "CAPTURE", "purchase_units": [unit]},
            request_id=request_id,
        )
        return _order(body)

    async def get_order(self, paypal_order_id: str) -> PayPalOrder:
        return _order(await self._call("GET", f"/v2/checkout/orders/{_segment(paypal_order_id)}"))

    async def capture_order(self, paypal_order_id: str, *, request_id: str) -> PayPalCaptureResult:
        """Captures an approved order. Before approval: `PaymentNotApproved`; refused by the
        payer's instrument: `CardDeclined`. A retry with the same `request_id` returns the first
        capture."""
        body = await self._call(
            "POST",
            f"/v2/checkout/orders/{_segment(paypal_order_id)}/capture",
            json_body={},
            request_id=request_id,
            payment_reference=paypal_order_id,
        )
        order = _order(body)
        if not order.captures:
            raise ProviderError(f"order {order.id} captured without a capture", provider=PROVIDER)
        capture = order.captures[-1]
        if capture.status == "DECLINED":
            raise CardDeclined(
                "capture declined",
                provider=PROVIDER,
                code="DECLINED",
                payment_reference=order.id,
                charge_reference=capture.id,
            )
        return PayPalCaptureResult(order_id=order.id, order_status=order.status, capture=capture)

    async def refund_capture(
        self,
        capture_id: str,
        *,
        amount_minor: int | None,
        currency: str,
        request_id: str,
        note_to_payer: str | None = None,
    ) -> PayPalRefund:
        """Refunds a capture wholly (`amount_minor` None) or partly."""
        body: dict[str, Any] = {}
        if amount_minor is not None:
            if amount_minor <= 0:
                raise ValueError("amount_minor must be positive")
            body["amount"] = {
                "currency_code": currency.upper(),
                "value": to_paypal_amount(amount_minor, currency),
            }
        if note_to_payer:
            body["note_to_payer"] = note_to_payer[:255]
        answer = await self._call(
            "POST",
            f"/v2/payments/captures/{_segment(capture_id)}/refund",
            json_body=body,
            request_id=request_id,
        )
        return _refund(answer)

    async def verify_webhook_signature(
        self, headers: Mapping[str, str], body: bytes, webhook_id: str
    ) -> bool:
        """Whether PayPal vouches for this delivery to our webhook `webhook_id`. Missing
        headers or a body that is not a JSON object are refused without asking PayPal.

        PayPal's verification API receives the event re-serialised, not the raw bytes, and signs
        a CRC32 of the original body; an event whose JSON does not round-trip byte for byte may
        therefore fail verification (PayPal's documented alternative is offline checking against
        its certificate)."""
        lowered = {name.lower(): value for name, value in headers.items()}
        fields = {field: lowered.get(header, "") for field, header in _WEBHOOK_HEADERS.items()}
        if not all(fields.values()):
            return False
        try:
            event = json.loads(body)
        except ValueError:
            return False
        if not isinstance(event, dict):
            return False
        answer = await self._call(
            "POST",
            "/v1/notifications/verify-webhook-signature",
            json_body={**fields, "webhook_id": webhook_id, "webhook_event": event},
        )
        return answer.get("verification_status") == "SUCCESS"

    async def _access_token(self, *, refresh: bool = False) -> str:
        async with self._token_lock:
            if not refresh and self._token is not None and time.monotonic() < self._token_expiry:
                return self._token
            try:
                response = await self._http.post(
                    "/v1/oauth2/token",
                    data={"grant_type": "client_credentials"},
                    auth=(self._client_id, self._client_secret),
                    headers={"Accept": "application/json"},
                )
            except httpx.HTTPError as error:
                raise ProviderUnavailable(
                    f"token request failed: {type(error).__name__}", provider=PROVIDER
                ) from error
            if response.status_code != 200:
                raise _error(response, None)
            answer = _json(response)
            token = answer.get("access_token")
            if not isinstance(token, str) or not token:
                raise ProviderError("token response without access_token", provider=PROVIDER)
            expires_in = float(answer.get("expires_in", 0))
            self._token = token
            self._token_expiry = time.monotonic() + max(expires_in - _TOKEN_MARGIN_S, 0.0)
            return token

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        request_id: str | None = None,
        payment_reference: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", "Prefer": "return=representation"}
        if request_id is not None:
            headers["PayPal-Request-Id"] = request_id
        for attempt in range(2):
            token = await self._access_token(refresh=attempt > 0)
            headers["Authorization"] = f"Bearer {token}"
            try:
                response = await self._http.request(method, path, json=json_body, headers=headers)
            except httpx.HTTPError as error:
                raise ProviderUnavailable(
                    f"{method} {path} failed: {type(error).__name__}", provider=PROVIDER
                ) from error
            # A token PayPal revoked or expired early: fetch a fresh one once.
            if response.status_code == 401 and attempt == 0:
                continue
            if response.is_success:
                return _json(response)
            raise _error(response, payment_reference)
        raise AssertionError("unreachable")  # pragma: no cover


def _segment(identifier: str) -> str:
    """An id as one URL path segment: PayPal ids are alphanumeric, anything else is refused
    rather than let it change the path."""
    if not identifier or not identifier.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"not a PayPal id: {identifier!r}")
    return identifier


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise ProviderError(
            "response is not JSON", provider=PROVIDER, http_status=response.status_code
        ) from None
    if not isinstance(body, dict):
        raise ProviderError(
            "response is not a JSON object", provider=PROVIDER, http_status=response.status_code
        )
    return body


def _error(response: httpx.Response, payment_reference: str | None) -> ProviderError:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    details = body.get("details")
    issue = None
    description = None
    if isinstance(details, list) and details and isinstance(details[0], dict):
        issue = details[0].get("issue")
        description = details[0].get("description")
    # OAuth errors are {"error": …, "error_description": …}; API errors {"name": …, "details"}.
    code = issue or body.get("name") or body.get("error")
    message = str(
        description or body.get("message") or body.get("error_description") or f"HTTP {status}"
    )
    code = str(code) if code is not None else None
    if status == 429 or status >= 500:
        return ProviderUnavailable(message, provider=PROVIDER, code=code, http_status=status)
    if status == 404:
        return ProviderNotFound(message, provider=PROVIDER, code=code, http_status=status)
    if code == "ORDER_NOT_APPROVED":
        return PaymentNotApproved(message, provider=PROVIDER, code=code, http_status=status)
    if code in _DECLINE_ISSUES:
        return CardDeclined(
            message,
            provider=PROVIDER,
            code=code,
            http_status=status,
            decline_code=code,
            payment_reference=payment_reference,
        )
    return ProviderError(message, provider=PROVIDER, code=code, http_status=status)


def _refund(body: Mapping[str, Any]) -> PayPalRefund:
    try:
        amount = body.get("amount")
        amount_minor: int | None = None
        currency: str | None = None
        if isinstance(amount, dict):
            currency = str(amount["currency_code"])
            amount_minor = from_paypal_amount(str(amount["value"]), currency)
        return PayPalRefund(
            id=str(body["id"]),
            status=str(body["status"]),
            amount_minor=amount_minor,
            currency=currency,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ProviderError(
            f"malformed refund: {type(error).__name__} {error}", provider=PROVIDER
        ) from error


def _order(body: Mapping[str, Any]) -> PayPalOrder:
    try:
        return _parse_order(body)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ProviderError(
            f"malformed order: {type(error).__name__} {error}", provider=PROVIDER
        ) from error


def _parse_order(body: Mapping[str, Any]) -> PayPalOrder:
    approve_url = None
    for link in body.get("links") or ():
        if isinstance(link, dict) and link.get("rel") in ("approve", "payer-action"):
            approve_url = str(link["href"])
    reference_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    captures: list[PayPalCapture] = []
    units = body.get("purchase_units") or ()
    if units:
        unit = units[0]
        reference_id = unit.get("reference_id")
        amount = unit.get("amount")
        if isinstance(amount, dict):
            currency = str(amount["currency_code"])
            amount_minor = from_paypal_amount(str(amount["value"]), currency)
        for capture in (unit.get("payments") or {}).get("captures") or ():
            capture_currency = str(capture["amount"]["currency_code"])
            captures.append(
                PayPalCapture(
                    id=str(capture["id"]),
                    status=str(capture["status"]),
                    amount_minor=from_paypal_amount(
                        str(capture["amount"]["value"]), capture_currency
                    ),
                    currency=capture_currency,
                )
            )
    return PayPalOrder(
        id=str(body["id"]),
        status=str(body["status"]),
        approve_url=approve_url,
        reference_id=reference_id,
        amount_minor=amount_minor,
        currency=currency,
        captures=tuple(captures),
    )
