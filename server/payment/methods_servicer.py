"""PaymentService: GetPaymentConfig and the saved payment methods
(users/{user}/paymentMethods/{uuid}). PaymentServicer inherits this class and sets `self._deps`;
the rules live in server/payment/methods.py."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import grpc
from google.protobuf import empty_pb2, timestamp_pb2

from amesa.payment.v1 import payment_service_pb2 as pb
from server.core.context import Principal, require_principal
from server.core.deps import Deps
from server.core.errors import PermissionDenied
from server.core.names import child_name, parse_id, parse_name, resolve_user
from server.core.settings import PaymentConfig
from server.payment import methods
from server.payment.models import PaymentMethod, PaymentProvider

Context = grpc.aio.ServicerContext[Any, Any]

_PROVIDERS = {
    PaymentProvider.STRIPE: pb.PAYMENT_PROVIDER_STRIPE,
    PaymentProvider.PAYPAL: pb.PAYMENT_PROVIDER_PAYPAL,
}


class PaymentMethodRpcs:
    _deps: Deps

    async def GetPaymentConfig(
        self, request: pb.GetPaymentConfigRequest, context: Context
    ) -> pb.PaymentConfig:
        return payment_config_to_proto(self._deps.settings.payment)

    async def ListPaymentMethods(
        self, request: pb.ListPaymentMethodsRequest, context: Context
    ) -> pb.ListPaymentMethodsResponse:
        principal = require_principal()
        (segment,) = parse_name(request.parent, "users", field="parent")
        user_id = _own_user(segment, principal, field="parent")
        async with self._deps.database.session(principal) as session:
            page = await methods.list_payment_methods(
                session,
                user_id=user_id,
                requested_size=request.page_size,
                token=request.page_token,
                tokens=self._deps.page_tokens,
            )
        return pb.ListPaymentMethodsResponse(
            payment_methods=[payment_method_to_proto(m) for m in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def CreateSetupIntent(
        self, request: pb.CreateSetupIntentRequest, context: Context
    ) -> pb.CreateSetupIntentResponse:
        principal = require_principal()
        (segment,) = parse_name(request.parent, "users", field="parent")
        user_id = _own_user(segment, principal, field="parent")
        intent = await methods.create_setup_intent(
            self._deps.database, self._deps.gateways.stripe, user_id=user_id
        )
        return pb.CreateSetupIntentResponse(
            client_secret=intent.client_secret, provider_reference=intent.id
        )

    async def SetDefaultPaymentMethod(
        self, request: pb.SetDefaultPaymentMethodRequest, context: Context
    ) -> pb.PaymentMethod:
        principal = require_principal()
        user_id, method_id = _method_name(request.name, principal)
        async with self._deps.database.session(principal) as session:
            method = await methods.set_default_payment_method(
                session, user_id=user_id, method_id=method_id
            )
        return payment_method_to_proto(method)

    async def DeletePaymentMethod(
        self, request: pb.DeletePaymentMethodRequest, context: Context
    ) -> empty_pb2.Empty:
        principal = require_principal()
        user_id, method_id = _method_name(request.name, principal)
        async with self._deps.database.session(principal) as session:
            await methods.delete_payment_method(session, user_id=user_id, method_id=method_id)
        return empty_pb2.Empty()


def _own_user(segment: str, principal: Principal, *, field: str) -> uuid.UUID:
    # Payment methods are the caller's own only: unlike orders, not even an admin may name
    # another user's (the proto's access rule).
    user_id = resolve_user(segment, principal, field=field)
    if user_id != principal.user_id:
        raise PermissionDenied("NOT_OWNER", "you may only access your own payment methods")
    return user_id


def _method_name(name: str, principal: Principal) -> tuple[uuid.UUID, uuid.UUID]:
    user_segment, method_segment = parse_name(name, "users", "paymentMethods")
    return _own_user(user_segment, principal, field="name"), parse_id(method_segment)


def payment_config_to_proto(config: PaymentConfig) -> pb.PaymentConfig:
    providers: list[pb.PaymentProvider.ValueType] = []
    if config.stripe_enabled:
        providers.append(pb.PAYMENT_PROVIDER_STRIPE)
    if config.paypal_enabled:
        providers.append(pb.PAYMENT_PROVIDER_PAYPAL)
    return pb.PaymentConfig(
        stripe_publishable_key=config.stripe_publishable_key if config.stripe_enabled else "",
        paypal_client_id=(config.paypal_client_id or "") if config.paypal_enabled else "",
        enabled_providers=providers,
        currency_codes=list(config.currencies),
    )


def payment_method_to_proto(method: PaymentMethod) -> pb.PaymentMethod:
    return pb.PaymentMethod(
        name=child_name(method.user_id, "paymentMethods", method.id),
        provider=_PROVIDERS[method.provider],
        provider_reference=method.provider_reference,
        brand=method.brand,
        last4=method.last4,
        exp_month=method.exp_month,
        exp_year=method.exp_year,
        is_default=method.is_default,
        create_time=_timestamp(method.create_time),
    )


def _timestamp(value: datetime.datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value)
    return message
