"""Redeeming promotions in the purchase transaction (apply_promotion, record_redemption,
release_redemption) against the real database: discounts and their cap, every refusal with its
`promotion_reason`, the total and per-user limits under concurrency, and releases."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2_grpc
from amesa.payment.v1 import payment_service_pb2 as pb
from amesa.payment.v1 import payment_service_pb2_grpc
from server.app import App
from server.core.errors import AmesaError, FailedPrecondition, ResourceExhausted
from server.lottery.models import House
from server.payment.models import (
    Order,
    PaymentProvider,
    Promotion,
    PromotionRedemption,
)
from server.payment.promotions import (
    AppliedPromotion,
    apply_promotion,
    record_redemption,
    release_redemption,
)
from server.user.models import User
from tests.lottery.conftest import Callers, active_house, now
from tests.support import bearer, token_for

PRICE = 1000  # active_house sells tickets at 10.00 EUR


@pytest.fixture
def callers(app: App, channel: grpc.aio.Channel) -> Callers:
    user_id = uuid.uuid4()
    return Callers(
        stub=lottery_service_pb2_grpc.LotteryServiceStub(channel),
        admin=tuple(bearer(token_for(app, roles=("user", "admin")))),
        user=tuple(bearer(token_for(app, user_id=user_id))),
        user_id=user_id,
    )


@dataclass(frozen=True)
class Shop:
    """A house on sale and what is needed to redeem codes against it."""

    app: App
    owner_engine: AsyncEngine
    house_id: uuid.UUID

    async def users(self, count: int) -> list[uuid.UUID]:
        async with self.owner_engine.begin() as connection:
            rows = await connection.scalars(
                insert(User)
                .values(
                    [
                        {
                            "email": f"promo-{uuid.uuid4().hex[:12]}@example.com",
                            "given_name": "Pat",
                            "family_name": "Promo",
                        }
                        for _ in range(count)
                    ]
                )
                .returning(User.id)
            )
            return list(rows)

    async def orders(self, user_ids: list[uuid.UUID], *, quantity: int = 2) -> list[uuid.UUID]:
        """PENDING_PAYMENT orders, one per entry of `user_ids` (what PurchaseTickets inserts
        before recording the redemption)."""
        async with self.owner_engine.begin() as connection:
            rows = await connection.scalars(
                insert(Order)
                .values(
                    [
                        {
                            "user_id": user_id,
                            "house_id": self.house_id,
                            "request_id": uuid.uuid4(),
                            "quantity": quantity,
                            "unit_price_minor": PRICE,
                            "subtotal_minor": PRICE * quantity,
                            "total_minor": PRICE * quantity,
                            "currency": "EUR",
                            "provider": PaymentProvider.STRIPE,
                            "expire_time": now() + datetime.timedelta(minutes=15),
                        }
                        for user_id in user_ids
                    ]
                )
                .returning(Order.id)
            )
            return list(rows)

    async def promotion(self, **values: Any) -> str:
        code = f"R{uuid.uuid4().hex[:12]}".upper()
        if not {"percent_off_bps", "amount_off_minor", "free_tickets"} & values.keys():
            values["percent_off_bps"] = 1000
        async with self.owner_engine.begin() as connection:
            await connection.execute(insert(Promotion).values(code=code, **values))
        return code

    async def redeem(
        self,
        code: str,
        *,
        user_id: uuid.UUID,
        order_id: uuid.UUID | None = None,
        quantity: int = 2,
    ) -> AppliedPromotion:
        """What the purchase path does: the user's row lock, then apply and record, committed."""
        async with self.app.deps.database.session(system=True) as session:
            await session.execute(
                select(User.id).where(User.id == user_id).with_for_update(key_share=True)
            )
            house = await session.get(House, self.house_id)
            assert house is not None
            applied = await apply_promotion(
                session, code=code, user_id=user_id, house=house, quantity=quantity, now=now()
            )
            if order_id is not None:
                await record_redemption(
                    session, applied, order_id=order_id, user_id=user_id, currency="EUR"
                )
            return applied

    async def release(self, order_id: uuid.UUID) -> bool:
        async with self.app.deps.database.session(system=True) as session:
            return await release_redemption(session, order_id=order_id)

    async def uses_count(self, code: str) -> int:
        async with self.owner_engine.connect() as connection:
            count = await connection.scalar(
                select(Promotion.uses_count).where(
                    Promotion.code == code, Promotion.delete_time.is_(None)
                )
            )
        assert count is not None
        return int(count)

    async def live_redemptions(self, code: str) -> int:
        async with self.owner_engine.connect() as connection:
            count = await connection.scalar(
                select(func.count())
                .select_from(PromotionRedemption)
                .join(Promotion, Promotion.id == PromotionRedemption.promotion_id)
                .where(Promotion.code == code, PromotionRedemption.release_time.is_(None))
            )
        return int(count or 0)


@pytest.fixture
async def shop(app: App, owner_engine: AsyncEngine, callers: Callers) -> Shop:
    house = await active_house(callers, owner_engine, total=1000)
    return Shop(app=app, owner_engine=owner_engine, house_id=uuid.UUID(house.name.split("/")[1]))


def reason_of(error: AmesaError) -> tuple[str, str]:
    return error.reason, error.metadata["promotion_reason"]


# --- Discounts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("discount", "quantity", "expected_minor"),
    [
        ({"percent_off_bps": 2500}, 4, 1000),
        ({"percent_off_bps": 1}, 3, 0),  # 0.3 minor units round down to nothing
        ({"amount_off_minor": 150, "amount_off_currency": "EUR"}, 2, 150),
        ({"free_tickets": 1, "min_quantity": 5}, 5, 1000),
        ({"percent_off_bps": 10_000}, 3, 2000),
        ({"amount_off_minor": 99_999, "amount_off_currency": "EUR"}, 3, 2000),
        ({"free_tickets": 10}, 4, 3000),
    ],
)
async def test_applied_discount_leaves_at_least_one_ticket_to_pay(
    shop: Shop, discount: dict[str, Any], quantity: int, expected_minor: int
) -> None:
    code = await shop.promotion(**discount)
    (user_id,) = await shop.users(1)
    (order_id,) = await shop.orders([user_id], quantity=quantity)

    applied = await shop.redeem(code.lower(), user_id=user_id, order_id=order_id, quantity=quantity)

    assert applied.code == code
    assert applied.discount_minor == expected_minor
    # The order can carry that discount: the orders CHECK `discount_range` accepts it.
    async with shop.owner_engine.begin() as connection:
        await connection.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(
                discount_minor=applied.discount_minor,
                total_minor=PRICE * quantity - applied.discount_minor,
                promotion_id=applied.promotion_id,
                promotion_code=applied.code,
            )
        )
    assert await shop.uses_count(code) == 1


# --- Refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "quantity", "reason"),
    [
        (
            {"valid_from": now() + datetime.timedelta(days=1)},
            2,
            "PROMOTION_REJECTION_NOT_STARTED",
        ),
        (
            {
                "valid_from": now() - datetime.timedelta(days=2),
                "valid_until": now() - datetime.timedelta(days=1),
            },
            2,
            "PROMOTION_REJECTION_EXPIRED",
        ),
        ({"house_ids": [uuid.uuid4()]}, 2, "PROMOTION_REJECTION_HOUSE_NOT_ELIGIBLE"),
        (
            {"amount_off_minor": 100, "amount_off_currency": "USD"},
            2,
            "PROMOTION_REJECTION_CURRENCY_MISMATCH",
        ),
        ({"min_quantity": 3}, 2, "PROMOTION_REJECTION_QUANTITY_TOO_LOW"),
    ],
)
async def test_apply_promotion_refuses_with_the_validate_reason(
    shop: Shop, values: dict[str, Any], quantity: int, reason: str
) -> None:
    code = await shop.promotion(**values)
    (user_id,) = await shop.users(1)

    with pytest.raises(FailedPrecondition) as raised:
        await shop.redeem(code, user_id=user_id, quantity=quantity)

    assert reason_of(raised.value) == ("PROMOTION_INVALID", reason)
    assert await shop.uses_count(code) == 0


async def test_apply_promotion_with_an_unknown_or_deleted_code_is_promotion_invalid(
    shop: Shop,
) -> None:
    deleted = await shop.promotion(delete_time=now())
    (user_id,) = await shop.users(1)

    for code in ("NOPE-" + uuid.uuid4().hex[:8], "!", deleted):
        with pytest.raises(FailedPrecondition) as raised:
            await shop.redeem(code, user_id=user_id)
        assert reason_of(raised.value) == ("PROMOTION_INVALID", "PROMOTION_REJECTION_NOT_FOUND")


# --- Limits under concurrency ------------------------------------------------------------------


async def test_ten_uses_left_under_a_hundred_concurrent_redemptions_exactly_ten_succeed(
    shop: Shop,
) -> None:
    code = await shop.promotion(max_total_uses=10)
    user_ids = await shop.users(100)
    order_ids = await shop.orders(user_ids)

    results = await asyncio.gather(
        *(
            shop.redeem(code, user_id=user_id, order_id=order_id)
            for user_id, order_id in zip(user_ids, order_ids, strict=True)
        ),
        return_exceptions=True,
    )

    succeeded = [r for r in results if isinstance(r, AppliedPromotion)]
    refused = [r for r in results if isinstance(r, ResourceExhausted)]
    assert len(succeeded) == 10
    assert len(refused) == 90, [r for r in results if not isinstance(r, AppliedPromotion)][:3]
    assert {reason_of(r) for r in refused} == {
        ("PROMOTION_EXHAUSTED", "PROMOTION_REJECTION_EXHAUSTED")
    }
    assert await shop.uses_count(code) == 10
    assert await shop.live_redemptions(code) == 10


async def test_one_user_racing_themselves_gets_only_their_per_user_uses(shop: Shop) -> None:
    code = await shop.promotion(max_uses_per_user=3)
    (user_id,) = await shop.users(1)
    order_ids = await shop.orders([user_id] * 12)

    results = await asyncio.gather(
        *(shop.redeem(code, user_id=user_id, order_id=order_id) for order_id in order_ids),
        return_exceptions=True,
    )

    succeeded = [r for r in results if isinstance(r, AppliedPromotion)]
    refused = [r for r in results if isinstance(r, ResourceExhausted)]
    assert len(succeeded) == 3
    assert len(refused) == 9
    assert {reason_of(r) for r in refused} == {
        ("PROMOTION_EXHAUSTED", "PROMOTION_REJECTION_USER_LIMIT_REACHED")
    }
    assert await shop.uses_count(code) == 3
    # Another user still has their own uses.
    (other,) = await shop.users(1)
    (other_order,) = await shop.orders([other])
    await shop.redeem(code, user_id=other, order_id=other_order)
    assert await shop.uses_count(code) == 4


# --- Release -----------------------------------------------------------------------------------


async def test_release_gives_the_use_back_once(shop: Shop) -> None:
    code = await shop.promotion(max_total_uses=1, max_uses_per_user=1)
    first, second = await shop.users(2)
    first_order, second_order, third_order = await shop.orders([first, second, first])
    await shop.redeem(code, user_id=first, order_id=first_order)
    with pytest.raises(ResourceExhausted):
        await shop.redeem(code, user_id=second, order_id=second_order)

    assert await shop.release(first_order) is True
    assert await shop.release(first_order) is False
    assert await shop.uses_count(code) == 0
    assert await shop.live_redemptions(code) == 0
    await shop.redeem(code, user_id=second, order_id=second_order)
    assert await shop.uses_count(code) == 1
    # The released order no longer counts towards the first user's limit either.
    assert await shop.release(second_order) is True
    await shop.redeem(code, user_id=first, order_id=third_order)
    assert await shop.uses_count(code) == 1


async def test_release_of_an_order_without_a_promotion_changes_nothing(shop: Shop) -> None:
    (user_id,) = await shop.users(1)
    (order_id,) = await shop.orders([user_id])

    assert await shop.release(order_id) is False


async def test_concurrent_releases_of_one_order_decrement_once(shop: Shop) -> None:
    code = await shop.promotion()
    user_ids = await shop.users(2)
    order_ids = await shop.orders(user_ids)
    for user_id, order_id in zip(user_ids, order_ids, strict=True):
        await shop.redeem(code, user_id=user_id, order_id=order_id)

    released = await asyncio.gather(*(shop.release(order_ids[0]) for _ in range(10)))

    assert released.count(True) == 1
    assert await shop.uses_count(code) == 1


# --- ValidatePromotion sees the limits ---------------------------------------------------------


async def test_validate_promotion_reports_used_up_limits(
    app: App, channel: grpc.aio.Channel, shop: Shop
) -> None:
    stub = payment_service_pb2_grpc.PaymentServiceStub(channel)
    house = f"houses/{shop.house_id}"
    per_user = await shop.promotion(max_uses_per_user=1)
    total = await shop.promotion(max_total_uses=1)
    buyer, other = await shop.users(2)
    orders = await shop.orders([buyer, buyer])
    await shop.redeem(per_user, user_id=buyer, order_id=orders[0])
    await shop.redeem(total, user_id=buyer, order_id=orders[1])

    async def rejection(code: str, user_id: uuid.UUID) -> int:
        response: pb.ValidatePromotionResponse = await stub.ValidatePromotion(
            pb.ValidatePromotionRequest(code=code, house=house, quantity=2),
            metadata=bearer(token_for(app, user_id=user_id)),
        )
        return response.rejection

    assert await rejection(per_user, buyer) == pb.PROMOTION_REJECTION_USER_LIMIT_REACHED
    assert await rejection(per_user, other) == pb.PROMOTION_REJECTION_UNSPECIFIED
    assert await rejection(total, other) == pb.PROMOTION_REJECTION_EXHAUSTED
    await shop.release(orders[1])
    assert await rejection(total, other) == pb.PROMOTION_REJECTION_UNSPECIFIED


async def test_lowering_max_total_uses_below_the_uses_held_stops_further_uses(
    app: App, channel: grpc.aio.Channel, shop: Shop
) -> None:
    stub = payment_service_pb2_grpc.PaymentServiceStub(channel)
    admin = bearer(token_for(app, roles=("user", "admin")))
    code = await shop.promotion(max_total_uses=5)
    user_ids = await shop.users(3)
    order_ids = await shop.orders(user_ids)
    for user_id, order_id in zip(user_ids[:2], order_ids[:2], strict=True):
        await shop.redeem(code, user_id=user_id, order_id=order_id)
    listed = await stub.ListPromotions(pb.ListPromotionsRequest(code=code), metadata=admin)
    (promotion,) = listed.promotions

    updated = await stub.UpdatePromotion(
        pb.UpdatePromotionRequest(
            promotion=pb.Promotion(name=promotion.name, max_total_uses=1),
            update_mask=field_mask_pb2.FieldMask(paths=["max_total_uses"]),
        ),
        metadata=admin,
    )

    # Held at the uses already taken (the CHECK `uses_within_max` allows no lower value).
    assert updated.max_total_uses == 2
    assert updated.uses_count == 2
    with pytest.raises(ResourceExhausted):
        await shop.redeem(code, user_id=user_ids[2], order_id=order_ids[2])
