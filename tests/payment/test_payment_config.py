"""GetPaymentConfig: public, and it names exactly the providers this deployment enabled."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import grpc

from amesa.payment.v1 import payment_service_pb2 as pb
from amesa.payment.v1 import payment_service_pb2_grpc
from server.app import App
from server.core.settings import PaymentConfig, Settings
from tests.payment.localstripe import LocalStripe
from tests.support import bearer, separate_server, token_for


def payment(settings: Settings, localstripe: LocalStripe, **overrides: Any) -> PaymentConfig:
    return replace(
        settings.payment,
        **{
            "stripe_secret_key": localstripe.api_key,
            "stripe_publishable_key": "pk_test_amesa",
            "stripe_api_base": localstripe.base_url,
            "stripe_localstripe": True,
            "stripe_webhook_secret": "whsec_amesa_test",
            "paypal_client_id": None,
            "paypal_client_secret": None,
            "currencies": ("EUR", "USD"),
            **overrides,
        },
    )


@asynccontextmanager
async def config_stub(
    settings: Settings, *, config: PaymentConfig
) -> AsyncIterator[payment_service_pb2_grpc.PaymentServiceAsyncStub]:
    """A server of its own: the providers a deployment enables are fixed when it is built."""
    async with (
        separate_server(settings, payment=config) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield payment_service_pb2_grpc.PaymentServiceStub(channel)


async def test_config_with_stripe_is_public_and_holds_no_secret(
    settings: Settings, localstripe: LocalStripe, app: App
) -> None:
    config = payment(settings, localstripe)
    async with config_stub(settings, config=config) as stub:
        anonymous = await stub.GetPaymentConfig(pb.GetPaymentConfigRequest())
        signed_in = await stub.GetPaymentConfig(
            pb.GetPaymentConfigRequest(), metadata=bearer(token_for(app))
        )

    assert anonymous == pb.PaymentConfig(
        stripe_publishable_key="pk_test_amesa",
        enabled_providers=[pb.PAYMENT_PROVIDER_STRIPE],
        currency_codes=["EUR", "USD"],
    )
    assert signed_in == anonymous
    raw = anonymous.SerializeToString()
    assert localstripe.api_key.encode() not in raw
    assert b"whsec_" not in raw


async def test_config_with_stripe_and_paypal_lists_both_in_order(
    settings: Settings, localstripe: LocalStripe, app: App
) -> None:
    config = payment(
        settings,
        localstripe,
        paypal_client_id="paypal-client-id",
        paypal_client_secret="paypal-client-secret",
    )
    async with config_stub(settings, config=config) as stub:
        response = await stub.GetPaymentConfig(pb.GetPaymentConfigRequest())

    assert response == pb.PaymentConfig(
        stripe_publishable_key="pk_test_amesa",
        paypal_client_id="paypal-client-id",
        enabled_providers=[pb.PAYMENT_PROVIDER_STRIPE, pb.PAYMENT_PROVIDER_PAYPAL],
        currency_codes=["EUR", "USD"],
    )
    assert b"paypal-client-secret" not in response.SerializeToString()


async def test_config_with_providers_disabled_keeps_currencies_only(
    settings: Settings, localstripe: LocalStripe, app: App
) -> None:
    # A publishable key left configured for a disabled Stripe is not advertised.
    config = payment(
        settings,
        localstripe,
        stripe_secret_key=None,
        paypal_client_id="paypal-client-id",
        paypal_client_secret=None,
        currencies=("EUR",),
    )
    async with config_stub(settings, config=config) as stub:
        response = await stub.GetPaymentConfig(pb.GetPaymentConfigRequest())

    assert response == pb.PaymentConfig(currency_codes=["EUR"])
