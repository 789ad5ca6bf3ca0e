"""Fixtures of the payment tests: gateways pointed at localstripe (whose process the root
conftest starts once per run) and a PayPal stand-in per test."""

from __future__ import annotations

import grpc
import pytest

from amesa.payment.v1 import payment_service_pb2_grpc
from tests.lottery.conftest import callers  # noqa: F401 - fixture
from tests.payment.localstripe import (  # noqa: F401 - fixtures
    make_stripe_gateway_fixture,
    stripe_gateway_fixture,
)
from tests.payment.paypal_standin import paypal_standin_fixture  # noqa: F401 - fixture


@pytest.fixture
def payments(channel: grpc.aio.Channel) -> payment_service_pb2_grpc.PaymentServiceAsyncStub:
    return payment_service_pb2_grpc.PaymentServiceStub(channel)
