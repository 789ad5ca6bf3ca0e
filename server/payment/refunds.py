"""Refunds: recorded in the ledger first, sent to the provider after commit.

A refund is a REFUND transaction written PENDING in the same database transaction that changes
the order (its state, `refunded_minor`, voided tickets); `send_refund` then calls the
provider with the transaction's idempotency key and records the outcome. Whoever recorded the
refund sends it right after commit, and the payment job sends whatever is left every round
(`send_pending_refunds`), so a refund interrupted by a crash is sent later — never lost, never
sent under another key.

Three sources: an admin's RefundOrder, the automatic refund of a payment that arrived after its
reservation was gone (orders.fulfil), and a cancelled lottery (the `payment.refund_cancelled_house`
outbox message the lottery's cancellation enqueues, worked by `refund_cancelled_houses`).
"""

from __future__ import annotations

import datetime
import logging
import uuid
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import outbox
from server.core.audit import record_audit
from server.core.context import Principal
from server.core.db import Database
from server.core.errors import FailedPrecondition, FieldViolation, InvalidArgument
from server.core.outbox import enqueue
from server.lottery.models import Draw, DrawState, Ticket, TicketState
from server.lottery.refunds import REFUND_TOPIC
from server.payment import promotions
from server.payment.gateways import Gateways
from server.payment.models import (
    Order,
    OrderState,
    PaymentProvider,
    Transaction,
    TransactionKind,
    TransactionState,
)
from server.payment.orders import lock_order, release
from server.payment.providers import ProviderError, ProviderUnavailable

log = logging.getLogger("amesa.payment.refunds")

REFUNDABLE_STATES: Final = frozenset({OrderState.PAID, OrderState.PARTIALLY_REFUNDED})
CANCELLED_LOTTERY_REASON: Final = "lottery cancelled"
_BATCH: Final = 50


async def record_refund(
    session: AsyncSession,
    *,
    order: Order,
    amount_minor: int,
    reason: str,
    request_id: uuid.UUID | None,
    key: str,
    payment_reference: str | None,
) -> Transaction:
    """A PENDING refund of `amount_minor` in the ledger (the caller updates the order)."""
    refund = Transaction(
        user_id=order.user_id,
        order_id=order.id,
        kind=TransactionKind.REFUND,
        amount_minor=amount_minor,
        currency=order.currency,
        provider=order.provider,
        idempotency_key=key,
        provider_payment_reference=payment_reference or order.provider_payment_reference,
        reason=reason,
        request_id=request_id,
    )
    session.add(refund)
    await session.flush()
    await enqueue(
        session,
        topic="notify.refund_issued",
        payload={
            "order": f"users/{order.user_id}/orders/{order.id}",
            "amount": f"{amount_minor / 100:.2f} {order.currency}",
            "reason": reason,
        },
        user_id=order.user_id,
        dedupe_key=f"refund_issued:{key}",
    )
    return refund


async def void_tickets(
    session: AsyncSession, *, order_id: uuid.UUID, now: datetime.datetime
) -> None:
    """A fully refunded order's tickets take no part in the draw (their leaves stay: the log is
    append-only)."""
    await session.execute(
        update(Ticket)
        .where(Ticket.order_id == order_id, Ticket.state != TicketState.VOIDED)
        .values(state=TicketState.VOIDED, void_time=now)
    )


async def refund_order(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    amount_minor: int | None,
    currency: str | None,
    reason: str,
    request_id: uuid.UUID,
    actor: Principal | None,
    now: datetime.datetime,
    allow_after_draw: bool = False,
) -> tuple[Order, Transaction]:
    """RefundOrder: a full (`amount_minor` None) or partial refund of a paid order. A retry with
    the same `request_id` returns the first refund (REQUEST_ID_REUSED if it asked otherwise)."""
    key = f"refund:{request_id}"
    order = await lock_order(session, order_id)
    previous = await session.scalar(select(Transaction).where(Transaction.idempotency_key == key))
    if previous is not None:
        if previous.order_id != order_id or (
            amount_minor is not None and previous.amount_minor != amount_minor
        ):
            raise InvalidArgument(
                "REQUEST_ID_REUSED",
                "request_id was already used with different parameters",
                violations=[FieldViolation("request_id", "already used with other parameters")],
            )
        return order, previous
    if order.state not in REFUNDABLE_STATES:
        raise FailedPrecondition(
            "ORDER_NOT_REFUNDABLE",
            f"only PAID or PARTIALLY_REFUNDED orders can be refunded (state {order.state.value})",
            metadata={"state": order.state.value},
        )
    if currency is not None and currency != order.currency:
        raise InvalidArgument(
            "CURRENCY_MISMATCH",
            f"the order is in {order.currency}",
            violations=[FieldViolation("amount.currency_code", f"must be {order.currency}")],
        )
    refundable = order.total_minor - order.refunded_minor
    amount = refundable if amount_minor is None else amount_minor
    if amount > refundable or amount <= 0:
        raise InvalidArgument(
            "REFUND_AMOUNT_TOO_LARGE",
            f"at most {refundable} can still be refunded",
            violations=[FieldViolation("amount", "exceeds what is left to refund")],
            metadata={"refundable_minor": str(refundable)},
        )
    full = amount == refundable
    if full and not allow_after_draw:
        drawn = await session.scalar(select(Draw.state).where(Draw.house_id == order.house_id))
        if drawn is DrawState.COMPLETED:
            raise FailedPrecondition(
                "DRAW_CONDUCTED",
                "the house's draw was conducted: only a partial refund is possible",
                metadata={"state": order.state.value},
            )
    refund = await record_refund(
        session,
        order=order,
        amount_minor=amount,
        reason=reason,
        request_id=request_id,
        key=key,
        payment_reference=None,
    )
    state = OrderState.REFUNDED if full else OrderState.PARTIALLY_REFUNDED
    await session.execute(
        update(Order)
        .where(Order.id == order.id)
        .values(state=state, refunded_minor=Order.refunded_minor + amount)
    )
    if full:
        await void_tickets(session, order_id=order.id, now=now)
        await promotions.release_redemption(session, order_id=order.id)
    await record_audit(
        session,
        actor=actor,
        action="payment.order.refund",
        resource_name=f"users/{order.user_id}/orders/{order.id}",
        before={"state": order.state.value, "refunded_minor": order.refunded_minor},
        after={"state": state.value, "amount_minor": amount, "reason": reason},
    )
    return await lock_order(session, order.id), refund


# --- Sending refunds -----------------------------------------------------------------------------


# A refund waits for the charge it refunds to be known.
_SENDABLE = (
    Transaction.kind == TransactionKind.REFUND,
    Transaction.state == TransactionState.PENDING,
    Transaction.provider_payment_reference.is_not(None),
)


async def send_refund(database: Database, gateways: Gateways, *, idempotency_key: str) -> bool:
    """Sends one PENDING refund now (whoever just recorded it); True when the provider settled
    it. The payment job sends whatever is left (`send_pending_refunds`)."""
    async with database.session(system=True) as session:
        refund = await session.scalar(
            select(Transaction).where(Transaction.idempotency_key == idempotency_key, *_SENDABLE)
        )
    return refund is not None and await _settle(database, gateways, refund)


async def send_pending_refunds(database: Database, gateways: Gateways) -> int:
    """Sends every PENDING refund to its provider (idempotency key = the transaction's);
    returns how many were settled. Two senders racing send under the same key, which the
    provider answers once."""
    settled = 0
    while True:
        async with database.session(system=True) as session:
            batch = list(
                (
                    await session.scalars(
                        select(Transaction)
                        .where(*_SENDABLE)
                        .order_by(Transaction.create_time)
                        .limit(_BATCH)
                    )
                ).all()
            )
        progressed = [await _settle(database, gateways, refund) for refund in batch]
        settled += sum(progressed)
        if not any(progressed) or len(batch) < _BATCH:
            return settled


async def _settle(database: Database, gateways: Gateways, refund: Transaction) -> bool:
    outcome = await _send(gateways, refund)
    if outcome is None:
        return False
    async with database.session(system=True) as session:
        await session.execute(
            update(Transaction)
            .where(Transaction.id == refund.id, Transaction.state == TransactionState.PENDING)
            .values(**outcome)
        )
    return True


async def _send(gateways: Gateways, refund: Transaction) -> dict[str, Any] | None:
    """The provider's answer as column values; None to retry later."""
    assert refund.provider_payment_reference is not None
    try:
        if refund.provider is PaymentProvider.STRIPE:
            result = await gateways.stripe.create_refund(
                payment_intent=refund.provider_payment_reference,
                amount_minor=refund.amount_minor,
                idempotency_key=refund.idempotency_key,
                reason=refund.reason,
            )
            if result.status in ("pending", "requires_action"):
                return {"provider_reference": result.id}
            state = (
                TransactionState.SUCCEEDED
                if result.status == "succeeded"
                else TransactionState.FAILED
            )
            return {"provider_reference": result.id, "state": state}
        # paypal_flow imports checkout, which imports this module.
        from server.payment.paypal_flow import send_paypal_refund  # noqa: PLC0415

        return await send_paypal_refund(gateways, refund)
    except ProviderUnavailable as error:
        log.warning("refund %s: provider unavailable: %s", refund.id, error)
        return None
    except ProviderError as error:
        log.error("refund %s refused by the provider: %s", refund.id, error)
        return {"state": TransactionState.FAILED, "failure_reason": error.code or "refused"}


# --- Cancelled lotteries -------------------------------------------------------------------------


async def refund_cancelled_houses(database: Database, *, now: datetime.datetime) -> int:
    """Works the `payment.refund_cancelled_house` messages: every paid order of the house is
    refunded in full (tickets voided) and every pending one cancelled. Idempotent per order."""
    handled = 0
    async with database.session(system=True) as session:
        messages = await outbox.claim_due(session, limit=10, topics=[REFUND_TOPIC])
    for message in messages:
        house_id = uuid.UUID(str(message.payload["house_id"]))
        try:
            await _refund_house(database, house_id=house_id, now=now)
        except Exception as error:
            log.exception("refunds of cancelled house %s failed", house_id)
            async with database.session(system=True) as session:
                await outbox.mark_failed(session, message, error=str(error))
            continue
        async with database.session(system=True) as session:
            await outbox.mark_delivered(session, message)
        handled += 1
    return handled


async def _refund_house(database: Database, *, house_id: uuid.UUID, now: datetime.datetime) -> None:
    async with database.session(system=True) as session:
        order_ids = list(
            (
                await session.scalars(
                    select(Order.id).where(
                        Order.house_id == house_id,
                        Order.state.in_([*REFUNDABLE_STATES, OrderState.PENDING_PAYMENT]),
                    )
                )
            ).all()
        )
    for order_id in order_ids:
        async with database.session(system=True) as session:
            order = await lock_order(session, order_id)
            if order.state is OrderState.PENDING_PAYMENT:
                await release(
                    session,
                    order_id=order_id,
                    state=OrderState.CANCELLED,
                    failure_reason=CANCELLED_LOTTERY_REASON,
                    now=now,
                )
            elif order.state in REFUNDABLE_STATES:
                await refund_order(
                    session,
                    order_id=order_id,
                    amount_minor=None,
                    currency=None,
                    reason=CANCELLED_LOTTERY_REASON,
                    request_id=uuid.uuid5(order_id, "lottery-cancelled"),
                    actor=None,
                    now=now,
                    allow_after_draw=True,
                )
