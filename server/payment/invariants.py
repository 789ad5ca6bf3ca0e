"""The invariants of the money path (SPEC §5 step 6), checked over the whole database or a set
of houses: what `python -m server.manage invariants` reports.

Every database check reads one REPEATABLE READ snapshot, so a purchase or fulfilment committing
meanwhile cannot show up half-done as a false violation. The provider is asked afterwards,
outside any transaction; a payment moving at the provider between the snapshot and the question
(a late success about to be refunded automatically) can still be reported once, and a second
run tells a transient state from a real one.

PayPal payments are not checked against PayPal (only Stripe's PaymentIntents are).
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import ColumnElement, SQLColumnExpression, and_, distinct, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.db import Database, bind_rls
from server.core.names import child_name
from server.lottery.models import DrawEntry, House, Ticket, TicketState
from server.payment.models import (
    Order,
    OrderState,
    PaymentProvider,
    Transaction,
    TransactionKind,
    TransactionState,
)
from server.payment.providers import ProviderError, ProviderNotFound
from server.payment.providers.stripe_gateway import PaymentIntentStatus, StripeGateway

PAID_STATES = (OrderState.PAID, OrderState.PARTIALLY_REFUNDED, OrderState.REFUNDED)
UNPAID_FINAL_STATES = (OrderState.EXPIRED, OrderState.CANCELLED, OrderState.FAILED)
# Stripe calls in flight at once: enough to check thousands of orders in seconds, few enough
# not to look like a burst to Stripe's rate limiter.
PROVIDER_CONCURRENCY = 8


class ViolationKind(enum.StrEnum):
    # houses.tickets_sold > total_tickets.
    HOUSE_OVERSOLD = "HOUSE_OVERSOLD"
    # tickets_sold + tickets_reserved > total_tickets.
    HOUSE_OVERCOMMITTED = "HOUSE_OVERCOMMITTED"
    # houses.tickets_sold differs from the number of ticket rows.
    HOUSE_SOLD_COUNT = "HOUSE_SOLD_COUNT"
    # houses.tickets_reserved differs from the quantities held by pending orders.
    HOUSE_RESERVED_COUNT = "HOUSE_RESERVED_COUNT"
    # The house's ticket numbers are not exactly 1..tickets (duplicates, gaps, out of range).
    TICKET_NUMBERS = "TICKET_NUMBERS"
    # A ticket of an order that is not paid.
    TICKET_ORDER_NOT_PAID = "TICKET_ORDER_NOT_PAID"
    # A ticket of a fully refunded order that is not voided.
    TICKET_NOT_VOIDED = "TICKET_NOT_VOIDED"
    # A ticket whose house or user is not its order's.
    TICKET_ORDER_MISMATCH = "TICKET_ORDER_MISMATCH"
    # A ticket without its entry-log leaf (or with a leaf of another house or index).
    TICKET_WITHOUT_ENTRY = "TICKET_WITHOUT_ENTRY"
    # A paid order whose number of tickets is not its quantity.
    PAID_ORDER_TICKETS = "PAID_ORDER_TICKETS"
    # A paid order without a SUCCEEDED CHARGE of its total.
    PAID_ORDER_WITHOUT_CHARGE = "PAID_ORDER_WITHOUT_CHARGE"
    # An order whose succeeded charges minus succeeded refunds exceed its total.
    ORDER_OVERCHARGED = "ORDER_OVERCHARGED"
    # A SUCCEEDED CHARGE of an unpaid order not fully refunded: money taken, no tickets.
    CHARGE_WITHOUT_TICKETS = "CHARGE_WITHOUT_TICKETS"
    # A paid order whose payment has not succeeded at the provider.
    PAYMENT_NOT_SUCCEEDED = "PAYMENT_NOT_SUCCEEDED"
    # An expired, cancelled or failed order whose payment succeeded at the provider, unrefunded.
    UNPAID_ORDER_CAPTURED = "UNPAID_ORDER_CAPTURED"
    # The provider could not be asked about a payment, so it is unverified.
    PROVIDER_CHECK_FAILED = "PROVIDER_CHECK_FAILED"


@dataclass(frozen=True, slots=True)
class Violation:
    kind: ViolationKind
    # The resource at fault, e.g. `houses/{id}` or `users/{user}/orders/{id}`.
    resource: str
    explanation: str

    def __str__(self) -> str:
        return f"{self.kind.value} {self.resource}: {self.explanation}"


def house_resource(house_id: uuid.UUID) -> str:
    return f"houses/{house_id}"


def order_resource(user_id: uuid.UUID, order_id: uuid.UUID) -> str:
    return child_name(user_id, "orders", order_id)


def ticket_resource(user_id: uuid.UUID, ticket_id: uuid.UUID) -> str:
    return child_name(user_id, "tickets", ticket_id)


def transaction_resource(user_id: uuid.UUID, transaction_id: uuid.UUID) -> str:
    return child_name(user_id, "transactions", transaction_id)


async def check_invariants(
    database: Database,
    *,
    gateway: StripeGateway | None,
    house_ids: Collection[uuid.UUID] | None = None,
) -> list[Violation]:
    """Every violation of the money-path invariants, sorted by kind and resource. `house_ids`
    limits the check to those houses and their orders, tickets and transactions (None: all).
    With a `gateway`, Stripe payments are compared with the orders' states too."""
    async with _snapshot(database) as session:
        checks = _Checks(session, house_ids)
        violations = [
            *await checks.houses(),
            *await checks.tickets(),
            *await checks.paid_orders(),
            *await checks.charges(),
        ]
        payments = await checks.stripe_payments() if gateway is not None else []
    if gateway is not None:
        violations.extend(await _provider_violations(gateway, payments))
    return sorted(violations, key=lambda v: (v.kind.value, v.resource, v.explanation))


@asynccontextmanager
async def _snapshot(database: Database) -> AsyncIterator[AsyncSession]:
    # One snapshot for every query; the checks only read, and see every user's rows.
    async with database.engine.connect() as connection:
        await connection.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
        async with AsyncSession(bind=connection) as session, session.begin():
            await bind_rls(session, None, system=True)
            yield session


def _sum_of(kind: TransactionKind) -> ColumnElement[int]:
    """Per order: the SUCCEEDED transactions of `kind`, summed (0 when none)."""
    return (
        select(func.coalesce(func.sum(Transaction.amount_minor), 0))
        .where(
            Transaction.order_id == Order.id,
            Transaction.kind == kind,
            Transaction.state == TransactionState.SUCCEEDED,
        )
        .correlate(Order)
        .scalar_subquery()
    )


@dataclass(frozen=True, slots=True)
class _StripePayment:
    order_resource: str
    state: OrderState
    reference: str | None
    refunded_minor: int


class _Checks:
    def __init__(self, session: AsyncSession, house_ids: Collection[uuid.UUID] | None) -> None:
        self._session = session
        self._house_ids = None if house_ids is None else list(house_ids)

    def _in_scope(self, column: SQLColumnExpression[uuid.UUID]) -> ColumnElement[bool]:
        return true() if self._house_ids is None else column.in_(self._house_ids)

    async def houses(self) -> list[Violation]:
        tickets = (
            select(
                Ticket.house_id,
                func.count().label("count"),
                func.count(distinct(Ticket.number)).label("distinct"),
                func.min(Ticket.number).label("lowest"),
                func.max(Ticket.number).label("highest"),
            )
            .where(self._in_scope(Ticket.house_id))
            .group_by(Ticket.house_id)
            .subquery()
        )
        held = (
            select(Order.house_id, func.sum(Order.quantity).label("quantity"))
            .where(
                self._in_scope(Order.house_id),
                Order.state == OrderState.PENDING_PAYMENT,
                Order.reservation_release_time.is_(None),
            )
            .group_by(Order.house_id)
            .subquery()
        )
        rows = await self._session.execute(
            select(
                House.id,
                House.total_tickets,
                House.tickets_sold,
                House.tickets_reserved,
                func.coalesce(tickets.c.count, 0),
                func.coalesce(tickets.c.distinct, 0),
                tickets.c.lowest,
                tickets.c.highest,
                func.coalesce(held.c.quantity, 0),
            )
            .outerjoin(tickets, tickets.c.house_id == House.id)
            .outerjoin(held, held.c.house_id == House.id)
            .where(self._in_scope(House.id))
        )
        violations: list[Violation] = []
        for house_id, total, sold, reserved, count, distinct_count, low, high, pending in rows:
            name = house_resource(house_id)

            def add(kind: ViolationKind, explanation: str, name: str = name) -> None:
                violations.append(Violation(kind, name, explanation))

            if sold > total:
                add(ViolationKind.HOUSE_OVERSOLD, f"{sold} tickets sold of {total}")
            elif sold + reserved > total:
                add(
                    ViolationKind.HOUSE_OVERCOMMITTED,
                    f"{sold} sold + {reserved} reserved exceed the {total} tickets",
                )
            if sold != count:
                add(
                    ViolationKind.HOUSE_SOLD_COUNT,
                    f"tickets_sold is {sold} but the house has {count} tickets",
                )
            if reserved != pending:
                add(
                    ViolationKind.HOUSE_RESERVED_COUNT,
                    f"tickets_reserved is {reserved} but pending orders hold {pending}",
                )
            if count and (distinct_count != count or low != 1 or high != count):
                add(
                    ViolationKind.TICKET_NUMBERS,
                    f"{count} tickets numbered {low}..{high} with {distinct_count} distinct"
                    f" numbers, not 1..{count}",
                )
        return violations

    async def tickets(self) -> list[Violation]:
        violations: list[Violation] = []
        rows = await self._session.execute(
            select(
                Ticket.id,
                Ticket.user_id,
                Ticket.house_id,
                Ticket.number,
                Ticket.state,
                Order.id,
                Order.user_id,
                Order.house_id,
                Order.state,
            )
            .join(Order, Order.id == Ticket.order_id)
            .where(
                self._in_scope(Ticket.house_id),
                or_(
                    Order.state.not_in(PAID_STATES),
                    and_(Order.state == OrderState.REFUNDED, Ticket.state != TicketState.VOIDED),
                    Order.house_id != Ticket.house_id,
                    Order.user_id != Ticket.user_id,
                ),
            )
        )
        for (
            ticket_id,
            user_id,
            house_id,
            number,
            ticket_state,
            order_id,
            order_user_id,
            order_house_id,
            order_state,
        ) in rows:
            name = ticket_resource(user_id, ticket_id)
            order = order_resource(order_user_id, order_id)
            if order_state not in PAID_STATES:
                violations.append(
                    Violation(
                        ViolationKind.TICKET_ORDER_NOT_PAID,
                        name,
                        f"ticket {number} belongs to {order}, which is {order_state.value}",
                    )
                )
            elif order_state is OrderState.REFUNDED and ticket_state is not TicketState.VOIDED:
                violations.append(
                    Violation(
                        ViolationKind.TICKET_NOT_VOIDED,
                        name,
                        f"ticket {number} is {ticket_state.value} but {order} is REFUNDED",
                    )
                )
            if order_house_id != house_id or order_user_id != user_id:
                violations.append(
                    Violation(
                        ViolationKind.TICKET_ORDER_MISMATCH,
                        name,
                        f"ticket {number} of {house_resource(house_id)} belongs to {order}"
                        f" of {house_resource(order_house_id)}",
                    )
                )
        leaves = await self._session.execute(
            select(Ticket.id, Ticket.user_id, Ticket.number, DrawEntry.id)
            .outerjoin(DrawEntry, DrawEntry.ticket_id == Ticket.id)
            .where(
                self._in_scope(Ticket.house_id),
                or_(
                    DrawEntry.id.is_(None),
                    DrawEntry.house_id != Ticket.house_id,
                    DrawEntry.leaf_index != Ticket.leaf_index,
                ),
            )
        )
        for ticket_id, user_id, number, entry_id in leaves:
            violations.append(
                Violation(
                    ViolationKind.TICKET_WITHOUT_ENTRY,
                    ticket_resource(user_id, ticket_id),
                    f"ticket {number} has no entry-log leaf"
                    if entry_id is None
                    else f"ticket {number}'s entry-log leaf is of another house or index",
                )
            )
        return violations

    async def paid_orders(self) -> list[Violation]:
        ticket_count = (
            select(func.count())
            .where(Ticket.order_id == Order.id)
            .correlate(Order)
            .scalar_subquery()
        )
        full_charge = (
            select(Transaction.id)
            .where(
                Transaction.order_id == Order.id,
                Transaction.kind == TransactionKind.CHARGE,
                Transaction.state == TransactionState.SUCCEEDED,
                Transaction.amount_minor == Order.total_minor,
                Transaction.currency == Order.currency,
            )
            .correlate(Order)
            .exists()
        )
        charged, refunded = _sum_of(TransactionKind.CHARGE), _sum_of(TransactionKind.REFUND)
        rows = await self._session.execute(
            select(
                Order.id,
                Order.user_id,
                Order.state,
                Order.quantity,
                Order.total_minor,
                Order.currency,
                ticket_count,
                full_charge,
                charged,
                refunded,
            ).where(self._in_scope(Order.house_id), Order.state.in_(PAID_STATES))
        )
        violations: list[Violation] = []
        for order_id, user_id, state, quantity, total, currency, tickets, has_charge, c, r in rows:
            name = order_resource(user_id, order_id)
            if tickets != quantity:
                violations.append(
                    Violation(
                        ViolationKind.PAID_ORDER_TICKETS,
                        name,
                        f"{state.value} order of {quantity} tickets has {tickets}",
                    )
                )
            if not has_charge:
                violations.append(
                    Violation(
                        ViolationKind.PAID_ORDER_WITHOUT_CHARGE,
                        name,
                        f"{state.value} order has no SUCCEEDED CHARGE of {total} {currency}",
                    )
                )
            if c - r > total:
                violations.append(
                    Violation(
                        ViolationKind.ORDER_OVERCHARGED,
                        name,
                        f"charged {c} and refunded {r} {currency} on an order of {total}",
                    )
                )
        return violations

    async def charges(self) -> list[Violation]:
        charged, refunded = _sum_of(TransactionKind.CHARGE), _sum_of(TransactionKind.REFUND)
        rows = await self._session.execute(
            select(
                Transaction.id,
                Transaction.user_id,
                Transaction.amount_minor,
                Transaction.currency,
                Order.id,
                Order.user_id,
                Order.state,
                charged,
                refunded,
            )
            .join(Order, Order.id == Transaction.order_id)
            .where(
                self._in_scope(Order.house_id),
                Transaction.kind == TransactionKind.CHARGE,
                Transaction.state == TransactionState.SUCCEEDED,
                Order.state.not_in(PAID_STATES),
                refunded < charged,
            )
        )
        return [
            Violation(
                ViolationKind.CHARGE_WITHOUT_TICKETS,
                transaction_resource(user_id, transaction_id),
                f"captured {amount} {currency} for {order_resource(order_user_id, order_id)},"
                f" which is {state.value}; its charges total {c}, its refunds {r}",
            )
            for (
                transaction_id,
                user_id,
                amount,
                currency,
                order_id,
                order_user_id,
                state,
                c,
                r,
            ) in rows
        ]

    async def stripe_payments(self) -> list[_StripePayment]:
        """The Stripe orders whose state the provider must agree with: paid ones, and unpaid
        final ones with a PaymentIntent."""
        rows = await self._session.execute(
            select(
                Order.id,
                Order.user_id,
                Order.state,
                Order.provider_payment_reference,
                _sum_of(TransactionKind.REFUND),
            ).where(
                self._in_scope(Order.house_id),
                Order.provider == PaymentProvider.STRIPE,
                or_(
                    Order.state.in_(PAID_STATES),
                    and_(
                        Order.state.in_(UNPAID_FINAL_STATES),
                        Order.provider_payment_reference.is_not(None),
                    ),
                ),
            )
        )
        return [
            _StripePayment(order_resource(user_id, order_id), state, reference, int(refunded))
            for order_id, user_id, state, reference, refunded in rows
        ]


async def _provider_violations(
    gateway: StripeGateway, payments: Sequence[_StripePayment]
) -> list[Violation]:
    limit = asyncio.Semaphore(PROVIDER_CONCURRENCY)

    async def check(payment: _StripePayment) -> Violation | None:
        async with limit:
            return await _provider_violation(gateway, payment)

    results = await asyncio.gather(*(check(payment) for payment in payments))
    return [violation for violation in results if violation is not None]


async def _provider_violation(gateway: StripeGateway, payment: _StripePayment) -> Violation | None:
    paid = payment.state in PAID_STATES
    if payment.reference is None:
        # Only paid orders are selected without a reference.
        return Violation(
            ViolationKind.PAYMENT_NOT_SUCCEEDED,
            payment.order_resource,
            f"{payment.state.value} order has no Stripe PaymentIntent",
        )
    try:
        intent = await gateway.retrieve_payment_intent(payment.reference)
    except ProviderNotFound:
        # An unknown PaymentIntent took no money: only a paid order needs one.
        problem = f"PaymentIntent {payment.reference} is unknown at Stripe" if paid else None
        return _payment_violation(payment, problem)
    except ProviderError as error:
        return Violation(
            ViolationKind.PROVIDER_CHECK_FAILED,
            payment.order_resource,
            f"Stripe did not answer about {payment.reference}: {error}",
        )
    if paid and intent.status is not PaymentIntentStatus.SUCCEEDED:
        return _payment_violation(
            payment,
            f"{payment.state.value} order's PaymentIntent {intent.id} is {intent.status.value}",
        )
    if not paid and intent.succeeded and payment.refunded_minor < intent.amount:
        return Violation(
            ViolationKind.UNPAID_ORDER_CAPTURED,
            payment.order_resource,
            f"{payment.state.value} order's PaymentIntent {intent.id} succeeded for"
            f" {intent.amount} {intent.currency} and {payment.refunded_minor} is refunded",
        )
    return None


def _payment_violation(payment: _StripePayment, problem: str | None) -> Violation | None:
    if problem is None:
        return None
    return Violation(ViolationKind.PAYMENT_NOT_SUCCEEDED, payment.order_resource, problem)


def summary(violations: Sequence[Violation]) -> str:
    """The CLI's last line: the count per kind, or that there is none."""
    if not violations:
        return "invariants: no violations"
    counts: dict[str, int] = {}
    for violation in violations:
        counts[violation.kind.value] = counts.get(violation.kind.value, 0) + 1
    detail = ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items()))
    plural = "" if len(violations) == 1 else "s"
    return f"invariants: {len(violations)} violation{plural} ({detail})"
