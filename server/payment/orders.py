"""Orders on the database side (SPEC §5): the purchase transaction, fulfilment exactly once,
release of an unpaid order's reservation, and the owner's reads.

Every function runs inside the caller's transaction and touches no network; the provider calls
happen between transactions (server/payment/checkout.py). Two rules make the money path safe:

- one order row lock decides: fulfilment locks the order (`FOR UPDATE`) and release moves it
  out of PENDING_PAYMENT with a conditional UPDATE, so of a webhook, ConfirmOrderPayment, the
  reconciler and the expiry job racing on one order, exactly one outcome is recorded;
- money captured is never lost: a payment that succeeds for an order that can no longer get its
  tickets (released and sold out, or sales closed) is recorded as paid and refunded at once
  (a REFUND transaction, PENDING until the provider confirms — server/payment/refunds.py).
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.audit import record_audit
from server.core.crypto import PiiCipher
from server.core.errors import (
    AmesaError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from server.core.outbox import enqueue
from server.lottery import tickets as lottery_tickets
from server.lottery.catalogue import house_not_found
from server.lottery.models import House, HouseState, Ticket
from server.payment import promotions
from server.payment.models import (
    Order,
    OrderState,
    PaymentProvider,
    Transaction,
    TransactionKind,
    TransactionState,
)
from server.user.accounts import active_exclusion, age_on, minimum_age, setting
from server.user.models import KycStatus, User, UserStatus
from server.user.play import check_purchase_allowed
from server.user.profile import decrypt_birth_date

RELEASED_STATES: Final = frozenset({OrderState.EXPIRED, OrderState.CANCELLED, OrderState.FAILED})
PAID_STATES: Final = frozenset(
    {OrderState.PAID, OrderState.PARTIALLY_REFUNDED, OrderState.REFUNDED}
)
AUTO_REFUND_REASON: Final = "paid after its reservation was released, with no tickets left"


def order_not_found() -> NotFound:
    return NotFound("ORDER_NOT_FOUND", "no such order for this user")


def auto_refund_key(order_id: uuid.UUID) -> str:
    """The idempotency key of the refund of a payment that could not get its tickets."""
    return f"auto-refund:{order_id}"


def charge_key(order_id: uuid.UUID) -> str:
    """The idempotency key of an order's charge, at the provider and in the ledger."""
    return str(order_id)


# --- Eligibility ---------------------------------------------------------------------------------


async def check_buyer(
    session: AsyncSession, *, user: User, cipher: PiiCipher, now: datetime.datetime
) -> None:
    """The checks on the buyer that play.check_purchase_allowed does not make, each with its
    own reason: EMAIL_NOT_VERIFIED, KYC_REQUIRED (setting `purchase_requires_kyc`, default on),
    UNDERAGE (an unknown birth date counts as not proven of age)."""
    if user.email_verify_time is None:
        raise FailedPrecondition(
            "EMAIL_NOT_VERIFIED", "verify your email address before buying tickets"
        )
    if bool(await setting(session, "purchase_requires_kyc", True)) and (
        user.kyc_status is not KycStatus.APPROVED
    ):
        raise FailedPrecondition(
            "KYC_REQUIRED",
            "identity verification must be approved before buying tickets",
            metadata={"kyc_status": user.kyc_status.value},
        )
    minimum = await minimum_age(session)
    birth = decrypt_birth_date(user, cipher)
    if birth is None or age_on(birth, now.date()) < minimum:
        raise FailedPrecondition(
            "UNDERAGE",
            f"buyers must be at least {minimum} years old",
            metadata={"minimum_age": str(minimum)},
        )


def _check_house(house: House | None, *, now: datetime.datetime) -> House:
    if house is None or house.delete_time is not None or house.state is HouseState.DRAFT:
        raise house_not_found()
    assert house.sales_open_time is not None
    assert house.sales_close_time is not None
    if house.state is HouseState.UPCOMING or house.sales_open_time > now:
        raise FailedPrecondition(
            "SALES_NOT_OPEN",
            "ticket sales for this house have not opened yet",
            metadata={"sales_open_time": house.sales_open_time.isoformat(), "subject": "state"},
        )
    if house.state is not HouseState.ACTIVE or house.sales_close_time <= now:
        raise FailedPrecondition(
            "SALES_CLOSED",
            "ticket sales for this house have closed",
            metadata={"state": house.state.value, "subject": "state"},
        )
    return house


async def _check_caps(
    session: AsyncSession, *, house: House, user_id: uuid.UUID, quantity: int
) -> None:
    """Per-order and per-user caps; the caller holds the user's row lock, so the count of the
    user's tickets and held reservations cannot change under it."""
    if house.max_tickets_per_order and quantity > house.max_tickets_per_order:
        raise InvalidArgument(
            "QUANTITY_ABOVE_ORDER_CAP",
            f"at most {house.max_tickets_per_order} tickets per order",
            violations=[FieldViolation("quantity", "above the house's max_tickets_per_order")],
            metadata={"max_tickets_per_order": str(house.max_tickets_per_order)},
        )
    if not house.max_tickets_per_user:
        return
    held = await session.scalar(
        select(func.coalesce(func.sum(Order.quantity), 0)).where(
            Order.user_id == user_id,
            Order.house_id == house.id,
            or_(
                Order.state.in_([OrderState.PAID, OrderState.PARTIALLY_REFUNDED]),
                and_(
                    Order.state == OrderState.PENDING_PAYMENT,
                    Order.reservation_release_time.is_(None),
                ),
            ),
        )
    )
    remaining = house.max_tickets_per_user - int(held or 0)
    if quantity > remaining:
        raise ResourceExhausted(
            "QUANTITY_ABOVE_USER_CAP",
            f"you can buy {max(remaining, 0)} more tickets for this house",
            metadata={"remaining_for_user": str(max(remaining, 0))},
        )


# --- The purchase transaction --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PurchaseRequest:
    user_id: uuid.UUID
    house_id: uuid.UUID
    quantity: int
    request_id: uuid.UUID
    promotion_code: str
    payment_method_id: uuid.UUID | None
    provider: PaymentProvider


def _same_request(order: Order, request: PurchaseRequest) -> bool:
    code = request.promotion_code.strip().upper() or None
    return (
        order.house_id == request.house_id
        and order.quantity == request.quantity
        and order.provider is request.provider
        and order.payment_method_id == request.payment_method_id
        and (order.promotion_code or None) == code
    )


async def existing_order(session: AsyncSession, request: PurchaseRequest) -> Order | None:
    """The order a previous call with this request_id created; REQUEST_ID_REUSED if that call
    asked for something else."""
    order: Order | None = await session.scalar(
        select(Order).where(
            Order.user_id == request.user_id, Order.request_id == request.request_id
        )
    )
    if order is not None and not _same_request(order, request):
        raise InvalidArgument(
            "REQUEST_ID_REUSED",
            "request_id was already used with different parameters",
            violations=[FieldViolation("request_id", "already used with other parameters")],
        )
    return order


async def create_order(
    session: AsyncSession,
    request: PurchaseRequest,
    *,
    cipher: PiiCipher,
    order_ttl: datetime.timedelta,
    now: datetime.datetime,
) -> Order:
    """SPEC §5 steps 1 and 2 in one transaction: the checks, the reservation, the promotion's
    redemption, the order PENDING_PAYMENT and its charge PENDING in the ledger."""
    user = await session.get(User, request.user_id)
    if user is None:
        raise NotFound("USER_NOT_FOUND", "no user has this id")
    await check_buyer(session, user=user, cipher=cipher, now=now)
    house = _check_house(await session.get(House, request.house_id), now=now)
    assert house.ticket_price_minor is not None
    assert house.currency is not None
    subtotal = house.ticket_price_minor * request.quantity
    # One purchase of a user at a time from here to commit (check_purchase_allowed takes the
    # same lock again), so the caps and promotion limits below hold under concurrency.
    await session.execute(select(User.id).where(User.id == user.id).with_for_update(key_share=True))
    await _check_caps(session, house=house, user_id=user.id, quantity=request.quantity)
    applied = None
    if request.promotion_code.strip():
        applied = await promotions.apply_promotion(
            session,
            code=request.promotion_code,
            user_id=user.id,
            house=house,
            quantity=request.quantity,
            now=now,
        )
    discount = applied.discount_minor if applied is not None else 0
    # Status, self-exclusion and play limits, on the amount actually charged.
    await check_purchase_allowed(
        session,
        user_id=user.id,
        amount_minor=subtotal - discount,
        currency=house.currency,
        now=now,
    )
    await lottery_tickets.reserve_tickets(session, house_id=house.id, quantity=request.quantity)
    order = Order(
        id=uuid.uuid4(),
        user_id=user.id,
        house_id=house.id,
        request_id=request.request_id,
        quantity=request.quantity,
        unit_price_minor=house.ticket_price_minor,
        subtotal_minor=subtotal,
        discount_minor=discount,
        total_minor=subtotal - discount,
        currency=house.currency,
        promotion_id=applied.promotion_id if applied is not None else None,
        promotion_code=applied.code if applied is not None else None,
        provider=request.provider,
        payment_method_id=request.payment_method_id,
        expire_time=now + order_ttl,
    )
    session.add(order)
    await session.flush()
    if applied is not None:
        await promotions.record_redemption(
            session, applied, order_id=order.id, user_id=user.id, currency=house.currency
        )
    session.add(
        Transaction(
            user_id=user.id,
            order_id=order.id,
            kind=TransactionKind.CHARGE,
            amount_minor=order.total_minor,
            currency=order.currency,
            provider=order.provider,
            idempotency_key=charge_key(order.id),
            request_id=request.request_id,
        )
    )
    await session.flush()
    return order


async def set_payment_reference(
    session: AsyncSession, *, order_id: uuid.UUID, reference: str
) -> None:
    """Remembers the provider payment once created (the first one stays)."""
    await session.execute(
        update(Order)
        .where(Order.id == order_id, Order.provider_payment_reference.is_(None))
        .values(provider_payment_reference=reference)
    )
    await session.execute(
        update(Transaction)
        .where(
            Transaction.order_id == order_id,
            Transaction.kind == TransactionKind.CHARGE,
            Transaction.provider_payment_reference.is_(None),
        )
        .values(provider_payment_reference=reference)
    )


# --- Fulfilment ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fulfilment:
    order: Order
    # Tickets issued by this call (empty when the order was already settled, or refunded).
    tickets: Sequence[Ticket]
    sold_out: bool = False
    # True when the payment was recorded but refunded because no tickets could be issued.
    refunded: bool = False


async def lock_order(session: AsyncSession, order_id: uuid.UUID) -> Order:
    order: Order | None = await session.scalar(
        select(Order)
        .where(Order.id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if order is None:
        raise order_not_found()
    return order


async def fulfil(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    charge_reference: str,
    now: datetime.datetime,
) -> Fulfilment:
    """SPEC §5 step 4, exactly once: the provider reported the order's payment succeeded.

    Already paid (or refunded since): returned unchanged. Pending: its reservation becomes
    tickets. Released (expired, cancelled, failed) while the payment still went through: it
    gets tickets if some remain, else it is paid and refunded at once (step 5)."""
    order = await lock_order(session, order_id)
    if order.state in PAID_STATES:
        return Fulfilment(order=order, tickets=())
    released = order.state in RELEASED_STATES
    previous = order.state  # the UPDATE below refreshes `order`
    issued: Sequence[Ticket] = ()
    try:
        if released and not await _may_still_play(session, user_id=order.user_id, now=now):
            raise FailedPrecondition("ACCOUNT_CLOSED", "the buyer may no longer play")
        async with session.begin_nested():
            if released:  # its tickets went back: take them again if they are still there
                await lottery_tickets.reserve_tickets(
                    session, house_id=order.house_id, quantity=order.quantity
                )
            issued = await lottery_tickets.issue_tickets(
                session,
                house_id=order.house_id,
                user_id=order.user_id,
                order_id=order.id,
                quantity=order.quantity,
                now=now,
            )
    except AmesaError:
        # Sold out or sales closed: the payment is recorded and refunded at once.
        if not released:
            await lottery_tickets.release_reservation(
                session, house_id=order.house_id, quantity=order.quantity
            )
            await promotions.release_redemption(session, order_id=order.id)
    await session.execute(
        update(Transaction)
        .where(
            Transaction.order_id == order.id,
            Transaction.kind == TransactionKind.CHARGE,
        )
        .values(
            state=TransactionState.SUCCEEDED,
            provider_reference=charge_reference,
            failure_reason=None,
        )
    )
    values: dict[str, Any] = {"state": OrderState.PAID, "paid_time": now, "failure_reason": None}
    if not issued:
        values |= {
            "state": OrderState.REFUNDED,
            "refunded_minor": order.total_minor,
            "reservation_release_time": order.reservation_release_time or now,
        }
    await session.execute(update(Order).where(Order.id == order.id).values(**values))
    if not issued:
        from server.payment.refunds import record_refund  # noqa: PLC0415 - refunds imports us

        await record_refund(
            session,
            order=order,
            amount_minor=order.total_minor,
            reason=AUTO_REFUND_REASON,
            request_id=None,
            key=auto_refund_key(order.id),
            payment_reference=charge_reference,
        )
    else:
        await enqueue(
            session,
            topic="notify.purchase_receipt",
            payload={
                "order": f"users/{order.user_id}/orders/{order.id}",
                "quantity": order.quantity,
                "first_number": issued[0].number,
                "last_number": issued[-1].number,
                "total": f"{order.total_minor / 100:.2f} {order.currency}",
            },
            user_id=order.user_id,
            dedupe_key=f"receipt:{order.id}",
        )
    await record_audit(
        session,
        actor=None,
        action="payment.order.fulfil" if issued else "payment.order.refund_unfulfillable",
        resource_name=f"users/{order.user_id}/orders/{order.id}",
        before={"state": previous.value},
        after={"charge": charge_reference, "tickets": [t.number for t in issued]},
    )
    settled = await lock_order(session, order.id)
    house_total = await session.scalar(
        select(House.total_tickets).where(House.id == order.house_id)
    )
    sold_out = bool(issued) and issued[-1].number == house_total
    return Fulfilment(order=settled, tickets=issued, sold_out=sold_out, refunded=not issued)


async def _may_still_play(
    session: AsyncSession, *, user_id: uuid.UUID, now: datetime.datetime
) -> bool:
    """A late payment of a released order gets tickets only if its buyer may still play (not
    closed, suspended or self-excluded since); otherwise it is refunded."""
    status = await session.scalar(select(User.status).where(User.id == user_id))
    if status is not UserStatus.ACTIVE:
        return False
    return await active_exclusion(session, user_id, now=now) is None


# --- Release -------------------------------------------------------------------------------------


async def release(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    state: OrderState,
    failure_reason: str | None,
    now: datetime.datetime,
) -> Order | None:
    """Moves a PENDING_PAYMENT order to `state` (EXPIRED, CANCELLED or FAILED) and gives its
    tickets back, once: None when the order was no longer pending (another path settled it)."""
    assert state in RELEASED_STATES
    order: Order | None = await session.scalar(
        update(Order)
        .where(Order.id == order_id, Order.state == OrderState.PENDING_PAYMENT)
        .values(state=state, failure_reason=failure_reason, reservation_release_time=now)
        .returning(Order)
        .execution_options(populate_existing=True)
    )
    if order is None:
        return None
    await lottery_tickets.release_reservation(
        session, house_id=order.house_id, quantity=order.quantity
    )
    await promotions.release_redemption(session, order_id=order.id)
    await session.execute(
        update(Transaction)
        .where(
            Transaction.order_id == order.id,
            Transaction.kind == TransactionKind.CHARGE,
            Transaction.state == TransactionState.PENDING,
        )
        .values(state=TransactionState.FAILED, failure_reason=failure_reason or state.value)
    )
    return order


async def cancel_pending_orders(
    session: AsyncSession, *, user_id: uuid.UUID, reason: str, now: datetime.datetime
) -> list[Order]:
    """Releases every unpaid order of a user who may no longer buy (account closed,
    self-excluded), in the caller's transaction; a payment that still succeeds for one of them
    is refunded (`fulfil`). The caller publishes the houses' sales progress after commit."""
    pending = list(
        (
            await session.scalars(
                select(Order.id).where(
                    Order.user_id == user_id, Order.state == OrderState.PENDING_PAYMENT
                )
            )
        ).all()
    )
    released = []
    for order_id in pending:
        order = await release(
            session, order_id=order_id, state=OrderState.CANCELLED, failure_reason=reason, now=now
        )
        if order is not None:
            released.append(order)
    return released


# --- Reads ---------------------------------------------------------------------------------------


async def get_order(session: AsyncSession, *, user_id: uuid.UUID, order_id: uuid.UUID) -> Order:
    order: Order | None = await session.scalar(
        select(Order).where(Order.id == order_id, Order.user_id == user_id)
    )
    if order is None:
        raise order_not_found()
    return order


async def ticket_numbers(
    session: AsyncSession, order_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[int]]:
    rows = (
        await session.execute(
            select(Ticket.order_id, Ticket.number)
            .where(Ticket.order_id.in_(list(order_ids)))
            .order_by(Ticket.number)
        )
    ).all()
    numbers: dict[uuid.UUID, list[int]] = {order_id: [] for order_id in order_ids}
    for order_id, number in rows:
        numbers[order_id].append(number)
    return numbers
