"""Rows ↔ PaymentService messages for orders and transactions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from amesa.payment.v1 import payment_service_pb2 as pb
from server.core.money import money
from server.core.names import parse_id, parse_name
from server.lottery.mapping import timestamp
from server.payment.models import (
    Order,
    OrderState,
    PaymentProvider,
    Transaction,
    TransactionKind,
    TransactionState,
)

ORDER_STATE_TO_PROTO = {
    OrderState.PENDING_PAYMENT: pb.ORDER_STATE_PENDING_PAYMENT,
    OrderState.PAID: pb.ORDER_STATE_PAID,
    OrderState.EXPIRED: pb.ORDER_STATE_EXPIRED,
    OrderState.CANCELLED: pb.ORDER_STATE_CANCELLED,
    OrderState.FAILED: pb.ORDER_STATE_FAILED,
    OrderState.REFUNDED: pb.ORDER_STATE_REFUNDED,
    OrderState.PARTIALLY_REFUNDED: pb.ORDER_STATE_PARTIALLY_REFUNDED,
}
ORDER_STATE_FROM_PROTO = {value: key for key, value in ORDER_STATE_TO_PROTO.items()}
PROVIDER_TO_PROTO = {
    PaymentProvider.STRIPE: pb.PAYMENT_PROVIDER_STRIPE,
    PaymentProvider.PAYPAL: pb.PAYMENT_PROVIDER_PAYPAL,
}
PROVIDER_FROM_PROTO = {value: key for key, value in PROVIDER_TO_PROTO.items()}
KIND_TO_PROTO = {
    TransactionKind.CHARGE: pb.TRANSACTION_KIND_CHARGE,
    TransactionKind.REFUND: pb.TRANSACTION_KIND_REFUND,
}
KIND_FROM_PROTO = {value: key for key, value in KIND_TO_PROTO.items()}
TRANSACTION_STATE_TO_PROTO = {
    TransactionState.PENDING: pb.TRANSACTION_STATE_PENDING,
    TransactionState.SUCCEEDED: pb.TRANSACTION_STATE_SUCCEEDED,
    TransactionState.FAILED: pb.TRANSACTION_STATE_FAILED,
}
TRANSACTION_STATE_FROM_PROTO = {value: key for key, value in TRANSACTION_STATE_TO_PROTO.items()}


def order_name(order: Order) -> str:
    return f"users/{order.user_id}/orders/{order.id}"


def order_to_proto(
    order: Order, *, ticket_numbers: Sequence[int] = (), client_secret: str = ""
) -> pb.Order:
    return pb.Order(
        name=order_name(order),
        house=f"houses/{order.house_id}",
        quantity=order.quantity,
        unit_price=money(order.unit_price_minor, order.currency),
        subtotal=money(order.subtotal_minor, order.currency),
        discount=money(order.discount_minor, order.currency),
        total=money(order.total_minor, order.currency),
        promotion_code=order.promotion_code or "",
        state=ORDER_STATE_TO_PROTO[order.state],
        provider=PROVIDER_TO_PROTO[order.provider],
        provider_payment_reference=order.provider_payment_reference or "",
        payment_method=(
            f"users/{order.user_id}/paymentMethods/{order.payment_method_id}"
            if order.payment_method_id
            else ""
        ),
        client_secret=client_secret if order.state is OrderState.PENDING_PAYMENT else "",
        failure_reason=order.failure_reason or "",
        refunded_amount=money(order.refunded_minor, order.currency),
        ticket_numbers=list(ticket_numbers),
        request_id=str(order.request_id),
        expire_time=timestamp(order.expire_time),
        paid_time=timestamp(order.paid_time),
        create_time=timestamp(order.create_time),
        update_time=timestamp(order.update_time),
    )


def transaction_to_proto(transaction: Transaction) -> pb.Transaction:
    return pb.Transaction(
        name=f"users/{transaction.user_id}/transactions/{transaction.id}",
        kind=KIND_TO_PROTO[transaction.kind],
        state=TRANSACTION_STATE_TO_PROTO[transaction.state],
        amount=money(transaction.amount_minor, transaction.currency),
        provider=PROVIDER_TO_PROTO[transaction.provider],
        provider_reference=transaction.provider_reference or "",
        provider_payment_reference=transaction.provider_payment_reference or "",
        order=f"users/{transaction.user_id}/orders/{transaction.order_id}",
        reason=transaction.reason or "",
        failure_reason=transaction.failure_reason or "",
        request_id=str(transaction.request_id) if transaction.request_id else "",
        create_time=timestamp(transaction.create_time),
        update_time=timestamp(transaction.update_time),
    )


def parse_order_name(name: str) -> tuple[str, uuid.UUID]:
    """(user segment, order id) of `users/{user}/orders/{id}`."""
    user, order = parse_name(name, "users", "orders")
    return user, parse_id(order)
