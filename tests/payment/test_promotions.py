"""PaymentService promotions over the real channel: the admin CRUD (GetPromotion,
ListPromotions, CreatePromotion, UpdatePromotion, DeletePromotion), who may call what, and
ValidatePromotion's price preview with each reason a code is refused."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as lottery_pb
from amesa.lottery.v1 import lottery_service_pb2_grpc
from amesa.payment.v1 import payment_service_pb2 as pb
from amesa.payment.v1 import payment_service_pb2_grpc
from amesa.type.v1 import money_pb2
from server.app import App
from server.core.models import AuditLog
from tests.lottery.conftest import (
    Callers,
    active_house,
    complete_house,
    create_house,
    eur,
    now,
    published_house,
    terms,
    ts,
)
from tests.support import bearer, failure, token_for

if TYPE_CHECKING:
    Stub: TypeAlias = payment_service_pb2_grpc.PaymentServiceAsyncStub


@pytest.fixture
def callers(app: App, channel: grpc.aio.Channel) -> Callers:
    user_id = uuid.uuid4()
    return Callers(
        stub=lottery_service_pb2_grpc.LotteryServiceStub(channel),
        admin=tuple(bearer(token_for(app, roles=("user", "admin")))),
        user=tuple(bearer(token_for(app, user_id=user_id))),
        user_id=user_id,
    )


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Stub:
    stub: Stub = payment_service_pb2_grpc.PaymentServiceStub(channel)
    return stub


def new_code() -> str:
    return f"T{uuid.uuid4().hex[:12]}"


def usd(amount_minor: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="USD", amount_minor=amount_minor)


async def create(stub: Stub, callers: Callers, promotion: pb.Promotion) -> pb.Promotion:
    created: pb.Promotion = await stub.CreatePromotion(
        pb.CreatePromotionRequest(promotion=promotion), metadata=callers.admin
    )
    return created


async def validate(
    stub: Stub, callers: Callers, *, code: str, house: str, quantity: int
) -> pb.ValidatePromotionResponse:
    response: pb.ValidatePromotionResponse = await stub.ValidatePromotion(
        pb.ValidatePromotionRequest(code=code, house=house, quantity=quantity),
        metadata=callers.user,
    )
    return response


async def usd_house(callers: Callers, owner_engine: AsyncEngine) -> lottery_pb.House:
    lottery_terms = terms(opens_in=-datetime.timedelta(hours=1))
    lottery_terms.ticket_price.CopyFrom(usd(500))
    return await published_house(callers, owner_engine, complete_house(lottery_terms=lottery_terms))


async def audit_actions(owner_engine: AsyncEngine, name: str) -> list[str]:
    async with owner_engine.connect() as connection:
        rows = await connection.scalars(
            select(AuditLog.action)
            .where(AuditLog.resource_name == name)
            .order_by(AuditLog.create_time)
        )
        return list(rows)


# --- CreatePromotion ---------------------------------------------------------------------------


async def test_create_promotion_stores_the_code_upper_case_and_is_audited(
    stub: Stub, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=100)
    code = new_code()
    starts, ends = now() - datetime.timedelta(hours=1), now() + datetime.timedelta(days=7)

    created = await create(
        stub,
        callers,
        pb.Promotion(
            code=code.lower(),
            description="Spring offer: 10 % off",
            percent_off_bps=1000,
            valid_from=ts(starts),
            valid_until=ts(ends),
            max_total_uses=50,
            max_uses_per_user=2,
            min_quantity=3,
            houses=[house.name],
            uses_count=99,  # output only: ignored
        ),
    )

    assert created.name.startswith("promotions/")
    expected = pb.Promotion(
        name=created.name,
        code=code.upper(),
        description="Spring offer: 10 % off",
        percent_off_bps=1000,
        valid_from=ts(starts),
        valid_until=ts(ends),
        max_total_uses=50,
        max_uses_per_user=2,
        min_quantity=3,
        houses=[house.name],
        uses_count=0,
        create_time=created.create_time,
        update_time=created.update_time,
    )
    assert created == expected
    assert not created.HasField("delete_time")
    fetched = await stub.GetPromotion(
        pb.GetPromotionRequest(name=created.name), metadata=callers.admin
    )
    assert fetched == created
    assert await audit_actions(owner_engine, created.name) == ["payment.promotion.create"]


async def test_create_promotion_with_each_discount_kind(stub: Stub, callers: Callers) -> None:
    fixed = await create(stub, callers, pb.Promotion(code=new_code(), amount_off=eur(250)))
    free = await create(stub, callers, pb.Promotion(code=new_code(), free_tickets=1))

    assert fixed.WhichOneof("discount") == "amount_off"
    assert fixed.amount_off == eur(250)
    assert free.WhichOneof("discount") == "free_tickets"
    assert free.free_tickets == 1


async def test_create_promotion_with_a_live_code_in_other_case_is_already_exists(
    stub: Stub, callers: Callers
) -> None:
    code = new_code()
    first = await create(stub, callers, pb.Promotion(code=code.upper(), percent_off_bps=500))

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await create(stub, callers, pb.Promotion(code=code.lower(), free_tickets=1))

    error = failure(raised.value)
    assert error.code is grpc.StatusCode.ALREADY_EXISTS
    assert error.reason == "PROMOTION_CODE_EXISTS"
    # Once deleted, the code is free for a new promotion.
    await stub.DeletePromotion(pb.DeletePromotionRequest(name=first.name), metadata=callers.admin)
    second = await create(stub, callers, pb.Promotion(code=code.lower(), free_tickets=1))
    assert second.code == code.upper()
    assert second.name != first.name


async def test_concurrent_creates_of_one_code_leave_one_promotion(
    stub: Stub, callers: Callers
) -> None:
    code = new_code()

    results = await asyncio.gather(
        *(
            create(stub, callers, pb.Promotion(code=code, percent_off_bps=100 + n))
            for n in range(8)
        ),
        return_exceptions=True,
    )

    created = [r for r in results if isinstance(r, pb.Promotion)]
    refused = [failure(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(created) == 1
    assert len(refused) == 7
    assert {(e.code, e.reason) for e in refused} == {
        (grpc.StatusCode.ALREADY_EXISTS, "PROMOTION_CODE_EXISTS")
    }


async def test_concurrent_renames_to_one_code_leave_one_promotion_with_it(
    stub: Stub, callers: Callers
) -> None:
    code = new_code()
    originals = [
        await create(stub, callers, pb.Promotion(code=new_code(), percent_off_bps=100))
        for _ in range(6)
    ]

    results = await asyncio.gather(
        *(update(stub, callers, pb.Promotion(name=p.name, code=code), "code") for p in originals),
        return_exceptions=True,
    )

    renamed = [r for r in results if isinstance(r, pb.Promotion)]
    refused = [failure(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(renamed) == 1
    assert {(e.code, e.reason) for e in refused} == {
        (grpc.StatusCode.ALREADY_EXISTS, "PROMOTION_CODE_EXISTS")
    }
    assert len(refused) == 5


async def test_create_promotion_for_an_unknown_house_is_not_found(
    stub: Stub, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    unknown = f"houses/{uuid.uuid4()}"

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await create(
            stub,
            callers,
            pb.Promotion(code=new_code(), percent_off_bps=100, houses=[house.name, unknown]),
        )

    error = failure(raised.value)
    assert error.code is grpc.StatusCode.NOT_FOUND
    assert error.reason == "HOUSE_NOT_FOUND"
    assert error.error_info.metadata["house"] == unknown


async def test_create_promotion_amount_off_in_another_currency_than_a_house_is_refused(
    stub: Stub, callers: Callers, owner_engine: AsyncEngine
) -> None:
    eur_house = await active_house(callers, owner_engine, total=10)
    usd_listed = await usd_house(callers, owner_engine)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await create(
            stub,
            callers,
            pb.Promotion(
                code=new_code(), amount_off=eur(100), houses=[eur_house.name, usd_listed.name]
            ),
        )

    error = failure(raised.value)
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "CURRENCY_MISMATCH"
    assert [v.field for v in error.field_violations] == ["promotion.amount_off"]


@pytest.mark.parametrize(
    ("promotion", "field"),
    [
        (pb.Promotion(code="SPRING10"), "promotion"),  # no discount
        (pb.Promotion(percent_off_bps=100), "promotion"),  # no code
        (pb.Promotion(code="-BAD", percent_off_bps=100), "promotion.code"),
        (pb.Promotion(code="OK123", percent_off_bps=10_001), "promotion.percent_off_bps"),
        (pb.Promotion(code="OK123", amount_off=eur(0)), "promotion.amount_off"),
        (pb.Promotion(code="OK123", free_tickets=101), "promotion.free_tickets"),
        (
            pb.Promotion(
                code="OK123",
                percent_off_bps=100,
                valid_from=ts(now()),
                valid_until=ts(now() - datetime.timedelta(days=1)),
            ),
            "promotion",
        ),
    ],
)
async def test_create_promotion_with_invalid_fields_is_invalid_request(
    stub: Stub, callers: Callers, promotion: pb.Promotion, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await create(stub, callers, promotion)

    error = failure(raised.value)
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_REQUEST"
    assert field in [v.field for v in error.field_violations]


# --- GetPromotion / DeletePromotion ------------------------------------------------------------


async def test_get_promotion_unknown_is_not_found(stub: Stub, callers: Callers) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetPromotion(
            pb.GetPromotionRequest(name=f"promotions/{uuid.uuid4()}"), metadata=callers.admin
        )

    error = failure(raised.value)
    assert error.code is grpc.StatusCode.NOT_FOUND
    assert error.reason == "PROMOTION_NOT_FOUND"


async def test_delete_promotion_is_soft_audited_and_not_repeatable(
    stub: Stub, callers: Callers, owner_engine: AsyncEngine
) -> None:
    created = await create(stub, callers, pb.Promotion(code=new_code(), percent_off_bps=100))

    await stub.DeletePromotion(pb.DeletePromotionRequest(name=created.name), metadata=callers.admin)

    fetched = await stub.GetPromotion(
        pb.GetPromotionRequest(name=created.name), metadata=callers.admin
    )
    assert fetched.HasField("delete_time")
    assert fetched.code == created.code
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.DeletePromotion(
            pb.DeletePromotionRequest(name=created.name), metadata=callers.admin
        )
    error = failure(raised.value)
    assert error.code is grpc.StatusCode.NOT_FOUND
    assert error.reason == "PROMOTION_NOT_FOUND"
    assert await audit_actions(owner_engine, created.name) == [
        "payment.promotion.create",
        "payment.promotion.delete",
    ]


# --- UpdatePromotion ---------------------------------------------------------------------------


async def update(
    stub: Stub, callers: Callers, promotion: pb.Promotion, *paths: str
) -> pb.Promotion:
    updated: pb.Promotion = await stub.UpdatePromotion(
        pb.UpdatePromotionRequest(
            promotion=promotion, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
        ),
        metadata=callers.admin,
    )
    return updated


async def update_failure(
    stub: Stub, callers: Callers, promotion: pb.Promotion, *paths: str
) -> tuple[grpc.StatusCode, str, list[str]]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await update(stub, callers, promotion, *paths)
    error = failure(raised.value)
    return error.code, error.reason, [v.field for v in error.field_violations]


async def test_update_promotion_changes_only_the_masked_fields_and_is_audited(
    stub: Stub, callers: Callers, owner_engine: AsyncEngine
) -> None:
    created = await create(
        stub,
        callers,
        pb.Promotion(code=new_code(), description="old", percent_off_bps=100, min_quantity=2),
    )
    new = new_code()

    updated = await update(
        stub,
        callers,
        pb.Promotion(
            name=created.name, code=new.lower(), description="new", free_tickets=1, min_quantity=9
        ),
        "code",
        "free_tickets",
        "description",
    )

    assert updated.code == new.upper()
    assert updated.description == "new"
    assert updated.WhichOneof("discount") == "free_tickets"  # the percentage is cleared
    assert updated.free_tickets == 1
    assert updated.min_quantity == 2  # not in the mask
    assert await audit_actions(owner_engine, created.name) == [
        "payment.promotion.create",
        "payment.promotion.update",
    ]


async def test_update_promotion_clearing_the_only_discount_is_discount_missing(
    stub: Stub, callers: Callers
) -> None:
    created = await create(stub, callers, pb.Promotion(code=new_code(), amount_off=eur(100)))

    result = await update_failure(stub, callers, pb.Promotion(name=created.name), "amount_off")

    assert result == (grpc.StatusCode.INVALID_ARGUMENT, "DISCOUNT_MISSING", ["update_mask"])
    # Clearing a discount kind the promotion does not use leaves its discount alone.
    kept = await update(stub, callers, pb.Promotion(name=created.name), "percent_off_bps")
    assert kept.amount_off == eur(100)


async def test_update_promotion_window_inverted_after_merge_is_validity_window_invalid(
    stub: Stub, callers: Callers
) -> None:
    created = await create(
        stub,
        callers,
        pb.Promotion(
            code=new_code(),
            percent_off_bps=100,
            valid_until=ts(now() + datetime.timedelta(days=1)),
        ),
    )

    result = await update_failure(
        stub,
        callers,
        pb.Promotion(name=created.name, valid_from=ts(now() + datetime.timedelta(days=2))),
        "valid_from",
    )

    assert result == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "VALIDITY_WINDOW_INVALID",
        ["promotion.valid_until"],
    )


async def test_update_promotion_to_a_code_in_use_is_already_exists(
    stub: Stub, callers: Callers
) -> None:
    taken = await create(stub, callers, pb.Promotion(code=new_code(), percent_off_bps=100))
    created = await create(stub, callers, pb.Promotion(code=new_code(), percent_off_bps=100))

    result = await update_failure(
        stub, callers, pb.Promotion(name=created.name, code=taken.code.lower()), "code"
    )

    assert result[:2] == (grpc.StatusCode.ALREADY_EXISTS, "PROMOTION_CODE_EXISTS")
    # Its own code is no conflict.
    same = await update(stub, callers, pb.Promotion(name=created.name, code=created.code), "code")
    assert same.code == created.code


async def test_update_promotion_houses_are_checked(
    stub: Stub, callers: Callers, owner_engine: AsyncEngine
) -> None:
    created = await create(stub, callers, pb.Promotion(code=new_code(), amount_off=eur(100)))
    usd_listed = await usd_house(callers, owner_engine)
    unknown = f"houses/{uuid.uuid4()}"

    missing = await update_failure(
        stub, callers, pb.Promotion(name=created.name, houses=[unknown]), "houses"
    )
    mismatch = await update_failure(
        stub, callers, pb.Promotion(name=created.name, houses=[usd_listed.name]), "houses"
    )
    switched = await update(
        stub,
        callers,
        pb.Promotion(name=created.name, amount_off=usd(100), houses=[usd_listed.name]),
        "amount_off",
        "houses",
    )

    assert missing[:2] == (grpc.StatusCode.NOT_FOUND, "HOUSE_NOT_FOUND")
    assert mismatch[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "CURRENCY_MISMATCH")
    assert switched.amount_off == usd(100)
    assert list(switched.houses) == [usd_listed.name]
    # With a USD house listed, a EUR amount alone is refused too.
    back = await update_failure(
        stub, callers, pb.Promotion(name=created.name, amount_off=eur(100)), "amount_off"
    )
    assert back[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "CURRENCY_MISMATCH")


async def test_update_of_a_deleted_or_unknown_promotion_is_not_found(
    stub: Stub, callers: Callers
) -> None:
    created = await create(stub, callers, pb.Promotion(code=new_code(), percent_off_bps=100))
    await stub.DeletePromotion(pb.DeletePromotionRequest(name=created.name), metadata=callers.admin)

    deleted = await update_failure(
        stub, callers, pb.Promotion(name=created.name, description="x"), "description"
    )
    unknown = await update_failure(
        stub,
        callers,
        pb.Promotion(name=f"promotions/{uuid.uuid4()}", description="x"),
        "description",
    )

    assert deleted[:2] == unknown[:2] == (grpc.StatusCode.NOT_FOUND, "PROMOTION_NOT_FOUND")


async def test_update_promotion_with_a_path_outside_the_allow_list_is_invalid_request(
    stub: Stub, callers: Callers
) -> None:
    created = await create(stub, callers, pb.Promotion(code=new_code(), percent_off_bps=100))

    result = await update_failure(
        stub, callers, pb.Promotion(name=created.name, uses_count=5), "uses_count"
    )

    assert result[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")


# --- ListPromotions ----------------------------------------------------------------------------


async def test_list_promotions_by_code_pages_newest_first_and_hides_deleted(
    stub: Stub, callers: Callers
) -> None:
    code = new_code()
    first = await create(stub, callers, pb.Promotion(code=code, percent_off_bps=100))
    await stub.DeletePromotion(pb.DeletePromotionRequest(name=first.name), metadata=callers.admin)
    second = await create(stub, callers, pb.Promotion(code=code, percent_off_bps=200))
    await stub.DeletePromotion(pb.DeletePromotionRequest(name=second.name), metadata=callers.admin)
    live = await create(stub, callers, pb.Promotion(code=code, percent_off_bps=300))

    visible = await stub.ListPromotions(
        pb.ListPromotionsRequest(code=code.lower()), metadata=callers.admin
    )
    page_one = await stub.ListPromotions(
        pb.ListPromotionsRequest(code=code, show_deleted=True, page_size=2),
        metadata=callers.admin,
    )
    page_two = await stub.ListPromotions(
        pb.ListPromotionsRequest(
            code=code, show_deleted=True, page_size=2, page_token=page_one.next_page_token
        ),
        metadata=callers.admin,
    )

    assert [p.name for p in visible.promotions] == [live.name]
    assert visible.total_size == 1
    assert [p.name for p in page_one.promotions] == [live.name, second.name]
    assert page_one.total_size == 3
    assert [p.name for p in page_two.promotions] == [first.name]
    assert page_two.next_page_token == ""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListPromotions(
            pb.ListPromotionsRequest(code=code, page_token=page_one.next_page_token),
            metadata=callers.admin,
        )
    assert failure(raised.value).reason == "PAGE_TOKEN_INVALID"


async def test_list_promotions_for_a_house_includes_those_for_every_house(
    stub: Stub, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    other = await active_house(callers, owner_engine, total=10)
    listing = await create(
        stub, callers, pb.Promotion(code=new_code(), percent_off_bps=100, houses=[house.name])
    )
    everywhere = await create(stub, callers, pb.Promotion(code=new_code(), percent_off_bps=100))
    elsewhere = await create(
        stub, callers, pb.Promotion(code=new_code(), percent_off_bps=100, houses=[other.name])
    )

    response = await stub.ListPromotions(
        pb.ListPromotionsRequest(house=house.name, page_size=100), metadata=callers.admin
    )

    names = {p.name for p in response.promotions}
    assert {listing.name, everywhere.name} <= names
    assert elsewhere.name not in names


async def test_list_promotions_active_only_leaves_out_unredeemable_ones(
    stub: Stub, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    active = await create(
        stub,
        callers,
        pb.Promotion(
            code=new_code(),
            percent_off_bps=100,
            houses=[house.name],
            valid_until=ts(now() + datetime.timedelta(days=1)),
        ),
    )
    future = await create(
        stub,
        callers,
        pb.Promotion(
            code=new_code(),
            percent_off_bps=100,
            houses=[house.name],
            valid_from=ts(now() + datetime.timedelta(days=1)),
        ),
    )
    past = await create(
        stub,
        callers,
        pb.Promotion(
            code=new_code(),
            percent_off_bps=100,
            houses=[house.name],
            valid_until=ts(now() - datetime.timedelta(seconds=1)),
        ),
    )

    every = await stub.ListPromotions(
        pb.ListPromotionsRequest(house=house.name, page_size=100), metadata=callers.admin
    )
    redeemable = await stub.ListPromotions(
        pb.ListPromotionsRequest(house=house.name, active_only=True, page_size=100),
        metadata=callers.admin,
    )

    assert {active.name, future.name, past.name} <= {p.name for p in every.promotions}
    names = {p.name for p in redeemable.promotions}
    assert active.name in names
    assert not {future.name, past.name} & names


# --- Access ------------------------------------------------------------------------------------


async def test_users_cannot_call_the_admin_promotion_rpcs(stub: Stub, callers: Callers) -> None:
    name = f"promotions/{uuid.uuid4()}"
    calls: list[Awaitable[Any]] = [
        stub.GetPromotion(pb.GetPromotionRequest(name=name), metadata=callers.user),
        stub.ListPromotions(pb.ListPromotionsRequest(), metadata=callers.user),
        stub.CreatePromotion(
            pb.CreatePromotionRequest(promotion=pb.Promotion(code=new_code(), percent_off_bps=100)),
            metadata=callers.user,
        ),
        stub.UpdatePromotion(
            pb.UpdatePromotionRequest(
                promotion=pb.Promotion(name=name, description="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["description"]),
            ),
            metadata=callers.user,
        ),
        stub.DeletePromotion(pb.DeletePromotionRequest(name=name), metadata=callers.user),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        error = failure(raised.value)
        assert error.code is grpc.StatusCode.PERMISSION_DENIED
        assert error.reason == "ADMIN_REQUIRED"


async def test_validate_promotion_needs_a_signed_in_caller(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ValidatePromotion(
            pb.ValidatePromotionRequest(code="X", house=f"houses/{uuid.uuid4()}", quantity=1)
        )

    assert failure(raised.value).reason == "TOKEN_MISSING"


# --- ValidatePromotion: prices -----------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        (pb.Promotion(percent_off_bps=1500), 3, 450),
        # 3000 x 3.33 % = 99.9: rounded down to whole minor units.
        (pb.Promotion(percent_off_bps=333), 3, 99),
        (pb.Promotion(amount_off=eur(700)), 2, 700),
        (pb.Promotion(free_tickets=2), 5, 2000),
        # Capped at subtotal - unit price: at least one ticket is always paid for.
        (pb.Promotion(percent_off_bps=10_000), 4, 3000),
        (pb.Promotion(amount_off=eur(1_000_000)), 2, 1000),
        (pb.Promotion(free_tickets=5), 3, 2000),
        (pb.Promotion(free_tickets=1), 1, 0),
    ],
)
async def test_validate_promotion_previews_the_discount(
    stub: Stub,
    callers: Callers,
    owner_engine: AsyncEngine,
    case: tuple[pb.Promotion, int, int],
) -> None:
    discount, quantity, expected_minor = case
    house = await active_house(callers, owner_engine, total=100)  # 10.00 EUR a ticket
    promotion = pb.Promotion(code=new_code(), description="Offer")
    promotion.MergeFrom(discount)
    created = await create(stub, callers, promotion)

    response = await validate(
        stub, callers, code=created.code.lower(), house=house.name, quantity=quantity
    )

    assert response == pb.ValidatePromotionResponse(
        valid=True,
        rejection=pb.PROMOTION_REJECTION_UNSPECIFIED,
        description="Offer",
        unit_price=eur(1000),
        subtotal=eur(1000 * quantity),
        discount=eur(expected_minor),
        total=eur(1000 * quantity - expected_minor),
    )


# --- ValidatePromotion: reasons ----------------------------------------------------------------


async def rejected(
    stub: Stub, callers: Callers, *, code: str, house: str, quantity: int = 2
) -> pb.ValidatePromotionResponse:
    response = await validate(stub, callers, code=code, house=house, quantity=quantity)
    assert not response.valid
    assert response.discount == eur(0)
    assert response.total == response.subtotal == eur(1000 * quantity)
    return response


async def test_validate_promotion_unknown_malformed_or_deleted_code_is_not_found(
    stub: Stub, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=100)
    deleted = await create(stub, callers, pb.Promotion(code=new_code(), percent_off_bps=100))
    await stub.DeletePromotion(pb.DeletePromotionRequest(name=deleted.name), metadata=callers.admin)

    for code in (new_code(), "!!", "x" * 64, deleted.code):
        response = await rejected(stub, callers, code=code, house=house.name)
        assert response.rejection == pb.PROMOTION_REJECTION_NOT_FOUND
        assert response.description == ""


async def test_validate_promotion_reports_each_reason(
    stub: Stub, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=100)
    other = await active_house(callers, owner_engine, total=100)
    cases = [
        (
            pb.Promotion(percent_off_bps=100, valid_from=ts(now() + datetime.timedelta(hours=1))),
            pb.PROMOTION_REJECTION_NOT_STARTED,
        ),
        (
            pb.Promotion(
                percent_off_bps=100,
                valid_from=ts(now() - datetime.timedelta(days=2)),
                valid_until=ts(now() - datetime.timedelta(days=1)),
            ),
            pb.PROMOTION_REJECTION_EXPIRED,
        ),
        (
            pb.Promotion(percent_off_bps=100, houses=[other.name]),
            pb.PROMOTION_REJECTION_HOUSE_NOT_ELIGIBLE,
        ),
        (pb.Promotion(amount_off=usd(100)), pb.PROMOTION_REJECTION_CURRENCY_MISMATCH),
    ]
    for promotion, reason in cases:
        promotion.code = new_code()
        promotion.description = "described"
        created = await create(stub, callers, promotion)

        response = await rejected(stub, callers, code=created.code, house=house.name)

        assert response.rejection == reason
        assert response.description == "described"
        assert response.min_quantity == 0


async def test_validate_promotion_below_the_minimum_quantity_reports_the_minimum(
    stub: Stub, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=100)
    created = await create(
        stub, callers, pb.Promotion(code=new_code(), free_tickets=1, min_quantity=5)
    )

    low = await rejected(stub, callers, code=created.code, house=house.name, quantity=4)
    enough = await validate(stub, callers, code=created.code, house=house.name, quantity=5)

    assert low.rejection == pb.PROMOTION_REJECTION_QUANTITY_TOO_LOW
    assert low.min_quantity == 5
    assert enough.valid
    assert enough.discount == eur(1000)  # buy 5, pay 4


async def test_validate_promotion_for_an_unknown_or_draft_house_is_not_found(
    stub: Stub, callers: Callers
) -> None:
    created = await create(stub, callers, pb.Promotion(code=new_code(), percent_off_bps=100))
    draft = await create_house(callers)

    for house in (f"houses/{uuid.uuid4()}", draft.name):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await validate(stub, callers, code=created.code, house=house, quantity=1)
        error = failure(raised.value)
        assert error.code is grpc.StatusCode.NOT_FOUND
        assert error.reason == "HOUSE_NOT_FOUND"
