"""A local PayPal REST API for the PayPal tests: a stdlib HTTP server on a free 127.0.0.1 port
(in a thread) following PayPal's documented shapes for the endpoints the client uses:

- `POST /v1/oauth2/token` (Basic client id/secret, `grant_type=client_credentials`);
- `POST /v2/checkout/orders`, `GET /v2/checkout/orders/{id}`,
  `POST /v2/checkout/orders/{id}/capture`, `POST /v2/payments/captures/{id}/refund`;
- `POST /v1/notifications/verify-webhook-signature`.

Everything but the token needs `Authorization: Bearer <token it issued>` (401 `invalid_token`
otherwise). `PayPal-Request-Id` makes a POST idempotent: a repeat gets the first successful
answer replayed (error answers are not kept, so a capture refused before approval can be retried
with its id; whether PayPal itself keeps errors is not clearly documented: rely on neither).
An order must be approved by the buyer before capture: `approve(order_id)` (or a GET of its approve
link) is the buyer. Webhook deliveries made by `sign_webhook` verify as SUCCESS; anything else,
including a delivery changed afterwards, as FAILURE. Test hooks: `decline(order_id)` (the
payer's instrument is refused at capture), `fail_next(status)`, `expire_tokens()`.
The fixture `paypal_standin` gives a fresh one per test.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import re
import secrets
import string
import threading
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

CLIENT_ID = "amesa-paypal-client"
CLIENT_SECRET = "amesa-paypal-secret"
WEBHOOK_ID = "8PT597110X687430LKGECATA"
_NO_DECIMALS = frozenset({"JPY", "HUF", "TWD"})
_VALUE = re.compile(r"^((-?[0-9]+)|(-?([0-9]+)?[.][0-9]+))$")


def _paypal_id(length: int = 17) -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Problem(Exception):
    """An error answer in PayPal's shape."""

    def __init__(self, status: int, name: str, issue: str | None, description: str) -> None:
        super().__init__(name)
        messages = {
            400: "Request is not well-formed, syntactically incorrect, or violates schema.",
            404: "The specified resource does not exist.",
            422: "The requested action could not be performed, semantically incorrect, or "
            "failed business validation.",
            500: "An internal server error has occurred.",
        }
        self.status = status
        self.body: dict[str, Any] = {
            "name": name,
            "message": messages.get(status, description),
            "debug_id": uuid.uuid4().hex[:13],
            "links": [],
        }
        if issue is not None:
            self.body["details"] = [{"issue": issue, "description": description}]


@dataclass
class _Capture:
    id: str
    order_id: str
    currency: str
    value: str
    status: str = "COMPLETED"
    refunded: Decimal = Decimal(0)


@dataclass
class PayPalStandIn:
    base_url: str = ""
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    token_lifetime_s: int = 32400
    # What tests look at.
    token_requests: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    captures: dict[str, _Capture] = field(default_factory=dict)
    _tokens: set[str] = field(default_factory=set)
    _replies: dict[tuple[str, str], tuple[int, dict[str, Any]]] = field(default_factory=dict)
    _declined: set[str] = field(default_factory=set)
    _failures: list[int] = field(default_factory=list)
    _signing_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- Test hooks ---------------------------------------------------------------------------

    def approve(self, order_id: str) -> None:
        """The buyer approves the order on PayPal's page."""
        with self._lock:
            order = self.orders[order_id]
            if order["status"] in ("CREATED", "PAYER_ACTION_REQUIRED"):
                order["status"] = "APPROVED"
                self._declined.discard(order_id)  # a new approval picks another instrument
                order["payer"] = {
                    "name": {"given_name": "John", "surname": "Doe"},
                    "email_address": "buyer@example.com",
                    "payer_id": "QYR5Z8XDVJNXQ",
                    "address": {"country_code": "US"},
                }
                order["links"] = [
                    link for link in order["links"] if link["rel"] not in ("approve",)
                ]

    def decline(self, order_id: str) -> None:
        """The payer's funding instrument will be refused when the order is captured (until
        the payer approves the order again with another one)."""
        with self._lock:
            self._declined.add(order_id)

    def fail_next(self, status: int) -> None:
        """The next API call (not a token request) answers `status` with an error body."""
        with self._lock:
            self._failures.append(status)

    def expire_tokens(self) -> None:
        """Every issued token stops working, as when PayPal expires one early."""
        with self._lock:
            self._tokens.clear()

    def sign_webhook(
        self, event: dict[str, Any], webhook_id: str = WEBHOOK_ID
    ) -> tuple[dict[str, str], bytes]:
        """A delivery of `event` to `webhook_id`: the headers and raw body PayPal would send."""
        transmission_id = str(uuid.uuid1())
        transmission_time = _now()
        body = json.dumps(event).encode()
        headers = {
            "PAYPAL-AUTH-ALGO": "SHA256withRSA",
            "PAYPAL-CERT-URL": f"{self.base_url}/v1/notifications/certs/CERT-standin",
            "PAYPAL-TRANSMISSION-ID": transmission_id,
            "PAYPAL-TRANSMISSION-SIG": self._signature(
                transmission_id, transmission_time, webhook_id, event
            ),
            "PAYPAL-TRANSMISSION-TIME": transmission_time,
            "Content-Type": "application/json",
        }
        return headers, body

    @staticmethod
    def event(event_type: str, resource: dict[str, Any]) -> dict[str, Any]:
        """A webhook event in PayPal's envelope, e.g. `PAYMENT.CAPTURE.COMPLETED`."""
        return {
            "id": f"WH-{_paypal_id(17)}-{_paypal_id(17)}",
            "event_version": "1.0",
            "create_time": _now(),
            "resource_type": "capture",
            "resource_version": "2.0",
            "event_type": event_type,
            "summary": f"{event_type} (stand-in)",
            "resource": resource,
            "links": [],
        }

    # --- The API ------------------------------------------------------------------------------

    def _signature(
        self, transmission_id: str, transmission_time: str, webhook_id: str, event: dict[str, Any]
    ) -> str:
        # PayPal signs "<transmission id>|<time>|<webhook id>|<crc32 of the body>" with its
        # certificate; the stand-in uses an HMAC over the same message, with the CRC taken over
        # the canonical JSON of the event since the verification API receives it re-serialised.
        canonical = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
        message = f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(canonical)}"
        digest = hmac.new(self._signing_key, message.encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    def token(self, authorization: str | None, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if authorization != f"Basic {expected}":
            return 401, {
                "error": "invalid_client",
                "error_description": "Client Authentication failed",
            }
        if form.get("grant_type") != "client_credentials":
            return 400, {
                "error": "unsupported_grant_type",
                "error_description": "Grant Type is NULL",
            }
        token = f"A21AA{secrets.token_urlsafe(48)}"
        with self._lock:
            self.token_requests += 1
            self._tokens.add(token)
        return 200, {
            "scope": "https://uri.paypal.com/services/payments/payment "
            "https://uri.paypal.com/services/payments/refund",
            "access_token": token,
            "token_type": "Bearer",
            "app_id": "APP-80W284485P519543T",
            "expires_in": self.token_lifetime_s,
            "nonce": f"{_now()}{secrets.token_urlsafe(16)}",
        }

    def authorized(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        with self._lock:
            return authorization.removeprefix("Bearer ") in self._tokens

    def api(
        self, method: str, path: str, body: dict[str, Any], request_id: str | None, prefer: str
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append((method, path))
            if self._failures:
                status = self._failures.pop(0)
                raise _Problem(status, "INTERNAL_SERVER_ERROR", None, "stand-in failure")
            if method == "POST" and request_id:
                replay = self._replies.get((path, request_id))
                if replay is not None:
                    return replay
            status, answer = self._route(method, path, body, prefer)
            if method == "POST" and request_id and status < 500:
                self._replies[(path, request_id)] = (status, answer)
            return status, answer

    def _route(
        self, method: str, path: str, body: dict[str, Any], prefer: str
    ) -> tuple[int, dict[str, Any]]:
        representation = "return=representation" in prefer
        if method == "POST" and path == "/v2/checkout/orders":
            return self._create_order(body, representation)
        order = re.fullmatch(r"/v2/checkout/orders/([A-Z0-9]+)", path)
        if method == "GET" and order:
            return 200, self._order(order[1])
        capture = re.fullmatch(r"/v2/checkout/orders/([A-Z0-9]+)/capture", path)
        if method == "POST" and capture:
            return self._capture(capture[1])
        refund = re.fullmatch(r"/v2/payments/captures/([A-Z0-9]+)/refund", path)
        if method == "POST" and refund:
            return self._refund(refund[1], body, representation)
        if method == "POST" and path == "/v1/notifications/verify-webhook-signature":
            return self._verify(body)
        raise _Problem(404, "RESOURCE_NOT_FOUND", "INVALID_URI", "The URI requested is invalid.")

    def _create_order(
        self, body: dict[str, Any], representation: bool
    ) -> tuple[int, dict[str, Any]]:
        if body.get("intent") not in ("CAPTURE", "AUTHORIZE"):
            raise _Problem(400, "INVALID_REQUEST", "MISSING_REQUIRED_PARAMETER", "intent")
        units = body.get("purchase_units")
        if not isinstance(units, list) or not units:
            raise _Problem(400, "INVALID_REQUEST", "MISSING_REQUIRED_PARAMETER", "purchase_units")
        for unit in units:
            amount = unit.get("amount") or {}
            self._check_amount(amount)
        order_id = _paypal_id()
        order = {
            "id": order_id,
            "intent": body["intent"],
            "status": "CREATED",
            "purchase_units": [
                {**unit, "reference_id": unit.get("reference_id", "default")} for unit in units
            ],
            "create_time": _now(),
            "links": [
                {
                    "href": f"{self.base_url}/v2/checkout/orders/{order_id}",
                    "rel": "self",
                    "method": "GET",
                },
                {
                    "href": f"{self.base_url}/checkoutnow?token={order_id}",
                    "rel": "approve",
                    "method": "GET",
                },
                {
                    "href": f"{self.base_url}/v2/checkout/orders/{order_id}",
                    "rel": "update",
                    "method": "PATCH",
                },
                {
                    "href": f"{self.base_url}/v2/checkout/orders/{order_id}/capture",
                    "rel": "capture",
                    "method": "POST",
                },
            ],
        }
        self.orders[order_id] = order
        if representation:
            return 201, json.loads(json.dumps(order))
        return 201, {"id": order_id, "status": "CREATED", "links": order["links"]}

    @staticmethod
    def _check_amount(amount: dict[str, Any]) -> None:
        currency, value = amount.get("currency_code"), amount.get("value")
        if not isinstance(currency, str) or len(currency) != 3:
            raise _Problem(400, "INVALID_REQUEST", "MISSING_REQUIRED_PARAMETER", "currency_code")
        if not isinstance(value, str) or not _VALUE.fullmatch(value):
            raise _Problem(400, "INVALID_REQUEST", "INVALID_PARAMETER_SYNTAX", "value")
        if currency in _NO_DECIMALS and "." in value:
            raise _Problem(
                422,
                "UNPROCESSABLE_ENTITY",
                "DECIMALS_NOT_SUPPORTED",
                "Currency does not support decimals.",
            )
        if "." in value and len(value.split(".")[1]) > 2:
            raise _Problem(
                422,
                "UNPROCESSABLE_ENTITY",
                "DECIMAL_PRECISION",
                "If the currency supports decimals, only two decimal place precision is supported.",
            )
        if Decimal(value) <= 0:
            raise _Problem(
                422,
                "UNPROCESSABLE_ENTITY",
                "CANNOT_BE_ZERO_OR_NEGATIVE",
                "Must be greater than zero.",
            )

    def _order(self, order_id: str) -> dict[str, Any]:
        order = self.orders.get(order_id)
        if order is None:
            raise _Problem(
                404,
                "RESOURCE_NOT_FOUND",
                "INVALID_RESOURCE_ID",
                "Specified resource ID does not exist. Please check the resource ID and try again.",
            )
        copied: dict[str, Any] = json.loads(json.dumps(order))
        return copied

    def _capture(self, order_id: str) -> tuple[int, dict[str, Any]]:
        order = self._order(order_id)
        if order["status"] == "COMPLETED":
            raise _Problem(
                422,
                "UNPROCESSABLE_ENTITY",
                "ORDER_ALREADY_CAPTURED",
                "Order already captured.If 'intent=CAPTURE' only one capture per order is allowed.",
            )
        if order["status"] != "APPROVED":
            raise _Problem(
                422,
                "UNPROCESSABLE_ENTITY",
                "ORDER_NOT_APPROVED",
                "Payer has not yet approved the Order for payment. Please redirect the payer "
                "to the 'rel':'approve' url returned as part of the HATEOAS links within the "
                "Create Order call or provide a valid payment_source in the request.",
            )
        if order_id in self._declined:
            # As PayPal does: the payer must go back to the approval page and pick another
            # funding source; the same order can then be captured.
            self.orders[order_id]["status"] = "PAYER_ACTION_REQUIRED"
            raise _Problem(
                422,
                "UNPROCESSABLE_ENTITY",
                "INSTRUMENT_DECLINED",
                "The instrument presented  was either declined by the processor or bank, or it "
                "can't be used for this payment.",
            )
        unit = order["purchase_units"][0]
        capture = _Capture(
            id=_paypal_id(),
            order_id=order_id,
            currency=unit["amount"]["currency_code"],
            value=unit["amount"]["value"],
        )
        self.captures[capture.id] = capture
        stored = self.orders[order_id]
        stored["status"] = "COMPLETED"
        stored["purchase_units"][0]["payments"] = {"captures": [self._capture_body(capture)]}
        stored["links"] = [link for link in stored["links"] if link["rel"] == "self"]
        return 201, self._order(order_id)

    def _capture_body(self, capture: _Capture) -> dict[str, Any]:
        return {
            "id": capture.id,
            "status": capture.status,
            "amount": {"currency_code": capture.currency, "value": capture.value},
            "final_capture": True,
            "seller_protection": {"status": "ELIGIBLE"},
            "create_time": _now(),
            "update_time": _now(),
            "links": [
                {
                    "href": f"{self.base_url}/v2/payments/captures/{capture.id}",
                    "rel": "self",
                    "method": "GET",
                },
                {
                    "href": f"{self.base_url}/v2/payments/captures/{capture.id}/refund",
                    "rel": "refund",
                    "method": "POST",
                },
                {
                    "href": f"{self.base_url}/v2/checkout/orders/{capture.order_id}",
                    "rel": "up",
                    "method": "GET",
                },
            ],
        }

    def _refund(
        self, capture_id: str, body: dict[str, Any], representation: bool
    ) -> tuple[int, dict[str, Any]]:
        capture = self.captures.get(capture_id)
        if capture is None:
            raise _Problem(
                404,
                "RESOURCE_NOT_FOUND",
                "INVALID_RESOURCE_ID",
                "Specified resource ID does not exist. Please check the resource ID and try again.",
            )
        remaining = Decimal(capture.value) - capture.refunded
        if remaining <= 0:
            raise _Problem(
                422,
                "UNPROCESSABLE_ENTITY",
                "CAPTURE_FULLY_REFUNDED",
                "The capture has already been fully refunded",
            )
        amount = body.get("amount")
        if amount is None:
            value = remaining
        else:
            self._check_amount(amount)
            if amount["currency_code"] != capture.currency:
                raise _Problem(
                    422,
                    "UNPROCESSABLE_ENTITY",
                    "REFUND_CAPTURE_CURRENCY_MISMATCH",
                    "Refund must be in the same currency as the capture.",
                )
            value = Decimal(amount["value"])
            if value > remaining:
                raise _Problem(
                    422,
                    "UNPROCESSABLE_ENTITY",
                    "REFUND_AMOUNT_EXCEEDED",
                    "The refund amount must be less than or equal to the capture amount that "
                    "has not yet been refunded.",
                )
        capture.refunded += value
        capture.status = (
            "REFUNDED" if capture.refunded == Decimal(capture.value) else ("PARTIALLY_REFUNDED")
        )
        order = self.orders[capture.order_id]
        order["purchase_units"][0]["payments"]["captures"] = [self._capture_body(capture)]
        refund_id = _paypal_id()
        links = [
            {
                "href": f"{self.base_url}/v2/payments/refunds/{refund_id}",
                "rel": "self",
                "method": "GET",
            },
            {
                "href": f"{self.base_url}/v2/payments/captures/{capture.id}",
                "rel": "up",
                "method": "GET",
            },
        ]
        if not representation:
            return 201, {"id": refund_id, "status": "COMPLETED", "links": links}
        exponent = 0 if capture.currency in _NO_DECIMALS else 2
        return 201, {
            "id": refund_id,
            "status": "COMPLETED",
            "amount": {
                "currency_code": capture.currency,
                "value": str(value.quantize(Decimal(1).scaleb(-exponent))),
            },
            "note_to_payer": body.get("note_to_payer"),
            "create_time": _now(),
            "update_time": _now(),
            "links": links,
        }

    def _verify(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        required = (
            "auth_algo",
            "cert_url",
            "transmission_id",
            "transmission_sig",
            "transmission_time",
            "webhook_id",
            "webhook_event",
        )
        for name in required:
            if not body.get(name):
                raise _Problem(400, "VALIDATION_ERROR", "MISSING_REQUIRED_PARAMETER", name)
        expected = self._signature(
            body["transmission_id"],
            body["transmission_time"],
            body["webhook_id"],
            body["webhook_event"],
        )
        good = hmac.compare_digest(expected, str(body["transmission_sig"]))
        return 200, {"verification_status": "SUCCESS" if good else "FAILURE"}


def _handler(standin: PayPalStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("paypal-debug-id", uuid.uuid4().hex[:13])
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("content-length", "0")))

        def _api(self, method: str) -> None:
            raw = self._body() if method == "POST" else b""
            path = urlsplit(self.path).path
            if method == "POST" and path == "/v1/oauth2/token":
                form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                self._send(*standin.token(self.headers.get("authorization"), form))
                return
            if not standin.authorized(self.headers.get("authorization")):
                self._send(
                    401,
                    {
                        "error": "invalid_token",
                        "error_description": "Token signature verification failed",
                    },
                )
                return
            try:
                body = json.loads(raw) if raw else {}
                if not isinstance(body, dict):
                    raise _Problem(400, "INVALID_REQUEST", "MALFORMED_REQUEST_JSON", "not JSON")
                status, answer = standin.api(
                    method,
                    path,
                    body,
                    self.headers.get("paypal-request-id"),
                    self.headers.get("prefer", "return=minimal"),
                )
            except _Problem as problem:
                self._send(problem.status, problem.body)
            except json.JSONDecodeError:
                self._send(400, _Problem(400, "INVALID_REQUEST", None, "").body)
            else:
                self._send(status, answer)

        def do_POST(self) -> None:
            self._api("POST")

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/checkoutnow":
                # The approve link: opening it is the buyer approving.
                token = parse_qs(parts.query).get("token", [""])[0]
                if token in standin.orders:
                    standin.approve(token)
                    self._send(200, {"approved": token})
                else:
                    self._send(404, {"error": "unknown order"})
                return
            self._api("GET")

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@pytest.fixture(name="paypal_standin")
def paypal_standin_fixture() -> Iterator[PayPalStandIn]:
    standin = PayPalStandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(standin))
    standin.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield standin
    finally:
        server.shutdown()
        server.server_close()
