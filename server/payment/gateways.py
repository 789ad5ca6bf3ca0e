"""The payment provider clients of this process, built once from the configuration: a
provider without credentials is disabled (None), and RPCs that need it answer
FAILED_PRECONDITION PROVIDER_DISABLED."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from server.core.errors import FailedPrecondition, Unavailable
from server.core.settings import PaymentConfig
from server.payment.models import PaymentProvider
from server.payment.providers.paypal import PayPalClient
from server.payment.providers.stripe_gateway import StripeGateway

log = logging.getLogger("amesa.payment")


def provider_unavailable(error: Exception, *, reason: str = "PROVIDER_UNAVAILABLE") -> Unavailable:
    """What a client sees when a provider could not be reached: UNAVAILABLE with `reason`, the
    provider's own words logged here rather than sent out."""
    log.warning("payment provider unavailable: %s", error)
    return Unavailable(reason, "the payment provider could not be reached; retry later")


def provider_disabled(provider: str) -> FailedPrecondition:
    return FailedPrecondition("PROVIDER_DISABLED", f"{provider} is not enabled on this deployment")


@dataclass
class Gateways:
    stripe_gateway: StripeGateway | None
    paypal_client: PayPalClient | None

    @property
    def stripe(self) -> StripeGateway:
        if self.stripe_gateway is None:
            raise provider_disabled("Stripe")
        return self.stripe_gateway

    @property
    def paypal(self) -> PayPalClient:
        if self.paypal_client is None:
            raise provider_disabled("PayPal")
        return self.paypal_client

    def require(self, provider: PaymentProvider) -> None:
        """PROVIDER_DISABLED unless `provider` is configured (before anything is reserved)."""
        if provider is PaymentProvider.STRIPE:
            self.stripe  # noqa: B018 - the property raises when Stripe is off
        else:
            self.paypal  # noqa: B018 - the property raises when PayPal is off

    async def aclose(self) -> None:
        if self.stripe_gateway is not None:
            await self.stripe_gateway.aclose()
        if self.paypal_client is not None:
            await self.paypal_client.aclose()


def build_gateways(config: PaymentConfig) -> Gateways:
    stripe = None
    if config.stripe_secret_key is not None:
        stripe = StripeGateway(
            config.stripe_secret_key,
            config.stripe_api_base,
            localstripe_compatible=config.stripe_localstripe,
        )
    paypal = None
    if config.paypal_client_id is not None and config.paypal_client_secret is not None:
        paypal = PayPalClient(
            config.paypal_base_url, config.paypal_client_id, config.paypal_client_secret
        )
    return Gateways(stripe_gateway=stripe, paypal_client=paypal)
