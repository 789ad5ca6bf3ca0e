"""The money path end to end (SPEC §5): short transactions around the provider calls.

    purchase      create_order (commit) → Stripe PaymentIntent (order id as idempotency key)
                  → remember its id → fulfil if it already succeeded
    settle        re-read a PaymentIntent and apply it: succeeded → fulfil, canceled → FAILED
                  (ConfirmOrderPayment, webhooks and the reconciler all end here)
    cancel/expire release the reservation, then cancel the provider payment (best effort: a
                  payment that still succeeds is fulfilled or refunded by `settle`)

No database transaction is open during a provider call, and every step is safe to repeat: a
retried PurchaseTickets resumes the order it created, and a settlement that already happened is
returned unchanged. After each commit the house's events are published and the catalogue cache
invalidated (ticket counters are in it).
"""

from __future__ import annotations

import datetime
import logging
import uuid
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.deps import Deps
from server.core.errors import FailedPrecondition, NotFound
from server.core.failpoints import failpoint
from server.lottery import house_events
from server.lottery.cache import CatalogueCache
from server.lottery.lifecycle import utcnow
from server.lottery.models import House, Ticket
from server.payment import orders, refunds
from server.payment.gateways import provider_unavailable
from server.payment.models import (
    Order,
    OrderState,
    PaymentCustomer,
    PaymentMethod,
    PaymentProvider,
)
from server.payment.providers import CardDeclined, ProviderError, ProviderUnavailable
from server.payment.providers.stripe_gateway import PaymentIntentResult, PaymentIntentStatus

log = logging.getLogger("amesa.payment.checkout")

_RECONCILE_BATCH: Final = 100


@dataclass(frozen=True, slots=True)
class Outcome:
    order: Order
    tickets: list[Ticket]
    client_secret: str = ""


class Checkout:
    def __init__(self, deps: Deps) -> None:
        self._database = deps.database
        self._gateways = deps.gateways
        self._events = deps.events
        self._cache = CatalogueCache(deps.redis)
        self._cipher = deps.cipher
        self._config = deps.settings.payment

    # --- PurchaseTickets ---------------------------------------------------------------------

    async def purchase(self, request: orders.PurchaseRequest) -> Outcome:
        self._gateways.require(request.provider)
        async with self._database.session(system=True) as session:
            order = await orders.existing_order(session, request)
            method = await self._method(session, request)
            created = order is None
            if order is None:
                order = await orders.create_order(
                    session,
                    request,
                    cipher=self._cipher,
                    order_ttl=self._config.order_ttl,
                    now=utcnow(),
                )
        if created:
            await self.counters_changed(order.house_id)
        if (
            order.state is not OrderState.PENDING_PAYMENT
            or order.provider is PaymentProvider.PAYPAL
        ):
            return await self.outcome(order.id)
        return await self._pay_with_stripe(order, method)

    @staticmethod
    async def _method(
        session: AsyncSession, request: orders.PurchaseRequest
    ) -> tuple[str, str] | None:
        """(customer id, payment method reference) of the saved card, if one was named."""
        if request.payment_method_id is None:
            return None
        method = await session.scalar(
            select(PaymentMethod).where(
                PaymentMethod.id == request.payment_method_id,
                PaymentMethod.user_id == request.user_id,
            )
        )
        customer = await session.scalar(
            select(PaymentCustomer.provider_customer_id).where(
                PaymentCustomer.user_id == request.user_id,
                PaymentCustomer.provider == PaymentProvider.STRIPE,
            )
        )
        if method is None or customer is None:
            raise NotFound("PAYMENT_METHOD_NOT_FOUND", "the saved payment method does not exist")
        return customer, method.provider_reference

    async def _pay_with_stripe(self, order: Order, method: tuple[str, str] | None) -> Outcome:
        stripe = self._gateways.stripe
        try:
            if order.provider_payment_reference is not None:
                intent = await stripe.retrieve_payment_intent(order.provider_payment_reference)
            else:
                intent = await stripe.create_payment_intent(
                    amount_minor=order.total_minor,
                    currency=order.currency,
                    customer=method[0] if method else None,
                    payment_method=method[1] if method else None,
                    order_id=str(order.id),
                    confirm=method is not None,
                    idempotency_key=orders.charge_key(order.id),
                    metadata={"user_id": str(order.user_id), "house_id": str(order.house_id)},
                )
        except CardDeclined as declined:
            await self._declined(order, declined)
            raise FailedPrecondition(
                "PAYMENT_DECLINED",
                "the card was declined; the tickets were released",
                metadata={
                    "order": f"users/{order.user_id}/orders/{order.id}",
                    "decline_code": declined.decline_code or declined.code or "",
                },
            ) from None
        except ProviderUnavailable as error:
            raise provider_unavailable(error, reason="PAYMENT_PROVIDER_UNAVAILABLE") from None
        # The dangerous gap: charged at the provider, nothing recorded here yet. The reconciler
        # finds such payments by their order id (chaos test: tests/payment/test_crash.py).
        failpoint("after_payment_intent")
        async with self._database.session(system=True) as session:
            await orders.set_payment_reference(session, order_id=order.id, reference=intent.id)
        await self.settle(order.id, intent)
        outcome = await self.outcome(order.id)
        if outcome.order.state is OrderState.PENDING_PAYMENT and intent.client_secret:
            return Outcome(order=outcome.order, tickets=[], client_secret=intent.client_secret)
        return outcome

    async def _declined(self, order: Order, declined: CardDeclined) -> None:
        async with self._database.session(system=True) as session:
            if declined.payment_reference:
                await orders.set_payment_reference(
                    session, order_id=order.id, reference=declined.payment_reference
                )
            released = await orders.release(
                session,
                order_id=order.id,
                state=OrderState.FAILED,
                failure_reason=declined.decline_code or declined.code or "card_declined",
                now=utcnow(),
            )
        if released is not None:
            await self.counters_changed(order.house_id)

    # --- Settling a payment ------------------------------------------------------------------

    async def settle(self, order_id: uuid.UUID, intent: PaymentIntentResult) -> None:
        """Applies the provider's state of the order's payment (exactly once, whoever calls)."""
        if intent.status is PaymentIntentStatus.SUCCEEDED:
            async with self._database.session(system=True) as session:
                done = await orders.fulfil(
                    session, order_id=order_id, charge_reference=intent.id, now=utcnow()
                )
            if done.tickets or done.refunded:
                await self.after_fulfilment(done)
        elif intent.status is PaymentIntentStatus.CANCELED:
            async with self._database.session(system=True) as session:
                released = await orders.release(
                    session,
                    order_id=order_id,
                    state=OrderState.FAILED,
                    failure_reason=intent.last_error_code or "payment_canceled",
                    now=utcnow(),
                )
            if released is not None:
                await self.counters_changed(released.house_id)

    async def after_fulfilment(self, done: orders.Fulfilment) -> None:
        """After a committed fulfilment (any provider): send its refund if it had to be
        refunded, invalidate the catalogue, publish the house's events."""
        if done.refunded:
            await refunds.send_refund(
                self._database,
                self._gateways,
                idempotency_key=orders.auto_refund_key(done.order.id),
            )
        house = await self._house(done.order.house_id)
        await self._cache.invalidate()
        if done.tickets:
            await house_events.tickets_issued(self._events, house, sold_out=done.sold_out)
        else:
            await house_events.sales_progress(self._events, house)

    async def confirm(self, order_id: uuid.UUID, *, user_id: uuid.UUID) -> Order:
        """ConfirmOrderPayment: re-reads the provider's state of a pending Stripe order."""
        async with self._database.session(system=True) as session:
            order = await orders.get_order(session, user_id=user_id, order_id=order_id)
        if (
            order.state is OrderState.PENDING_PAYMENT
            and order.provider is PaymentProvider.STRIPE
            and order.provider_payment_reference is not None
        ):
            try:
                intent = await self._gateways.stripe.retrieve_payment_intent(
                    order.provider_payment_reference
                )
            except ProviderUnavailable as error:
                raise provider_unavailable(error, reason="PROVIDER_UNAVAILABLE") from None
            await self.settle(order.id, intent)
        return (await self.outcome(order.id)).order

    async def settle_reference(self, reference: str) -> bool:
        """A webhook named a PaymentIntent: re-read it and settle its order. False when no order
        has it (an event of another integration, or one that raced the reference's storing)."""
        intent = await self._gateways.stripe.retrieve_payment_intent(reference)
        order_id = await self._order_of(intent)
        if order_id is None:
            return False
        async with self._database.session(system=True) as session:
            await orders.set_payment_reference(session, order_id=order_id, reference=intent.id)
        await self.settle(order_id, intent)
        return True

    async def _order_of(self, intent: PaymentIntentResult) -> uuid.UUID | None:
        async with self._database.session(system=True) as session:
            order_id = await session.scalar(
                select(Order.id).where(
                    Order.provider == PaymentProvider.STRIPE,
                    Order.provider_payment_reference == intent.id,
                )
            )
        if order_id is not None:
            return order_id
        try:
            named = uuid.UUID(intent.metadata.get("order_id", ""))
        except ValueError:
            return None
        # Only an order still paid with Stripe: one switched to PayPal ignores its old intent.
        async with self._database.session(system=True) as session:
            provider = await session.scalar(select(Order.provider).where(Order.id == named))
        return named if provider is PaymentProvider.STRIPE else None

    # --- Cancel and expire -------------------------------------------------------------------

    async def cancel(self, order_id: uuid.UUID, *, user_id: uuid.UUID) -> Order:
        """CancelOrder: a pending order becomes CANCELLED; CANCELLED stays as it is."""
        async with self._database.session(system=True) as session:
            order = await orders.get_order(session, user_id=user_id, order_id=order_id)
            if order.state is OrderState.CANCELLED:
                return order
            released = await orders.release(
                session,
                order_id=order_id,
                state=OrderState.CANCELLED,
                failure_reason=None,
                now=utcnow(),
            )
            if released is None:
                raise FailedPrecondition(
                    "ORDER_NOT_PENDING",
                    f"the order is {order.state.value}",
                    metadata={"state": order.state.value},
                )
        await self._after_release(released)
        return (await self.outcome(order_id)).order

    async def expire_due(self) -> int:
        """Releases every unpaid order past its expiry; returns how many."""
        async with self._database.session(system=True) as session:
            due = list(
                (
                    await session.scalars(
                        select(Order.id)
                        .where(
                            Order.state == OrderState.PENDING_PAYMENT,
                            Order.expire_time <= utcnow(),
                        )
                        .limit(_RECONCILE_BATCH)
                    )
                ).all()
            )
        expired = 0
        for order_id in due:
            async with self._database.session(system=True) as session:
                released = await orders.release(
                    session,
                    order_id=order_id,
                    state=OrderState.EXPIRED,
                    failure_reason=None,
                    now=utcnow(),
                )
            if released is not None:
                expired += 1
                await self._after_release(released)
        return expired

    async def _after_release(self, order: Order) -> None:
        await self.counters_changed(order.house_id)
        if order.provider is PaymentProvider.STRIPE and order.provider_payment_reference:
            try:
                intent = await self._gateways.stripe.cancel_payment_intent(
                    order.provider_payment_reference
                )
            except ProviderError as error:
                # Already succeeded or processing: the next settlement fulfils or refunds it.
                log.info("order %s: payment not cancelled: %s", order.id, error)
                try:
                    intent = await self._gateways.stripe.retrieve_payment_intent(
                        order.provider_payment_reference
                    )
                except ProviderError:
                    return
            await self.settle(order.id, intent)

    # --- Reconciler --------------------------------------------------------------------------

    async def reconcile(self, *, older_than: datetime.timedelta) -> int:
        """Pending Stripe orders are compared with Stripe and settled, batch after batch in
        creation order (so unpaid orders waiting for their expiry never starve newer ones), so
        a lost webhook or a crash after the provider call loses nothing."""
        settled = 0
        after: tuple[datetime.datetime, uuid.UUID] | None = None
        while True:
            query = (
                select(Order.id, Order.provider_payment_reference, Order.create_time)
                .where(
                    Order.state == OrderState.PENDING_PAYMENT,
                    Order.provider == PaymentProvider.STRIPE,
                    Order.create_time <= utcnow() - older_than,
                )
                .order_by(Order.create_time, Order.id)
                .limit(_RECONCILE_BATCH)
            )
            if after is not None:
                query = query.where(tuple_(Order.create_time, Order.id) > tuple_(*after))
            async with self._database.session(system=True) as session:
                batch = list((await session.execute(query)).all())
            for order_id, reference, _ in batch:
                settled += await self._reconcile_one(order_id, reference)
            if len(batch) < _RECONCILE_BATCH:
                return settled
            after = (batch[-1].create_time, batch[-1].id)

    async def _reconcile_one(self, order_id: uuid.UUID, reference: str | None) -> int:
        try:
            if reference is None:
                intent = await self.find_intent(order_id)
                if intent is None:
                    return 0
                async with self._database.session(system=True) as session:
                    await orders.set_payment_reference(
                        session, order_id=order_id, reference=intent.id
                    )
            else:
                intent = await self._gateways.stripe.retrieve_payment_intent(reference)
            await self.settle(order_id, intent)
        except ProviderError as error:
            log.warning("order %s: could not reconcile: %s", order_id, error)
            return 0
        return 1

    async def find_intent(self, order_id: uuid.UUID) -> PaymentIntentResult | None:
        """The PaymentIntent of an order whose id was never stored (the process died right
        after creating it): Stripe's PaymentIntents carry the order id in their metadata."""
        async with self._database.session(system=True) as session:
            order = await session.get(Order, order_id)
            customer = (
                await session.scalar(
                    select(PaymentCustomer.provider_customer_id).where(
                        PaymentCustomer.user_id == order.user_id,
                        PaymentCustomer.provider == PaymentProvider.STRIPE,
                    )
                )
                if order is not None
                else None
            )
        if order is None:
            return None
        return await self._gateways.stripe.find_payment_intent(
            order_id=str(order_id), customer=customer
        )

    # --- Helpers -----------------------------------------------------------------------------

    async def _house(self, house_id: uuid.UUID) -> House:
        async with self._database.session(system=True) as session:
            house = await session.get(House, house_id)
        assert house is not None
        return house

    async def counters_changed(self, house_id: uuid.UUID) -> None:
        """After a committed reservation or release: catalogue cache and sales progress."""
        await self._cache.invalidate()
        await house_events.sales_progress(self._events, await self._house(house_id))

    async def outcome(self, order_id: uuid.UUID) -> Outcome:
        """The order as committed now, with its tickets by number."""
        async with self._database.session(system=True) as session:
            order = await session.get(Order, order_id, populate_existing=True)
            assert order is not None
            issued = list(
                (
                    await session.scalars(
                        select(Ticket).where(Ticket.order_id == order_id).order_by(Ticket.number)
                    )
                ).all()
            )
        return Outcome(order=order, tickets=issued)
