"""PayPal on the money path (SPEC §5): an order created by PurchaseTickets is paid through a
PayPal order (Orders v2, intent CAPTURE) that the buyer approves on PayPal's page.

    create    CreatePayPalOrder: the PayPal order for the order's total (PayPal-Request-Id = order
              id), its id stored as the order's provider_payment_reference; an order that had a
              Stripe PaymentIntent has it cancelled first and switches to PAYPAL
    capture   CapturePayPalOrder: capture at PayPal, then fulfil in a short transaction; a
              declined funding source fails the order and releases its tickets
    webhook   PayPalWebhook: verified by PayPal, recorded in the inbox (provider_events), applied
              once by re-reading the PayPal order (an event only names the order to look at)

As in checkout.py, no database transaction is open during a PayPal call, and every step is safe
to repeat: fulfilment and release are decided under the order's row lock (orders.fulfil /
orders.release), so capture, webhook and expiry racing on one order record one outcome.
"""

from __future__ import annotations

import datetime
import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from sqlalchemy import select, update

from server.core.deps import Deps
from server.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    Unauthenticated,
    Unavailable,
)
from server.lottery.lifecycle import utcnow
from server.payment import orders
from server.payment.checkout import Checkout
from server.payment.gateways import Gateways, provider_unavailable
from server.payment.mapping import order_name
from server.payment.models import (
    Order,
    OrderState,
    PaymentProvider,
    Transaction,
    TransactionKind,
    TransactionState,
)
from server.payment.providers import (
    CardDeclined,
    PaymentNotApproved,
    ProviderError,
    ProviderNotFound,
    ProviderUnavailable,
)
from server.payment.providers.paypal import PayPalCapture, PayPalClient, PayPalOrder
from server.payment.providers.stripe_gateway import PaymentIntentStatus
from server.payment.webhook import apply_once

log = logging.getLogger("amesa.payment.paypal")

# PayPal-signed transmission times further than this from now are refused (replays).
WEBHOOK_TOLERANCE: Final = datetime.timedelta(seconds=300)
SIGNATURE_HEADERS: Final = (
    "paypal-auth-algo",
    "paypal-cert-url",
    "paypal-transmission-id",
    "paypal-transmission-sig",
    "paypal-transmission-time",
)
_FAILED_CAPTURES: Final = frozenset({"DECLINED", "FAILED"})
# Captures that moved money (a refunded one was completed first).
_CAPTURED: Final = frozenset({"COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED"})
_RECONCILE_BATCH: Final = 100


def capture_request_id(order_id: uuid.UUID) -> str:
    """PayPal-Request-Id of an order's capture: derived from the order id but distinct from
    the create call's, so the two can never be answered with each other's stored reply."""
    return f"capture-{order_id}"


def _not_pending(order: Order) -> FailedPrecondition:
    return FailedPrecondition(
        "ORDER_NOT_PENDING",
        f"the order is {order.state.value}",
        metadata={"state": order.state.value},
    )


def check_redirect_url(url: str, *, allowed_base: str, field: str) -> None:
    """REDIRECT_URL_NOT_ALLOWED unless `url` is under `allowed_base` (same scheme, host and port,
    and a path below the base's). There is no setting for allowed origins yet, so the web app's
    base URL (settings.notify.web_base_url) is the one allowed prefix."""
    if not url:
        return
    target, base = urlsplit(url), urlsplit(allowed_base)
    base_path = base.path.rstrip("/")
    allowed = (
        target.scheme == base.scheme
        and target.netloc.lower() == base.netloc.lower()
        and not target.username
        and (target.path == base_path or target.path.startswith(f"{base_path}/"))
    )
    if not allowed:
        raise InvalidArgument(
            "REDIRECT_URL_NOT_ALLOWED",
            f"{field} must be under {allowed_base}",
            violations=[FieldViolation(field, f"must be under {allowed_base}")],
        )


class PayPalFlow:
    def __init__(self, deps: Deps) -> None:
        self._database = deps.database
        self._gateways = deps.gateways
        self._config = deps.settings.payment
        self._web_base_url = deps.settings.notify.web_base_url
        self._checkout = Checkout(deps)

    # --- CreatePayPalOrder -------------------------------------------------------------------

    async def create(
        self, order_id: uuid.UUID, *, user_id: uuid.UUID, return_url: str, cancel_url: str
    ) -> tuple[Order, str]:
        """(the order, the approval URL). A second call returns the PayPal order already made.

        `return_url` / `cancel_url` are checked, but PayPalClient.create_order has no parameter
        to pass them on yet: PayPal then uses the URLs configured on the REST app."""
        check_redirect_url(return_url, allowed_base=self._web_base_url, field="return_url")
        check_redirect_url(cancel_url, allowed_base=self._web_base_url, field="cancel_url")
        paypal = self._gateways.paypal
        order = await self._pending_order(order_id, user_id=user_id)
        if order.provider is PaymentProvider.STRIPE:
            order = await self._leave_stripe(order)
        try:
            if order.provider_payment_reference is not None:
                created = await paypal.get_order(order.provider_payment_reference)
            else:
                created = await paypal.create_order(
                    amount_minor=order.total_minor,
                    currency=order.currency,
                    reference_id=str(order.id),
                    request_id=orders.charge_key(order.id),
                    description=f"{order.quantity} Amesa ticket(s)",
                )
        except ProviderUnavailable as error:
            raise provider_unavailable(error) from None
        async with self._database.session(system=True) as session:
            await orders.set_payment_reference(session, order_id=order.id, reference=created.id)
        stored = (await self._checkout.outcome(order.id)).order
        if stored.provider_payment_reference != created.id:
            # Another call stored its PayPal order first (PayPal's replay window had passed):
            # that one is the order's.
            assert stored.provider_payment_reference is not None
            try:
                created = await paypal.get_order(stored.provider_payment_reference)
            except ProviderUnavailable as error:
                raise provider_unavailable(error) from None
        return stored, created.approve_url or ""

    async def _pending_order(self, order_id: uuid.UUID, *, user_id: uuid.UUID) -> Order:
        async with self._database.session(system=True) as session:
            order = await orders.get_order(session, user_id=user_id, order_id=order_id)
        if order.state is not OrderState.PENDING_PAYMENT:
            raise _not_pending(order)
        return order

    async def _leave_stripe(self, order: Order) -> Order:
        """Cancels the order's Stripe PaymentIntent, then makes the order a PayPal one. A
        PaymentIntent that cannot be cancelled any more decides instead: paid → the order is
        fulfilled (ORDER_NOT_PENDING), processing → PAYMENT_IN_PROGRESS."""
        reference = order.provider_payment_reference
        if reference is None and self._gateways.stripe_gateway is not None:
            # PurchaseTickets may have died between creating the PaymentIntent and storing its
            # id: Stripe finds it by the order id in its metadata.
            try:
                found = await self._checkout.find_intent(order.id)
            except ProviderError as error:
                raise provider_unavailable(error) from None
            reference = found.id if found is not None else None
        if reference is not None:
            stripe = self._gateways.stripe
            try:
                intent = await stripe.cancel_payment_intent(reference)
            except ProviderUnavailable as error:
                raise provider_unavailable(error) from None
            except ProviderError as refused:
                log.info("order %s: Stripe payment not cancelled: %s", order.id, refused)
                try:
                    intent = await stripe.retrieve_payment_intent(reference)
                except ProviderError as error:
                    raise provider_unavailable(error) from None
            if intent.status is PaymentIntentStatus.SUCCEEDED:
                await self._checkout.settle(order.id, intent)
                raise _not_pending((await self._checkout.outcome(order.id)).order)
            if intent.status is not PaymentIntentStatus.CANCELED:
                raise FailedPrecondition(
                    "PAYMENT_IN_PROGRESS",
                    "the order's card payment is being processed; call ConfirmOrderPayment later",
                    metadata={"stripe_status": intent.status.value},
                )
        async with self._database.session(system=True) as session:
            switched = await session.scalar(
                update(Order)
                .where(
                    Order.id == order.id,
                    Order.state == OrderState.PENDING_PAYMENT,
                    Order.provider == PaymentProvider.STRIPE,
                )
                .values(provider=PaymentProvider.PAYPAL, provider_payment_reference=None)
                .returning(Order.id)
            )
            if switched is not None:
                await session.execute(
                    update(Transaction)
                    .where(
                        Transaction.order_id == order.id,
                        Transaction.kind == TransactionKind.CHARGE,
                        Transaction.state == TransactionState.PENDING,
                    )
                    .values(provider=PaymentProvider.PAYPAL, provider_payment_reference=None)
                )
        current = (await self._checkout.outcome(order.id)).order
        if current.state is not OrderState.PENDING_PAYMENT:
            raise _not_pending(current)
        return current

    # --- CapturePayPalOrder ------------------------------------------------------------------

    async def capture(self, order_id: uuid.UUID, *, user_id: uuid.UUID) -> Order:
        async with self._database.session(system=True) as session:
            order = await orders.get_order(session, user_id=user_id, order_id=order_id)
        if order.state in orders.PAID_STATES:
            return order
        if order.state is not OrderState.PENDING_PAYMENT:
            raise _not_pending(order)
        reference = order.provider_payment_reference
        if order.provider is not PaymentProvider.PAYPAL or reference is None:
            raise FailedPrecondition(
                "PAYPAL_ORDER_NOT_CREATED", "call CreatePayPalOrder for this order first"
            )
        try:
            captured = await self._capture_at_paypal(order, reference)
        except ProviderUnavailable as error:
            raise provider_unavailable(error) from None
        if captured is not None and captured.status == "COMPLETED":
            await self._fulfil(order.id, captured)
        # PENDING (e.g. held for review): the PAYMENT.CAPTURE.COMPLETED webhook fulfils later.
        return (await self._checkout.outcome(order.id)).order

    async def _capture_at_paypal(self, order: Order, reference: str) -> PayPalCapture | None:
        """The capture PayPal made, or None when the order was settled from PayPal's state
        instead (captured by an earlier call whose answer was lost)."""
        paypal = self._gateways.paypal
        first = capture_request_id(order.id)
        # PayPal may keep a refusal under its request id (undocumented): a capture refused
        # before approval is retried once under a second id, used only once approved.
        for request_id in (first, f"{first}-approved"):
            try:
                return (await paypal.capture_order(reference, request_id=request_id)).capture
            except PaymentNotApproved:
                if request_id == first and (await paypal.get_order(reference)).status == (
                    "APPROVED"
                ):
                    continue
                raise FailedPrecondition(
                    "PAYPAL_ORDER_NOT_APPROVED",
                    "the buyer has not approved the PayPal order yet; send them to the approval "
                    "URL",
                ) from None
            except CardDeclined as declined:
                # Recoverable at PayPal: the buyer approves the same order again with another
                # funding source, so the order keeps its tickets until it expires.
                code = declined.decline_code or declined.code or "DECLINED"
                raise FailedPrecondition(
                    "PAYMENT_DECLINED",
                    "PayPal declined the funding source; send the buyer back to the approval URL "
                    "to choose another",
                    metadata={"order": order_name(order), "provider_code": code},
                ) from None
            except ProviderNotFound:
                raise FailedPrecondition(
                    "PAYPAL_ORDER_NOT_CREATED",
                    "PayPal no longer knows the order's PayPal order; create a new order",
                ) from None
            except ProviderUnavailable:
                raise
            except ProviderError as refused:
                # E.g. ORDER_ALREADY_CAPTURED: captured by a call whose answer was lost.
                log.info("order %s: capture refused (%s); re-reading PayPal", order.id, refused)
                await self.settle(order.id, reference)
                if (await self._checkout.outcome(order.id)).order.state is (
                    OrderState.PENDING_PAYMENT
                ):
                    raise
                return None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fulfil(self, order_id: uuid.UUID, captured: PayPalCapture) -> None:
        async with self._database.session(system=True) as session:
            done = await orders.fulfil(
                session, order_id=order_id, charge_reference=captured.id, now=utcnow()
            )
        if done.order.total_minor != captured.amount_minor or done.order.currency != (
            captured.currency
        ):
            log.error(
                "order %s: PayPal captured %s %s, the order is %s %s",
                order_id,
                captured.amount_minor,
                captured.currency,
                done.order.total_minor,
                done.order.currency,
            )
        if done.tickets or done.refunded:
            await self._checkout.after_fulfilment(done)

    async def _fail(self, order_id: uuid.UUID, *, reason: str) -> None:
        async with self._database.session(system=True) as session:
            released = await orders.release(
                session,
                order_id=order_id,
                state=OrderState.FAILED,
                failure_reason=reason,
                now=utcnow(),
            )
        if released is not None:
            await self._checkout.counters_changed(released.house_id)

    # --- Settling from PayPal's state --------------------------------------------------------

    async def settle(self, order_id: uuid.UUID, paypal_order_id: str) -> None:
        """Re-reads the PayPal order and applies it: a completed capture fulfils the order, a
        declined or failed one (and none completed) fails it; anything else changes nothing.
        A PayPal order made for this order (its reference_id) whose id was never stored, because
        the process died right after creating it, is adopted."""
        found = await self._gateways.paypal.get_order(paypal_order_id)
        if found.reference_id != str(order_id):
            log.warning(
                "PayPal order %s belongs to %s, not %s", found.id, found.reference_id, order_id
            )
            return
        async with self._database.session(system=True) as session:
            await orders.set_payment_reference(session, order_id=order_id, reference=found.id)
        completed = next((c for c in found.captures if c.status in _CAPTURED), None)
        if completed is not None:
            await self._fulfil(order_id, completed)
        elif found.captures and all(c.status in _FAILED_CAPTURES for c in found.captures):
            await self._fail(order_id, reason=found.captures[-1].status)

    async def reconcile(self, *, older_than: datetime.timedelta) -> int:
        """Pending PayPal orders with a PayPal order are compared with PayPal and settled, so a
        capture whose answer was lost (and whose webhook never came) still fulfils its order.
        Returns how many were looked at; for the payment job, next to Checkout.reconcile."""
        async with self._database.session(system=True) as session:
            pending = (
                await session.execute(
                    select(Order.id, Order.provider_payment_reference)
                    .where(
                        Order.state == OrderState.PENDING_PAYMENT,
                        Order.provider == PaymentProvider.PAYPAL,
                        Order.provider_payment_reference.is_not(None),
                        Order.create_time <= utcnow() - older_than,
                    )
                    .limit(_RECONCILE_BATCH)
                )
            ).all()
        settled = 0
        for order_id, reference in pending:
            assert reference is not None  # selected IS NOT NULL
            try:
                await self.settle(order_id, reference)
                settled += 1
            except ProviderError as error:
                log.warning("order %s: could not reconcile with PayPal: %s", order_id, error)
        return settled

    # --- PayPalWebhook -----------------------------------------------------------------------

    async def webhook(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Verifies, records and applies one delivery; returns whether this call applied it
        (False for a duplicate)."""
        paypal = self._gateways.paypal
        webhook_id = self._config.paypal_webhook_id
        if webhook_id is None:
            raise FailedPrecondition("PROVIDER_DISABLED", "PayPal webhooks are not configured")
        event = await verified_event(
            paypal,
            headers,
            body,
            webhook_id=webhook_id,
            paypal_base_url=self._config.paypal_base_url,
            now=utcnow(),
        )
        return await apply_once(
            self._database,
            provider=PaymentProvider.PAYPAL,
            event_id=event["id"],
            event_type=event["event_type"],
            payload=event,
            handle=lambda: self._handle(event),
            # Not marked processed: PayPal delivers it again and it is applied then.
            retry=Unavailable(
                "PROVIDER_UNAVAILABLE", "the event could not be applied yet; PayPal retries it"
            ),
            now=utcnow(),
        )

    async def _handle(self, event: dict[str, Any]) -> None:
        if not str(event["event_type"]).startswith("PAYMENT.CAPTURE."):
            return
        resource: dict[str, Any] = event["resource"]
        related = (resource.get("supplementary_data") or {}).get("related_ids") or {}
        named = related.get("order_id") if isinstance(related, dict) else None
        paypal_order_id = named if isinstance(named, str) else None
        order_id: uuid.UUID | None = None
        async with self._database.session(system=True) as session:
            if paypal_order_id is not None:
                order_id = await session.scalar(
                    select(Order.id).where(
                        Order.provider == PaymentProvider.PAYPAL,
                        Order.provider_payment_reference == paypal_order_id,
                    )
                )
            ours = _uuid_or_none(resource.get("custom_id"))
            if order_id is None and ours is not None:
                # Our order id, set as custom_id when the PayPal order was created.
                row = (
                    await session.execute(
                        select(Order.id, Order.provider_payment_reference).where(
                            Order.id == ours, Order.provider == PaymentProvider.PAYPAL
                        )
                    )
                ).first()
                if row is not None:
                    order_id = row.id
                    paypal_order_id = paypal_order_id or row.provider_payment_reference
        if order_id is None or paypal_order_id is None:
            log.info("paypal event %s names no order of ours", event["id"])
            return
        await self.settle(order_id, paypal_order_id)


def _uuid_or_none(value: object) -> uuid.UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


# --- Webhook verification ------------------------------------------------------------------------


def _parse_transmission_time(value: str) -> datetime.datetime | None:
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment


def _cert_url_allowed(url: str, *, paypal_base_url: str) -> bool:
    """PayPal's own certificates (https, *.paypal.com), or the configured API's (the sandbox or
    a local stand-in serves them under its own origin)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and (host == "paypal.com" or host.endswith(".paypal.com")):
        return True
    base = urlsplit(paypal_base_url)
    return parts.scheme == base.scheme and parts.netloc.lower() == base.netloc.lower()


def _invalid_signature(why: str) -> Unauthenticated:
    return Unauthenticated("SIGNATURE_INVALID", f"the PayPal signature does not verify: {why}")


async def verified_event(
    paypal: PayPalClient,
    headers: Mapping[str, str],
    body: bytes,
    *,
    webhook_id: str,
    paypal_base_url: str,
    now: datetime.datetime,
) -> dict[str, Any]:
    """The event once PayPal vouches for the delivery; nothing is stored otherwise."""
    lowered = {name.lower(): value for name, value in headers.items()}
    missing = [name for name in SIGNATURE_HEADERS if not lowered.get(name)]
    if missing:
        raise _invalid_signature(f"missing {', '.join(missing)}")
    if not _cert_url_allowed(lowered["paypal-cert-url"], paypal_base_url=paypal_base_url):
        raise _invalid_signature("the certificate URL is not PayPal's")
    sent = _parse_transmission_time(lowered["paypal-transmission-time"])
    if sent is None:
        raise _invalid_signature("malformed paypal-transmission-time")
    # Checked before asking PayPal, so replays of old deliveries cost no API call.
    if abs(now - sent) > WEBHOOK_TOLERANCE:
        raise Unauthenticated(
            "SIGNATURE_STALE", "the transmission time is more than 300 s from now"
        )
    try:
        good = await paypal.verify_webhook_signature(lowered, body, webhook_id)
    except ProviderUnavailable as error:
        raise provider_unavailable(error) from None
    except ProviderError as refused:
        raise _invalid_signature(refused.code or "refused by PayPal") from None
    if not good:
        raise _invalid_signature("PayPal did not confirm it")
    event = json.loads(body)
    if (
        not isinstance(event.get("id"), str)
        or not isinstance(event.get("event_type"), str)
        or not isinstance(event.get("resource"), dict)
    ):
        raise InvalidArgument("PAYLOAD_INVALID", "the body is not a PayPal event")
    verified: dict[str, Any] = event
    return verified


# --- Refunds -------------------------------------------------------------------------------------


async def _capture_to_refund(paypal: PayPalClient, reference: str) -> str | None:
    """The capture a refund's `provider_payment_reference` stands for. Automatic refunds carry
    the capture id, RefundOrder's the PayPal order id (the order's reference): PayPal's ids do
    not tell the two apart, so the order is looked up and a 404 means a capture id."""
    try:
        found: PayPalOrder = await paypal.get_order(reference)
    except ProviderNotFound:
        return reference
    captured = next((c for c in found.captures if c.status in _CAPTURED), None)
    return captured.id if captured is not None else None


async def send_paypal_refund(gateways: Gateways, refund: Transaction) -> dict[str, Any] | None:
    """Sends a PENDING PayPal refund (server/payment/refunds.py `_send` contract): the column
    values of its outcome, or None to retry later. PayPal-Request-Id is the transaction's
    idempotency key, so a retry never refunds twice."""
    assert refund.provider_payment_reference is not None
    try:
        paypal = gateways.paypal
        capture_id = await _capture_to_refund(paypal, refund.provider_payment_reference)
        if capture_id is None:
            return {"state": TransactionState.FAILED, "failure_reason": "not_captured"}
        result = await paypal.refund_capture(
            capture_id,
            amount_minor=refund.amount_minor,
            currency=refund.currency,
            request_id=refund.idempotency_key,
            note_to_payer=refund.reason,
        )
    except FailedPrecondition:  # PayPal disabled since: retry once it is configured again
        log.warning("refund %s: PayPal is not configured", refund.id)
        return None
    except ProviderUnavailable as error:
        log.warning("refund %s: PayPal unavailable: %s", refund.id, error)
        return None
    except ProviderError as error:
        log.error("refund %s refused by PayPal: %s", refund.id, error)
        return {"state": TransactionState.FAILED, "failure_reason": error.code or "refused"}
    if result.status == "PENDING":
        return {"provider_reference": result.id}
    state = TransactionState.SUCCEEDED if result.status == "COMPLETED" else TransactionState.FAILED
    outcome: dict[str, Any] = {"provider_reference": result.id, "state": state}
    if state is TransactionState.FAILED:
        outcome["failure_reason"] = result.status.lower()
    return outcome
