"""Promotion codes: the admin CRUD, the price preview of ValidatePromotion, and the redemption
the purchase path makes in the order's own transaction.

One set of rules decides whether a code applies (`_rejection` for the promotion's own terms,
`_limit_rejection` for its use limits), so ValidatePromotion reports exactly the reason
PurchaseTickets would fail with. Redemption is a conditional UPDATE of `uses_count` (the row lock
it takes serialises redemptions of one promotion, and PostgreSQL re-checks the condition on the
newest row version), backed by the CHECK `uses_within_max`; the per-user limit relies on the
caller holding the user's row lock, so one user's purchases are counted one after the other.
"""

from __future__ import annotations

import datetime
import enum
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.audit import record_audit
from server.core.context import Principal
from server.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from server.core.pagination import Page, PageTokens, keyset_page
from server.lottery.catalogue import house_not_found
from server.lottery.models import House, HouseState
from server.payment.models import Promotion, PromotionRedemption

CODE_PATTERN = re.compile(r"[A-Z0-9][A-Z0-9_-]{2,31}")
_LIVE_CODE_INDEX = "ix_promotions_code_live"
BPS_PER_WHOLE = 10_000

DISCOUNT_PATHS = ("percent_off_bps", "amount_off", "free_tickets")


class Rejection(enum.StrEnum):
    """Why a code does not apply; the values are the names of the proto's PromotionRejection, and
    PurchaseTickets' `promotion_reason` metadata carries the same value."""

    NOT_FOUND = "PROMOTION_REJECTION_NOT_FOUND"
    NOT_STARTED = "PROMOTION_REJECTION_NOT_STARTED"
    EXPIRED = "PROMOTION_REJECTION_EXPIRED"
    EXHAUSTED = "PROMOTION_REJECTION_EXHAUSTED"
    USER_LIMIT_REACHED = "PROMOTION_REJECTION_USER_LIMIT_REACHED"
    QUANTITY_TOO_LOW = "PROMOTION_REJECTION_QUANTITY_TOO_LOW"
    HOUSE_NOT_ELIGIBLE = "PROMOTION_REJECTION_HOUSE_NOT_ELIGIBLE"
    CURRENCY_MISMATCH = "PROMOTION_REJECTION_CURRENCY_MISMATCH"


# Limits are RESOURCE_EXHAUSTED PROMOTION_EXHAUSTED at purchase; everything else is
# FAILED_PRECONDITION PROMOTION_INVALID.
_LIMIT_REJECTIONS = frozenset({Rejection.EXHAUSTED, Rejection.USER_LIMIT_REACHED})


@dataclass(frozen=True, slots=True)
class PromotionFields:
    """The writable columns of a promotion, as a Create or Update request carries them."""

    code: str = ""
    description: str = ""
    percent_off_bps: int | None = None
    amount_off_minor: int | None = None
    amount_off_currency: str | None = None
    free_tickets: int | None = None
    valid_from: datetime.datetime | None = None
    valid_until: datetime.datetime | None = None
    max_total_uses: int = 0
    max_uses_per_user: int = 0
    min_quantity: int = 0
    house_ids: tuple[uuid.UUID, ...] = ()


@dataclass(frozen=True, slots=True)
class PromotionFilter:
    """The filters of ListPromotions; empty fields filter nothing."""

    code: str = ""
    house_id: uuid.UUID | None = None
    active_only: bool = False
    show_deleted: bool = False


@dataclass(frozen=True, slots=True)
class AppliedPromotion:
    """A redemption taken by `apply_promotion`, to be recorded against the order it priced."""

    promotion_id: uuid.UUID
    # Upper case, as stored on the order.
    code: str
    discount_minor: int


@dataclass(frozen=True, slots=True)
class Preview:
    """ValidatePromotion's answer: the price of `quantity` tickets with and without the code."""

    rejection: Rejection | None
    promotion: Promotion | None
    unit_price_minor: int
    currency: str
    quantity: int
    discount_minor: int

    @property
    def subtotal_minor(self) -> int:
        return self.unit_price_minor * self.quantity

    @property
    def total_minor(self) -> int:
        return self.subtotal_minor - self.discount_minor


def promotion_name(promotion_id: uuid.UUID) -> str:
    return f"promotions/{promotion_id}"


def normalise_code(code: str) -> str:
    return code.strip().upper()


def _not_found() -> NotFound:
    return NotFound("PROMOTION_NOT_FOUND", "no such promotion")


def _code_exists(code: str) -> AlreadyExists:
    return AlreadyExists(
        "PROMOTION_CODE_EXISTS",
        "another promotion already uses this code",
        metadata={"code": code},
    )


def _snapshot(promotion: Promotion) -> dict[str, Any]:
    """JSON-safe copy of the promotion for the audit trail."""

    def when(value: datetime.datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "code": promotion.code,
        "description": promotion.description,
        "percent_off_bps": promotion.percent_off_bps,
        "amount_off_minor": promotion.amount_off_minor,
        "amount_off_currency": promotion.amount_off_currency,
        "free_tickets": promotion.free_tickets,
        "valid_from": when(promotion.valid_from),
        "valid_until": when(promotion.valid_until),
        "max_total_uses": promotion.max_total_uses,
        "max_uses_per_user": promotion.max_uses_per_user,
        "min_quantity": promotion.min_quantity,
        "house_ids": [str(house_id) for house_id in promotion.house_ids],
        "uses_count": promotion.uses_count,
        "delete_time": when(promotion.delete_time),
    }


# --- Pricing rules shared by the preview and the redemption ----------------------------------


def discount_minor(promotion: Promotion, *, unit_price_minor: int, quantity: int) -> int:
    """The discount on `quantity` tickets, capped so that at least one ticket is paid for (the
    orders CHECK `discount_range`)."""
    subtotal = unit_price_minor * quantity
    if promotion.percent_off_bps is not None:
        # Integer arithmetic rounds down to a whole minor unit, in the buyer's disfavour by < 1.
        raw = subtotal * promotion.percent_off_bps // BPS_PER_WHOLE
    elif promotion.amount_off_minor is not None:
        raw = promotion.amount_off_minor
    else:
        raw = min(promotion.free_tickets or 0, quantity) * unit_price_minor
    return max(0, min(raw, subtotal - unit_price_minor))


def _rejection(
    promotion: Promotion, *, house: House, quantity: int, now: datetime.datetime
) -> Rejection | None:
    """Whether the promotion's own terms allow it on this order (limits aside); the first
    failing check in this order is the reason reported."""
    checks = (
        (promotion.delete_time is not None, Rejection.NOT_FOUND),
        (promotion.valid_from is not None and now < promotion.valid_from, Rejection.NOT_STARTED),
        (promotion.valid_until is not None and now >= promotion.valid_until, Rejection.EXPIRED),
        (
            bool(promotion.house_ids) and house.id not in promotion.house_ids,
            Rejection.HOUSE_NOT_ELIGIBLE,
        ),
        (
            promotion.amount_off_minor is not None
            and promotion.amount_off_currency != house.currency,
            Rejection.CURRENCY_MISMATCH,
        ),
        (quantity < promotion.min_quantity, Rejection.QUANTITY_TOO_LOW),
    )
    return next((rejection for failed, rejection in checks if failed), None)


def _limit_rejection(promotion: Promotion, *, user_uses: int) -> Rejection | None:
    if promotion.max_total_uses and promotion.uses_count >= promotion.max_total_uses:
        return Rejection.EXHAUSTED
    if promotion.max_uses_per_user and user_uses >= promotion.max_uses_per_user:
        return Rejection.USER_LIMIT_REACHED
    return None


async def _live_by_code(session: AsyncSession, code: str) -> Promotion | None:
    normalised = normalise_code(code)
    if not CODE_PATTERN.fullmatch(normalised):
        return None
    promotion: Promotion | None = await session.scalar(
        select(Promotion)
        .where(Promotion.code == normalised, Promotion.delete_time.is_(None))
        .execution_options(populate_existing=True)
    )
    return promotion


async def _user_uses(session: AsyncSession, *, promotion_id: uuid.UUID, user_id: uuid.UUID) -> int:
    """The user's orders holding a redemption of the promotion (pending or paid)."""
    count = await session.scalar(
        select(func.count())
        .select_from(PromotionRedemption)
        .where(
            PromotionRedemption.promotion_id == promotion_id,
            PromotionRedemption.user_id == user_id,
            PromotionRedemption.release_time.is_(None),
        )
    )
    return int(count or 0)


def _refusal(
    rejection: Rejection, promotion: Promotion | None
) -> FailedPrecondition | ResourceExhausted:
    metadata = {"promotion_reason": rejection.value}
    if rejection in _LIMIT_REJECTIONS:
        return ResourceExhausted(
            "PROMOTION_EXHAUSTED",
            "the promotion code has no uses left"
            if rejection is Rejection.EXHAUSTED
            else "you have used this promotion code as often as it allows",
            metadata=metadata,
        )
    if rejection is Rejection.QUANTITY_TOO_LOW and promotion is not None:
        metadata["min_quantity"] = str(promotion.min_quantity)
    return FailedPrecondition(
        "PROMOTION_INVALID",
        f"the promotion code does not apply to this order ({rejection.name.lower()})",
        metadata=metadata,
    )


# --- The purchase path -------------------------------------------------------------------------


async def apply_promotion(
    session: AsyncSession,
    *,
    code: str,
    user_id: uuid.UUID,
    house: House,
    quantity: int,
    now: datetime.datetime,
) -> AppliedPromotion:
    """Checks the code for this order and takes one use of it, in the caller's transaction.

    The caller must hold the user's row lock (FOR NO KEY UPDATE) so that the per-user count
    cannot change before commit. Raises FAILED_PRECONDITION PROMOTION_INVALID or
    RESOURCE_EXHAUSTED PROMOTION_EXHAUSTED, with metadata `promotion_reason`; on error nothing
    has changed.
    """
    assert house.ticket_price_minor is not None
    assert house.currency is not None
    promotion = await _live_by_code(session, code)
    if promotion is None:
        raise _refusal(Rejection.NOT_FOUND, None)
    user_uses = await _user_uses(session, promotion_id=promotion.id, user_id=user_id)
    rejection = _rejection(promotion, house=house, quantity=quantity, now=now) or (
        _limit_rejection(promotion, user_uses=user_uses)
    )
    if rejection is not None:
        raise _refusal(rejection, promotion)
    taken: Promotion | None = await session.scalar(
        update(Promotion)
        .where(
            Promotion.id == promotion.id,
            Promotion.delete_time.is_(None),
            or_(Promotion.max_total_uses == 0, Promotion.uses_count < Promotion.max_total_uses),
        )
        .values(uses_count=Promotion.uses_count + 1)
        .returning(Promotion)
        .execution_options(populate_existing=True)
    )
    if taken is None:
        # Used up (or deleted) by a transaction that committed while this one waited.
        current = await session.get(Promotion, promotion.id, populate_existing=True)
        deleted = current is None or current.delete_time is not None
        raise _refusal(Rejection.NOT_FOUND if deleted else Rejection.EXHAUSTED, current)
    # An admin may have changed the terms between the read above and the row lock.
    rejection = _rejection(taken, house=house, quantity=quantity, now=now)
    if rejection is None and taken.max_uses_per_user and user_uses >= taken.max_uses_per_user:
        rejection = Rejection.USER_LIMIT_REACHED
    if rejection is not None:
        await session.execute(
            update(Promotion)
            .where(Promotion.id == taken.id)
            .values(uses_count=Promotion.uses_count - 1)
        )
        raise _refusal(rejection, taken)
    return AppliedPromotion(
        promotion_id=taken.id,
        code=taken.code,
        discount_minor=discount_minor(
            taken, unit_price_minor=house.ticket_price_minor, quantity=quantity
        ),
    )


async def record_redemption(
    session: AsyncSession,
    applied: AppliedPromotion,
    *,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    currency: str,
) -> None:
    """The redemption row of an order priced with `applied` (the order row exists already)."""
    session.add(
        PromotionRedemption(
            promotion_id=applied.promotion_id,
            user_id=user_id,
            order_id=order_id,
            discount_minor=applied.discount_minor,
            currency=currency,
        )
    )
    await session.flush()


async def release_redemption(session: AsyncSession, *, order_id: uuid.UUID) -> bool:
    """Gives the order's use of its promotion back (order expired, cancelled, failed or fully
    refunded). Idempotent: only the UPDATE that sets `release_time` decrements `uses_count`.
    True when this call released it; False when there was nothing (left) to release."""
    promotion_id = await session.scalar(
        update(PromotionRedemption)
        .where(PromotionRedemption.order_id == order_id, PromotionRedemption.release_time.is_(None))
        .values(release_time=func.now())
        .returning(PromotionRedemption.promotion_id)
    )
    if promotion_id is None:
        return False
    await session.execute(
        update(Promotion)
        .where(Promotion.id == promotion_id)
        .values(uses_count=Promotion.uses_count - 1)
    )
    return True


# --- ValidatePromotion -------------------------------------------------------------------------


async def _priced_house(session: AsyncSession, house_id: uuid.UUID) -> House:
    house = await session.scalar(
        select(House).where(
            House.id == house_id,
            House.delete_time.is_(None),
            House.state != HouseState.DRAFT,
        )
    )
    if house is None or house.ticket_price_minor is None or house.currency is None:
        raise house_not_found()
    return house


async def preview_promotion(
    session: AsyncSession,
    *,
    code: str,
    user_id: uuid.UUID,
    house_id: uuid.UUID,
    quantity: int,
    now: datetime.datetime,
) -> Preview:
    """The price preview: the same checks as `apply_promotion`, nothing taken."""
    house = await _priced_house(session, house_id)
    assert house.ticket_price_minor is not None
    assert house.currency is not None
    preview = Preview(
        rejection=None,
        promotion=None,
        unit_price_minor=house.ticket_price_minor,
        currency=house.currency,
        quantity=quantity,
        discount_minor=0,
    )
    promotion = await _live_by_code(session, code)
    if promotion is None:
        return replace(preview, rejection=Rejection.NOT_FOUND)
    rejection = _rejection(promotion, house=house, quantity=quantity, now=now) or (
        _limit_rejection(
            promotion,
            user_uses=await _user_uses(session, promotion_id=promotion.id, user_id=user_id),
        )
    )
    if rejection is not None:
        return replace(preview, rejection=rejection, promotion=promotion)
    return replace(
        preview,
        promotion=promotion,
        discount_minor=discount_minor(
            promotion, unit_price_minor=house.ticket_price_minor, quantity=quantity
        ),
    )


# --- Admin CRUD --------------------------------------------------------------------------------


async def get_promotion(session: AsyncSession, *, promotion_id: uuid.UUID) -> Promotion:
    """A promotion, deleted or not."""
    promotion = await session.get(Promotion, promotion_id)
    if promotion is None:
        raise _not_found()
    return promotion


def _filters(spec: PromotionFilter, *, now: datetime.datetime) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if not spec.show_deleted or spec.active_only:
        conditions.append(Promotion.delete_time.is_(None))
    if spec.code:
        conditions.append(Promotion.code == normalise_code(spec.code))
    if spec.house_id is not None:
        conditions.append(
            or_(
                func.cardinality(Promotion.house_ids) == 0,
                Promotion.house_ids.contains([spec.house_id]),
            )
        )
    if spec.active_only:
        conditions.append(
            and_(
                or_(Promotion.valid_from.is_(None), Promotion.valid_from <= now),
                or_(Promotion.valid_until.is_(None), Promotion.valid_until > now),
                or_(
                    Promotion.max_total_uses == 0,
                    Promotion.uses_count < Promotion.max_total_uses,
                ),
            )
        )
    return conditions


async def list_promotions(
    session: AsyncSession,
    *,
    spec: PromotionFilter,
    now: datetime.datetime,
    requested_size: int,
    token: str,
    tokens: PageTokens,
) -> Page[Promotion]:
    """Promotions matching `spec`, newest first."""
    return await keyset_page(
        session,
        select(Promotion).where(*_filters(spec, now=now)),
        keys=[Promotion.create_time, Promotion.id],
        key_of=lambda promotion: [promotion.create_time, promotion.id],
        descending=True,
        requested_size=requested_size,
        token=token,
        tokens=tokens,
        filters={
            "list": "promotions",
            "code": normalise_code(spec.code),
            "house": str(spec.house_id or ""),
            "active_only": spec.active_only,
            "show_deleted": spec.show_deleted,
        },
    )


async def _check_houses(
    session: AsyncSession,
    house_ids: Sequence[uuid.UUID],
    *,
    amount_off_currency: str | None,
    require_all: bool = True,
) -> None:
    """Every listed house exists (when `require_all`), and a fixed amount is in each one's
    ticket currency."""
    if not house_ids:
        return
    rows = (
        await session.execute(
            select(House.id, House.currency).where(
                House.id.in_(house_ids), House.delete_time.is_(None)
            )
        )
    ).all()
    currencies: dict[uuid.UUID, str | None] = {row.id: row.currency for row in rows}
    missing = [house_id for house_id in house_ids if house_id not in currencies]
    if missing and require_all:
        raise NotFound(
            "HOUSE_NOT_FOUND",
            "a house listed in the promotion does not exist",
            metadata={"house": f"houses/{missing[0]}"},
        )
    if amount_off_currency is None:
        return
    # A draft without a ticket price has no currency yet; redemption checks it again anyway.
    other = sorted({c for c in currencies.values() if c is not None and c != amount_off_currency})
    if other:
        raise InvalidArgument(
            "CURRENCY_MISMATCH",
            f"amount_off is in {amount_off_currency} but a listed house sells tickets in "
            f"{', '.join(other)}",
            violations=[
                FieldViolation("promotion.amount_off", "must be in every listed house's currency")
            ],
        )


def _check_window(valid_from: datetime.datetime | None, until: datetime.datetime | None) -> None:
    if valid_from is not None and until is not None and valid_from >= until:
        raise InvalidArgument(
            "VALIDITY_WINDOW_INVALID",
            "valid_from must be before valid_until",
            violations=[FieldViolation("promotion.valid_until", "must be after valid_from")],
        )


def _constraint_name(error: IntegrityError) -> str:
    cause = getattr(error.orig, "__cause__", None)
    return str(getattr(cause, "constraint_name", "") or "")


async def _flush_unique_code(session: AsyncSession, code: str) -> None:
    """Flushes pending changes; a code taken by a concurrent write is PROMOTION_CODE_EXISTS."""
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as error:
        if _constraint_name(error) == _LIVE_CODE_INDEX:
            raise _code_exists(code) from None
        raise


async def _code_taken(
    session: AsyncSession, code: str, *, other_than: uuid.UUID | None = None
) -> bool:
    query = select(Promotion.id).where(Promotion.code == code, Promotion.delete_time.is_(None))
    if other_than is not None:
        query = query.where(Promotion.id != other_than)
    return await session.scalar(query.limit(1)) is not None


async def create_promotion(
    session: AsyncSession, *, fields: PromotionFields, actor: Principal
) -> Promotion:
    code = normalise_code(fields.code)
    _check_window(fields.valid_from, fields.valid_until)
    await _check_houses(session, fields.house_ids, amount_off_currency=fields.amount_off_currency)
    if await _code_taken(session, code):
        raise _code_exists(code)
    promotion = Promotion(
        code=code,
        description=fields.description,
        percent_off_bps=fields.percent_off_bps,
        amount_off_minor=fields.amount_off_minor,
        amount_off_currency=fields.amount_off_currency,
        free_tickets=fields.free_tickets,
        valid_from=fields.valid_from,
        valid_until=fields.valid_until,
        max_total_uses=fields.max_total_uses,
        max_uses_per_user=fields.max_uses_per_user,
        min_quantity=fields.min_quantity,
        house_ids=list(fields.house_ids),
    )
    session.add(promotion)
    await _flush_unique_code(session, code)
    await session.refresh(promotion)
    await record_audit(
        session,
        actor=actor,
        action="payment.promotion.create",
        resource_name=promotion_name(promotion.id),
        after=_snapshot(promotion),
    )
    return promotion


async def _load_live(session: AsyncSession, promotion_id: uuid.UUID) -> Promotion:
    promotion = await session.scalar(
        select(Promotion)
        .where(Promotion.id == promotion_id, Promotion.delete_time.is_(None))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if promotion is None:
        raise _not_found()
    return promotion


def _apply_discount(promotion: Promotion, paths: frozenset[str], fields: PromotionFields) -> None:
    """The mask's discount paths: a path whose field is set replaces the discount (clearing the
    other two); a named path whose field is unset clears it."""
    given = {
        "percent_off_bps": fields.percent_off_bps is not None,
        "amount_off": fields.amount_off_minor is not None,
        "free_tickets": fields.free_tickets is not None,
    }
    chosen = [path for path in DISCOUNT_PATHS if path in paths and given[path]]
    if chosen:
        promotion.percent_off_bps = (
            fields.percent_off_bps if chosen[0] == "percent_off_bps" else None
        )
        promotion.amount_off_minor = fields.amount_off_minor if chosen[0] == "amount_off" else None
        promotion.amount_off_currency = (
            fields.amount_off_currency if chosen[0] == "amount_off" else None
        )
        promotion.free_tickets = fields.free_tickets if chosen[0] == "free_tickets" else None
        return
    if "percent_off_bps" in paths:
        promotion.percent_off_bps = None
    if "amount_off" in paths:
        promotion.amount_off_minor = None
        promotion.amount_off_currency = None
    if "free_tickets" in paths:
        promotion.free_tickets = None
    if (
        promotion.percent_off_bps is None
        and promotion.amount_off_minor is None
        and promotion.free_tickets is None
    ):
        raise InvalidArgument(
            "DISCOUNT_MISSING",
            "the update clears the discount without setting another",
            violations=[
                FieldViolation("update_mask", "must set one of " + ", ".join(DISCOUNT_PATHS))
            ],
        )


async def _apply_mask(
    session: AsyncSession, promotion: Promotion, mask: frozenset[str], fields: PromotionFields
) -> None:
    if "code" in mask:
        code = normalise_code(fields.code)
        if code != promotion.code and await _code_taken(session, code, other_than=promotion.id):
            raise _code_exists(code)
        promotion.code = code
    if "description" in mask:
        promotion.description = fields.description
    _apply_discount(promotion, mask, fields)
    if "valid_from" in mask:
        promotion.valid_from = fields.valid_from
    if "valid_until" in mask:
        promotion.valid_until = fields.valid_until
    _check_window(promotion.valid_from, promotion.valid_until)
    if "max_total_uses" in mask:
        # The CHECK `uses_within_max` forbids a limit below the uses already held; holding it
        # at `uses_count` has the documented effect: no further uses.
        promotion.max_total_uses = (
            max(fields.max_total_uses, promotion.uses_count) if fields.max_total_uses else 0
        )
    if "max_uses_per_user" in mask:
        promotion.max_uses_per_user = fields.max_uses_per_user
    if "min_quantity" in mask:
        promotion.min_quantity = fields.min_quantity
    if "houses" in mask:
        await _check_houses(
            session, fields.house_ids, amount_off_currency=promotion.amount_off_currency
        )
        promotion.house_ids = list(fields.house_ids)
    elif "amount_off" in mask:
        # Houses deleted since the promotion listed them no longer matter.
        await _check_houses(
            session,
            promotion.house_ids,
            amount_off_currency=promotion.amount_off_currency,
            require_all=False,
        )


async def update_promotion(
    session: AsyncSession,
    *,
    promotion_id: uuid.UUID,
    paths: Iterable[str],
    fields: PromotionFields,
    actor: Principal,
) -> Promotion:
    """Applies the fields named in `paths`; existing redemptions are kept."""
    mask = frozenset(paths)
    promotion = await _load_live(session, promotion_id)
    before = _snapshot(promotion)
    # The checks below query; the edits must reach the database only in the guarded flush.
    with session.no_autoflush:
        await _apply_mask(session, promotion, mask, fields)
    await _flush_unique_code(session, promotion.code)
    await session.refresh(promotion)
    await record_audit(
        session,
        actor=actor,
        action="payment.promotion.update",
        resource_name=promotion_name(promotion.id),
        before=before,
        after=_snapshot(promotion),
    )
    return promotion


async def delete_promotion(
    session: AsyncSession, *, promotion_id: uuid.UUID, actor: Principal
) -> None:
    """Soft delete: no further redemptions, the code is free again, redemptions are kept."""
    promotion = await _load_live(session, promotion_id)
    before = _snapshot(promotion)
    await session.execute(
        update(Promotion).where(Promotion.id == promotion.id).values(delete_time=func.now())
    )
    await session.refresh(promotion)
    await record_audit(
        session,
        actor=actor,
        action="payment.promotion.delete",
        resource_name=promotion_name(promotion.id),
        before=before,
        after=_snapshot(promotion),
    )
