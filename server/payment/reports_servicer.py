"""PaymentService reports: GetRevenueReport (ADMIN, enforced by the access interceptor)."""

from __future__ import annotations

import datetime
from typing import Any

import grpc

from amesa.payment.v1 import payment_service_pb2 as pb
from server.core.context import require_principal
from server.core.deps import Deps
from server.core.errors import FieldViolation, InvalidArgument
from server.core.money import money
from server.core.names import parse_id, parse_name
from server.payment import reports
from server.payment.models import PaymentProvider

Context = grpc.aio.ServicerContext[Any, Any]

_GROUP_BY = {
    pb.REVENUE_GROUP_BY_DAY: reports.GroupBy.DAY,
    pb.REVENUE_GROUP_BY_HOUSE: reports.GroupBy.HOUSE,
    pb.REVENUE_GROUP_BY_PROVIDER: reports.GroupBy.PROVIDER,
}
_PROVIDER = {
    PaymentProvider.STRIPE: pb.PAYMENT_PROVIDER_STRIPE,
    PaymentProvider.PAYPAL: pb.PAYMENT_PROVIDER_PAYPAL,
}


class ReportRpcs:
    _deps: Deps

    async def GetRevenueReport(
        self, request: pb.GetRevenueReportRequest, context: Context
    ) -> pb.RevenueReport:
        principal = require_principal()
        group_by = _GROUP_BY.get(request.group_by)
        if group_by is None:  # the validator refuses it first; kept for direct callers
            raise InvalidArgument(
                "INVALID_REQUEST",
                "group_by is required",
                violations=[FieldViolation("group_by", "must be DAY, HOUSE or PROVIDER")],
            )
        time_zone = reports.time_zone_or_utc(request.time_zone)
        house_id = (
            parse_id(parse_name(request.house, "houses", field="house")[0], field="house")
            if request.house
            else None
        )
        async with self._deps.database.session(principal) as session:
            report = await reports.revenue_report(
                session,
                start=request.start_time.ToDatetime(datetime.UTC),
                end=request.end_time.ToDatetime(datetime.UTC),
                group_by=group_by,
                house_id=house_id,
                time_zone=time_zone,
            )
        return pb.RevenueReport(
            rows=[_row_to_proto(row) for row in report.rows],
            totals=[_row_to_proto(row) for row in report.totals],
        )


def _row_to_proto(row: reports.RevenueRow) -> pb.RevenueReportRow:
    message = pb.RevenueReportRow(
        house=f"houses/{row.house_id}" if row.house_id else "",
        provider=_PROVIDER[row.provider] if row.provider else pb.PAYMENT_PROVIDER_UNSPECIFIED,
        currency_code=row.currency,
        gross=money(row.gross_minor, row.currency),
        refunds=money(row.refunds_minor, row.currency),
        net=money(row.net_minor, row.currency),
        paid_orders=row.paid_orders,
        tickets=row.tickets,
    )
    if row.day is not None:
        message.day.year, message.day.month, message.day.day = (
            row.day.year,
            row.day.month,
            row.day.day,
        )
    return message
