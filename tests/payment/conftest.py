"""Fixtures of the payment tests: gateways pointed at localstripe (whose process the root
conftest starts once per run) and a PayPal stand-in per test."""

from tests.payment.localstripe import (  # noqa: F401 - fixtures
    make_stripe_gateway_fixture,
    stripe_gateway_fixture,
)
from tests.payment.paypal_standin import paypal_standin_fixture  # noqa: F401 - fixture
