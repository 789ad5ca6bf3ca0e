"""gRPC adapter of PaymentService, one mixin per area:

- orders, transactions, Stripe confirmation and webhooks: this class;
- payment methods and GetPaymentConfig: `methods_servicer.PaymentMethodRpcs`;
- promotions: `promotions_servicer.PromotionRpcs`;
- GetRevenueReport: `reports_servicer.ReportRpcs`.

RPCs not built yet inherit the generated base implementation, which the error interceptor
answers with UNIMPLEMENTED (after authentication and validation, so the access matrix holds).
"""

from __future__ import annotations

from amesa.payment.v1 import payment_service_pb2_grpc
from server.core.deps import Deps
from server.payment.methods_servicer import PaymentMethodRpcs
from server.payment.promotions_servicer import PromotionRpcs
from server.payment.reports_servicer import ReportRpcs


class PaymentServicer(
    PaymentMethodRpcs,
    PromotionRpcs,
    ReportRpcs,
    payment_service_pb2_grpc.PaymentServiceServicer,
):
    def __init__(self, deps: Deps) -> None:
        self._deps = deps
