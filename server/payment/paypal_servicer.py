"""PaymentService RPCs of PayPal: CreatePayPalOrder, CapturePayPalOrder (the buyer's own orders
only) and PayPalWebhook; the flow itself is server/payment/paypal_flow.py."""

from __future__ import annotations

import uuid
from functools import cached_property
from typing import Any

import grpc
from google.protobuf import empty_pb2

from amesa.payment.v1 import payment_service_pb2 as pb
from server.core.context import require_principal
from server.core.deps import Deps
from server.core.errors import PermissionDenied
from server.core.names import parse_id, parse_name, resolve_user
from server.payment import mapping, orders
from server.payment.models import Order
from server.payment.paypal_flow import PayPalFlow

Context = grpc.aio.ServicerContext[Any, Any]


def _own_order(name: str) -> tuple[uuid.UUID, uuid.UUID]:
    """(owner, order id): paying is for the buyer alone, so admins get NOT_OWNER here too."""
    principal = require_principal()
    user, order = parse_name(name, "users", "orders")
    user_id = resolve_user(user, principal)
    if user_id != principal.user_id:
        raise PermissionDenied("NOT_OWNER", "only the buyer can pay for an order")
    return user_id, parse_id(order)


class PayPalRpcs:
    _deps: Deps

    @cached_property
    def _paypal(self) -> PayPalFlow:
        return PayPalFlow(self._deps)

    async def _paypal_order_proto(self, order: Order) -> pb.Order:
        async with self._deps.database.session(system=True) as session:
            numbers = await orders.ticket_numbers(session, [order.id])
        return mapping.order_to_proto(order, ticket_numbers=numbers[order.id])

    async def CreatePayPalOrder(
        self, request: pb.CreatePayPalOrderRequest, context: Context
    ) -> pb.CreatePayPalOrderResponse:
        user_id, order_id = _own_order(request.name)
        order, approval_url = await self._paypal.create(
            order_id, user_id=user_id, return_url=request.return_url, cancel_url=request.cancel_url
        )
        return pb.CreatePayPalOrderResponse(
            order=await self._paypal_order_proto(order), approval_url=approval_url
        )

    async def CapturePayPalOrder(
        self, request: pb.CapturePayPalOrderRequest, context: Context
    ) -> pb.Order:
        user_id, order_id = _own_order(request.name)
        order = await self._paypal.capture(order_id, user_id=user_id)
        return await self._paypal_order_proto(order)

    async def PayPalWebhook(
        self, request: pb.PayPalWebhookRequest, context: Context
    ) -> empty_pb2.Empty:
        headers = {
            key: value
            for key, value in context.invocation_metadata() or ()
            if isinstance(value, str)
        }
        await self._paypal.webhook(headers, request.payload.data)
        return empty_pb2.Empty()
