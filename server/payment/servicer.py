"""gRPC adapter of PaymentService, one mixin per area:

- orders, transactions, Stripe confirmation and webhooks: this class;
- payment methods and GetPaymentConfig: `methods_servicer.PaymentMethodRpcs`;
- promotions: `promotions_servicer.PromotionRpcs`;
- GetRevenueReport: `reports_servicer.ReportRpcs`;
- PayPal orders and webhooks: `paypal_servicer.PayPalRpcs`.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from amesa.payment.v1 import payment_service_pb2 as pb
from amesa.payment.v1 import payment_service_pb2_grpc
from server.core.context import Principal, require_principal
from server.core.deps import Deps
from server.core.errors import NotFound, PermissionDenied
from server.core.names import parse_id, parse_name, resolve_user
from server.core.pagination import Page, keyset_page
from server.lottery.lifecycle import utcnow
from server.payment import mapping, methods, orders, refunds, webhook
from server.payment.checkout import Checkout
from server.payment.methods_servicer import PaymentMethodRpcs
from server.payment.models import Order, PaymentProvider, Transaction
from server.payment.paypal_servicer import PayPalRpcs
from server.payment.promotions_servicer import PromotionRpcs
from server.payment.reports_servicer import ReportRpcs

Context = grpc.aio.ServicerContext[Any, Any]
Listed = TypeVar("Listed", Order, Transaction)
ALL_USERS = "-"


def _owned(name: str, collection: str, principal: Principal) -> tuple[uuid.UUID, uuid.UUID]:
    """(owner, id) of `users/{user}/{collection}/{id}` with the ownership rule."""
    user, child = parse_name(name, "users", collection)
    return resolve_user(user, principal), parse_id(child)


def _parent(parent: str, principal: Principal) -> uuid.UUID | None:
    """The owner a list is for; None for `users/-` (every user, admins only)."""
    (user,) = parse_name(parent, "users", field="parent")
    if user == ALL_USERS:
        if not principal.is_admin:
            raise PermissionDenied("NOT_OWNER", "only admins may list every user's records")
        return None
    return resolve_user(user, principal, field="parent")


class PaymentServicer(
    PayPalRpcs,
    PaymentMethodRpcs,
    PromotionRpcs,
    ReportRpcs,
    payment_service_pb2_grpc.PaymentServiceServicer,
):
    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._checkout = Checkout(deps)

    async def _order_proto(self, order: Order, *, client_secret: str = "") -> pb.Order:
        async with self._deps.database.session(system=True) as session:
            numbers = await orders.ticket_numbers(session, [order.id])
        return mapping.order_to_proto(
            order, ticket_numbers=numbers[order.id], client_secret=client_secret
        )

    # --- Orders ------------------------------------------------------------------------------

    async def GetOrder(self, request: pb.GetOrderRequest, context: Context) -> pb.Order:
        principal = require_principal()
        user_id, order_id = _owned(request.name, "orders", principal)
        async with self._deps.database.session(principal) as session:
            order = await orders.get_order(session, user_id=user_id, order_id=order_id)
        return await self._order_proto(order)

    async def ListOrders(
        self, request: pb.ListOrdersRequest, context: Context
    ) -> pb.ListOrdersResponse:
        principal = require_principal()
        owner = _parent(request.parent, principal)
        states = sorted(mapping.ORDER_STATE_FROM_PROTO[state] for state in request.states)
        query = select(Order)
        if owner is not None:
            query = query.where(Order.user_id == owner)
        if states:
            query = query.where(Order.state.in_(states))
        if request.house:
            (house,) = parse_name(request.house, "houses", field="house")
            query = query.where(Order.house_id == parse_id(house, field="house"))
        async with self._deps.database.session(principal) as session:
            page = await keyset(
                session,
                query,
                Order,
                request,
                deps=self._deps,
                filters={
                    "owner": str(owner),
                    "states": [s.value for s in states],
                    "house": request.house,
                },
            )
            numbers = await orders.ticket_numbers(session, [order.id for order in page.items])
        return pb.ListOrdersResponse(
            orders=[mapping.order_to_proto(o, ticket_numbers=numbers[o.id]) for o in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def CancelOrder(self, request: pb.CancelOrderRequest, context: Context) -> pb.Order:
        principal = require_principal()
        user_id, order_id = _owned(request.name, "orders", principal)
        order = await self._checkout.cancel(order_id, user_id=user_id)
        return await self._order_proto(order)

    async def ConfirmOrderPayment(
        self, request: pb.ConfirmOrderPaymentRequest, context: Context
    ) -> pb.Order:
        principal = require_principal()
        user_id, order_id = _owned(request.name, "orders", principal)
        order = await self._checkout.confirm(order_id, user_id=user_id)
        return await self._order_proto(order)

    async def RefundOrder(
        self, request: pb.RefundOrderRequest, context: Context
    ) -> pb.RefundOrderResponse:
        principal = require_principal()
        user_id, order_id = _owned(request.name, "orders", principal)
        amount = request.amount if request.HasField("amount") else None
        async with self._deps.database.session(system=True) as session:
            await orders.get_order(session, user_id=user_id, order_id=order_id)
            order, refund = await refunds.refund_order(
                session,
                order_id=order_id,
                amount_minor=amount.amount_minor if amount is not None else None,
                currency=amount.currency_code if amount is not None else None,
                reason=request.reason,
                request_id=uuid.UUID(request.request_id),
                actor=principal,
                now=utcnow(),
            )
            refund_id, refund_key = refund.id, refund.idempotency_key
        await refunds.send_refund(
            self._deps.database, self._deps.gateways, idempotency_key=refund_key
        )
        async with self._deps.database.session(system=True) as session:
            settled = await session.get(Transaction, refund_id, populate_existing=True)
            assert settled is not None
            transaction = mapping.transaction_to_proto(settled)
        return pb.RefundOrderResponse(order=await self._order_proto(order), transaction=transaction)

    # --- Transactions ------------------------------------------------------------------------

    async def GetTransaction(
        self, request: pb.GetTransactionRequest, context: Context
    ) -> pb.Transaction:
        principal = require_principal()
        user_id, transaction_id = _owned(request.name, "transactions", principal)
        async with self._deps.database.session(principal) as session:
            transaction = await session.scalar(
                select(Transaction).where(
                    Transaction.id == transaction_id, Transaction.user_id == user_id
                )
            )
            if transaction is None:
                raise NotFound("TRANSACTION_NOT_FOUND", "no such transaction for this user")
            return mapping.transaction_to_proto(transaction)

    async def ListTransactions(
        self, request: pb.ListTransactionsRequest, context: Context
    ) -> pb.ListTransactionsResponse:
        principal = require_principal()
        owner = _parent(request.parent, principal)
        states = sorted(mapping.TRANSACTION_STATE_FROM_PROTO[s] for s in request.states)
        query = select(Transaction)
        if owner is not None:
            query = query.where(Transaction.user_id == owner)
        if states:
            query = query.where(Transaction.state.in_(states))
        if request.kind:
            query = query.where(Transaction.kind == mapping.KIND_FROM_PROTO[request.kind])
        if request.order:
            order_user, order_id = _owned(request.order, "orders", principal)
            query = query.where(Transaction.order_id == order_id, Transaction.user_id == order_user)
        async with self._deps.database.session(principal) as session:
            page = await keyset(
                session,
                query,
                Transaction,
                request,
                deps=self._deps,
                filters={
                    "owner": str(owner),
                    "states": [s.value for s in states],
                    "kind": int(request.kind),
                    "order": request.order,
                },
            )
            return pb.ListTransactionsResponse(
                transactions=[mapping.transaction_to_proto(t) for t in page.items],
                next_page_token=page.next_page_token,
                total_size=page.total_size,
            )

    # --- Webhooks ----------------------------------------------------------------------------

    async def StripeWebhook(
        self, request: pb.StripeWebhookRequest, context: Context
    ) -> empty_pb2.Empty:
        header = next(
            (
                value
                for key, value in context.invocation_metadata() or ()
                if key == "stripe-signature" and isinstance(value, str)
            ),
            None,
        )
        self._deps.gateways.require(PaymentProvider.STRIPE)
        event = webhook.verified_event(
            request.payload.data, header, self._deps.settings.payment.stripe_webhook_secret
        )
        await webhook.apply_stripe_event(
            self._deps.database,
            event,
            {
                "payment_intent.": self._checkout.settle_reference,
                "setup_intent.succeeded": self._setup_intent_succeeded,
            },
            now=utcnow(),
        )
        return empty_pb2.Empty()

    async def _setup_intent_succeeded(self, setup_intent_id: str) -> None:
        await methods.on_setup_intent_succeeded(self._deps, setup_intent_id)


async def keyset(
    session: AsyncSession,
    query: Select[Listed],
    model: type[Listed],
    request: pb.ListOrdersRequest | pb.ListTransactionsRequest,
    *,
    deps: Deps,
    filters: dict[str, Any],
) -> Page[Listed]:
    """Newest first by creation time, then id (unique)."""
    return await keyset_page(
        session,
        query,
        keys=[model.create_time, model.id],
        key_of=lambda row: (row.create_time, row.id),
        descending=True,
        requested_size=request.page_size,
        token=request.page_token,
        tokens=deps.page_tokens,
        filters=filters,
    )
