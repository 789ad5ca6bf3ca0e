"""PaymentService promotion RPCs (a mixin of PaymentServicer): admin CRUD and ValidatePromotion,
with the promotion ↔ proto mapping. The rules are in server/payment/promotions.py."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import grpc
from google.protobuf import empty_pb2, timestamp_pb2

from amesa.payment.v1 import payment_service_pb2 as pb
from server.core.context import require_principal
from server.core.deps import Deps
from server.core.money import money
from server.core.names import parse_id, parse_name
from server.payment import promotions
from server.payment.models import Promotion

Context = grpc.aio.ServicerContext[Any, Any]

_REJECTION_TO_PROTO: dict[promotions.Rejection | None, pb.PromotionRejection.ValueType] = {
    None: pb.PROMOTION_REJECTION_UNSPECIFIED,
    promotions.Rejection.NOT_FOUND: pb.PROMOTION_REJECTION_NOT_FOUND,
    promotions.Rejection.NOT_STARTED: pb.PROMOTION_REJECTION_NOT_STARTED,
    promotions.Rejection.EXPIRED: pb.PROMOTION_REJECTION_EXPIRED,
    promotions.Rejection.EXHAUSTED: pb.PROMOTION_REJECTION_EXHAUSTED,
    promotions.Rejection.USER_LIMIT_REACHED: pb.PROMOTION_REJECTION_USER_LIMIT_REACHED,
    promotions.Rejection.QUANTITY_TOO_LOW: pb.PROMOTION_REJECTION_QUANTITY_TOO_LOW,
    promotions.Rejection.HOUSE_NOT_ELIGIBLE: pb.PROMOTION_REJECTION_HOUSE_NOT_ELIGIBLE,
    promotions.Rejection.CURRENCY_MISMATCH: pb.PROMOTION_REJECTION_CURRENCY_MISMATCH,
}


def _promotion_id(name: str, *, field: str = "name") -> uuid.UUID:
    return parse_id(parse_name(name, "promotions", field=field)[0], field=field)


def _house_id(name: str, *, field: str) -> uuid.UUID:
    return parse_id(parse_name(name, "houses", field=field)[0], field=field)


def _timestamp(value: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value)
    return message


def _datetime(message: pb.Promotion, field: str) -> datetime.datetime | None:
    if not message.HasField(field):  # type: ignore[arg-type]
        return None
    value: timestamp_pb2.Timestamp = getattr(message, field)
    return value.ToDatetime(tzinfo=datetime.UTC)


def promotion_to_proto(promotion: Promotion) -> pb.Promotion:
    message = pb.Promotion(
        name=promotions.promotion_name(promotion.id),
        code=promotion.code,
        description=promotion.description,
        valid_from=_timestamp(promotion.valid_from),
        valid_until=_timestamp(promotion.valid_until),
        max_total_uses=promotion.max_total_uses,
        max_uses_per_user=promotion.max_uses_per_user,
        min_quantity=promotion.min_quantity,
        houses=[f"houses/{house_id}" for house_id in promotion.house_ids],
        uses_count=promotion.uses_count,
        create_time=_timestamp(promotion.create_time),
        update_time=_timestamp(promotion.update_time),
        delete_time=_timestamp(promotion.delete_time),
    )
    if promotion.percent_off_bps is not None:
        message.percent_off_bps = promotion.percent_off_bps
    elif promotion.amount_off_minor is not None and promotion.amount_off_currency is not None:
        message.amount_off.CopyFrom(
            money(promotion.amount_off_minor, promotion.amount_off_currency)
        )
    elif promotion.free_tickets is not None:
        message.free_tickets = promotion.free_tickets
    return message


def promotion_fields(message: pb.Promotion) -> promotions.PromotionFields:
    discount = message.WhichOneof("discount")
    return promotions.PromotionFields(
        code=message.code,
        description=message.description,
        percent_off_bps=message.percent_off_bps if discount == "percent_off_bps" else None,
        amount_off_minor=message.amount_off.amount_minor if discount == "amount_off" else None,
        amount_off_currency=message.amount_off.currency_code if discount == "amount_off" else None,
        free_tickets=message.free_tickets if discount == "free_tickets" else None,
        valid_from=_datetime(message, "valid_from"),
        valid_until=_datetime(message, "valid_until"),
        max_total_uses=message.max_total_uses,
        max_uses_per_user=message.max_uses_per_user,
        min_quantity=message.min_quantity,
        house_ids=tuple(
            _house_id(name, field=f"promotion.houses[{index}]")
            for index, name in enumerate(message.houses)
        ),
    )


def preview_to_proto(preview: promotions.Preview) -> pb.ValidatePromotionResponse:
    promotion = preview.promotion
    rejection = preview.rejection
    return pb.ValidatePromotionResponse(
        valid=rejection is None,
        rejection=_REJECTION_TO_PROTO[rejection],
        description=promotion.description if promotion is not None else "",
        unit_price=money(preview.unit_price_minor, preview.currency),
        subtotal=money(preview.subtotal_minor, preview.currency),
        discount=money(preview.discount_minor, preview.currency),
        total=money(preview.total_minor, preview.currency),
        min_quantity=(
            promotion.min_quantity
            if promotion is not None and rejection is promotions.Rejection.QUANTITY_TOO_LOW
            else 0
        ),
    )


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class PromotionRpcs:
    _deps: Deps

    async def GetPromotion(self, request: pb.GetPromotionRequest, context: Context) -> pb.Promotion:
        principal = require_principal()
        async with self._deps.database.session(principal) as session:
            promotion = await promotions.get_promotion(
                session, promotion_id=_promotion_id(request.name)
            )
            return promotion_to_proto(promotion)

    async def ListPromotions(
        self, request: pb.ListPromotionsRequest, context: Context
    ) -> pb.ListPromotionsResponse:
        principal = require_principal()
        spec = promotions.PromotionFilter(
            code=request.code,
            house_id=_house_id(request.house, field="house") if request.house else None,
            active_only=request.active_only,
            show_deleted=request.show_deleted,
        )
        async with self._deps.database.session(principal) as session:
            page = await promotions.list_promotions(
                session,
                spec=spec,
                now=_utcnow(),
                requested_size=request.page_size,
                token=request.page_token,
                tokens=self._deps.page_tokens,
            )
            items = [promotion_to_proto(promotion) for promotion in page.items]
        return pb.ListPromotionsResponse(
            promotions=items, next_page_token=page.next_page_token, total_size=page.total_size
        )

    async def CreatePromotion(
        self, request: pb.CreatePromotionRequest, context: Context
    ) -> pb.Promotion:
        principal = require_principal()
        fields = promotion_fields(request.promotion)
        async with self._deps.database.session(principal) as session:
            promotion = await promotions.create_promotion(session, fields=fields, actor=principal)
            return promotion_to_proto(promotion)

    async def UpdatePromotion(
        self, request: pb.UpdatePromotionRequest, context: Context
    ) -> pb.Promotion:
        principal = require_principal()
        promotion_id = _promotion_id(request.promotion.name, field="promotion.name")
        fields = promotion_fields(request.promotion)
        async with self._deps.database.session(principal) as session:
            promotion = await promotions.update_promotion(
                session,
                promotion_id=promotion_id,
                paths=request.update_mask.paths,
                fields=fields,
                actor=principal,
            )
            return promotion_to_proto(promotion)

    async def DeletePromotion(
        self, request: pb.DeletePromotionRequest, context: Context
    ) -> empty_pb2.Empty:
        principal = require_principal()
        async with self._deps.database.session(principal) as session:
            await promotions.delete_promotion(
                session, promotion_id=_promotion_id(request.name), actor=principal
            )
        return empty_pb2.Empty()

    async def ValidatePromotion(
        self, request: pb.ValidatePromotionRequest, context: Context
    ) -> pb.ValidatePromotionResponse:
        principal = require_principal()
        house_id = _house_id(request.house, field="house")
        async with self._deps.database.session(principal) as session:
            preview = await promotions.preview_promotion(
                session,
                code=request.code,
                user_id=principal.user_id,
                house_id=house_id,
                quantity=request.quantity,
                now=_utcnow(),
            )
            return preview_to_proto(preview)
