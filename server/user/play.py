"""Responsible play: spend limits over rolling windows, self-exclusion, and the one check the
purchase path runs before reserving tickets (`check_purchase_allowed`).

Limits. Lowering a limit (or setting one where there was none) applies at once; raising or
removing one waits 24 hours as a pending change, so a limit cannot be lifted on impulse. A
pending change becomes the limit when its time comes: readers apply it on the fly
(`_effective`), and the next write stores it. Spending is the sum of PAID orders (net of refunds)
in the platform's currency over the last 24 hours, 7 days or 30 days.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.models import SessionRevokeReason
from server.auth.sessions import revoke_all_sessions
from server.core.audit import record_activity, record_audit
from server.core.context import Principal
from server.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from server.core.models import ActivityKind
from server.core.names import user_name
from server.payment.models import Order, OrderState
from server.user.accounts import active_exclusion, load_open_user, load_user, platform_currency
from server.user.models import PlayLimit, PlayLimitPeriod, SelfExclusion, User, UserStatus

RAISE_DELAY = datetime.timedelta(hours=24)
WINDOWS: Mapping[PlayLimitPeriod, datetime.timedelta] = {
    PlayLimitPeriod.DAILY: datetime.timedelta(hours=24),
    PlayLimitPeriod.WEEKLY: datetime.timedelta(days=7),
    PlayLimitPeriod.MONTHLY: datetime.timedelta(days=30),
}
# Proto field name of each period's limit (update_mask paths, field violations).
FIELDS: Mapping[PlayLimitPeriod, str] = {
    PlayLimitPeriod.DAILY: "daily_limit",
    PlayLimitPeriod.WEEKLY: "weekly_limit",
    PlayLimitPeriod.MONTHLY: "monthly_limit",
}
_SPENT_STATES = (OrderState.PAID, OrderState.PARTIALLY_REFUNDED, OrderState.REFUNDED)


@dataclass(frozen=True, slots=True)
class PendingChange:
    amount_minor: int | None  # None: the limit is removed
    effective_time: datetime.datetime


@dataclass(frozen=True, slots=True)
class PeriodView:
    amount_minor: int | None
    pending: PendingChange | None
    spent_minor: int


@dataclass(frozen=True, slots=True)
class LimitsView:
    user_id: uuid.UUID
    currency: str
    daily: PeriodView
    weekly: PeriodView
    monthly: PeriodView
    update_time: datetime.datetime | None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _effective(
    row: PlayLimit | None, at: datetime.datetime
) -> tuple[int | None, PendingChange | None]:
    """The limit in force at `at` and the change still pending then."""
    if row is None:
        return None, None
    if row.pending_effective_time is None:
        return row.amount_minor, None
    if row.pending_effective_time <= at:
        return row.pending_amount_minor, None
    return row.amount_minor, PendingChange(row.pending_amount_minor, row.pending_effective_time)


async def _rows(
    session: AsyncSession, user_id: uuid.UUID, *, for_update: bool = False
) -> dict[PlayLimitPeriod, PlayLimit]:
    query = select(PlayLimit).where(PlayLimit.user_id == user_id)
    if for_update:
        query = query.with_for_update()
    return {row.period: row for row in await session.scalars(query)}


async def spent(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    currency: str,
    now: datetime.datetime,
) -> dict[PlayLimitPeriod, int]:
    """Paid order totals net of refunds in each rolling window ending at `now`."""
    net = Order.total_minor - Order.refunded_minor
    columns = [
        func.coalesce(func.sum(net).filter(Order.paid_time > now - window), 0)
        for window in WINDOWS.values()
    ]
    row = (
        await session.execute(
            select(*columns).where(
                Order.user_id == user_id,
                Order.currency == currency,
                Order.state.in_(_SPENT_STATES),
                Order.paid_time > now - max(WINDOWS.values()),
                Order.paid_time <= now,
            )
        )
    ).one()
    return {period: int(value) for period, value in zip(WINDOWS, row, strict=True)}


async def _view(
    session: AsyncSession, user_id: uuid.UUID, rows: Mapping[PlayLimitPeriod, PlayLimit]
) -> LimitsView:
    now = _now()
    currency = await platform_currency(session)
    totals = await spent(session, user_id=user_id, currency=currency, now=now)
    periods = {}
    for period in PlayLimitPeriod:
        amount, pending = _effective(rows.get(period), now)
        periods[period] = PeriodView(amount, pending, totals[period])
    times = [row.update_time for row in rows.values()]
    return LimitsView(
        user_id=user_id,
        currency=currency,
        daily=periods[PlayLimitPeriod.DAILY],
        weekly=periods[PlayLimitPeriod.WEEKLY],
        monthly=periods[PlayLimitPeriod.MONTHLY],
        update_time=max(times) if times else None,
    )


async def get_play_limits(session: AsyncSession, *, user_id: uuid.UUID) -> LimitsView:
    await load_user(session, user_id)
    return await _view(session, user_id, await _rows(session, user_id))


def _check_ordered(rows: Mapping[PlayLimitPeriod, PlayLimit], now: datetime.datetime) -> None:
    """daily ≤ weekly ≤ monthly now and at every moment a pending change takes effect."""
    moments = {now} | {
        row.pending_effective_time
        for row in rows.values()
        if row.pending_effective_time is not None and row.pending_effective_time > now
    }
    for moment in sorted(moments):
        limits = [_effective(rows.get(period), moment)[0] for period in PlayLimitPeriod]
        # An unset limit is no limit: the rule binds the limits that are set.
        known = [limit for limit in limits if limit is not None]
        if known != sorted(known):
            raise InvalidArgument(
                "LIMITS_NOT_ORDERED",
                "limits must satisfy daily <= weekly <= monthly",
                violations=[FieldViolation("play_limits", "daily <= weekly <= monthly")],
            )


async def update_play_limits(
    session: AsyncSession,
    *,
    principal: Principal,
    user_id: uuid.UUID,
    changes: Mapping[str, tuple[int, str] | None],
) -> LimitsView:
    """`changes` maps masked field names to (amount, currency), or None to remove the limit."""
    await load_open_user(session, user_id, for_update=True)
    currency = await platform_currency(session)
    for field, value in changes.items():
        if value is not None and value[1] != currency:
            raise InvalidArgument(
                "CURRENCY_NOT_SUPPORTED",
                f"limits are in {currency}",
                violations=[FieldViolation(f"play_limits.{field}", f"must be in {currency}")],
                metadata={"currency_code": value[1]},
            )
    now = _now()
    rows = await _rows(session, user_id, for_update=True)
    before = {FIELDS[p]: _effective(r, now)[0] for p, r in rows.items()}
    for period, field in FIELDS.items():
        if field not in changes:
            continue
        change = changes[field]
        new = change[0] if change is not None else None
        row = rows.get(period)
        if row is None:
            row = PlayLimit(user_id=user_id, period=period, currency=currency)
            session.add(row)
            rows[period] = row
        current, _ = _effective(row, now)
        row.amount_minor, row.currency = current, currency
        if new is not None and (current is None or new <= current):
            row.amount_minor = new  # lowering (or a first limit) applies at once
            row.pending_amount_minor, row.pending_effective_time = None, None
        elif new is None and current is None:
            row.pending_amount_minor, row.pending_effective_time = None, None
        else:
            row.pending_amount_minor, row.pending_effective_time = new, now + RAISE_DELAY
    _check_ordered(rows, now)
    await session.flush()
    for row in rows.values():
        await session.refresh(row)
    after = {FIELDS[p]: _effective(r, now)[0] for p, r in rows.items()}
    by_admin = principal.user_id != user_id
    await record_activity(
        session,
        user_id=user_id,
        kind=ActivityKind.PLAY_LIMITS_CHANGED,
        details={"fields": ",".join(sorted(changes)), **({"by": "admin"} if by_admin else {})},
    )
    if by_admin:
        await record_audit(
            session,
            actor=principal,
            action="user.play_limits.update",
            resource_name=f"{user_name(user_id)}/playLimits",
            before=before,
            after=after,
        )
    return await _view(session, user_id, rows)


def add_months(moment: datetime.datetime, months: int) -> datetime.datetime:
    """The same day `months` calendar months later (the month's last day when it is shorter)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    for day in range(moment.day, 27, -1):
        try:
            return moment.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    return moment.replace(year=year, month=month, day=min(moment.day, 28))


@dataclass(frozen=True, slots=True)
class ExclusionResult:
    end_time: datetime.datetime | None

    @property
    def permanent(self) -> bool:
        return self.end_time is None


async def self_exclude(
    session: AsyncSession,
    *,
    principal: Principal,
    user_id: uuid.UUID,
    months: int | None,
) -> ExclusionResult:
    """Excludes at once for `months` (None: permanently); extends but never shortens."""
    user = await load_open_user(session, user_id, for_update=True)
    now = _now()
    end = add_months(now, months) if months is not None else None
    current = await active_exclusion(session, user_id, now=now)
    if current is not None:
        shorter = current.end_time is None or (end is not None and end < current.end_time)
        if shorter and not (current.end_time is None and end is None):
            raise FailedPrecondition(
                "SELF_EXCLUSION_WOULD_SHORTEN",
                "the user is already excluded until later",
                metadata=current.until_metadata(),
            )
        # Extend the exclusions in force so that none ends before the new end.
        await session.execute(
            update(SelfExclusion)
            .where(
                SelfExclusion.user_id == user_id,
                SelfExclusion.start_time <= now,
                or_(SelfExclusion.end_time.is_(None), SelfExclusion.end_time > now),
            )
            .values(end_time=end)
        )
    else:
        session.add(SelfExclusion(user_id=user_id, start_time=now, end_time=end))
    user.marketing_opt_in = False  # marketing stops on every channel, and stays off
    await session.flush()
    # Unpaid orders stop holding tickets; a payment that still goes through is refunded.
    from server.payment.orders import cancel_pending_orders  # noqa: PLC0415 - orders imports play

    await cancel_pending_orders(session, user_id=user_id, reason="self-excluded", now=now)
    await revoke_all_sessions(session, user_id=user_id, reason=SessionRevokeReason.SELF_EXCLUDED)
    by_admin = principal.user_id != user_id
    details = {"until": end.isoformat() if end else "permanent"}
    await record_activity(
        session,
        user_id=user_id,
        kind=ActivityKind.SELF_EXCLUDED,
        details={**details, **({"by": "admin"} if by_admin else {})},
    )
    if by_admin:
        await record_audit(
            session,
            actor=principal,
            action="user.self_exclude",
            resource_name=user_name(user_id),
            before={
                "until": current.end_time.isoformat() if current and current.end_time else None
            },
            after=details,
        )
    return ExclusionResult(end_time=end)


async def _reserved(
    session: AsyncSession, *, user_id: uuid.UUID, currency: str, now: datetime.datetime
) -> dict[PlayLimitPeriod, int]:
    """Totals of unpaid orders still holding tickets, per window: they may be paid any moment."""
    columns = [
        func.coalesce(func.sum(Order.total_minor).filter(Order.create_time > now - window), 0)
        for window in WINDOWS.values()
    ]
    row = (
        await session.execute(
            select(*columns).where(
                Order.user_id == user_id,
                Order.currency == currency,
                Order.state == OrderState.PENDING_PAYMENT,
                Order.expire_time > now,
            )
        )
    ).one()
    return {period: int(value) for period, value in zip(WINDOWS, row, strict=True)}


async def check_purchase_allowed(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    amount_minor: int,
    currency: str,
    now: datetime.datetime,
) -> None:
    """Raises unless the user may spend `amount_minor` more now: FAILED_PRECONDITION
    ACCOUNT_DELETED, SELF_EXCLUDED (metadata `until`, absent when permanent) or
    ACCOUNT_SUSPENDED (metadata `reason`), or RESOURCE_EXHAUSTED PLAY_LIMIT_EXCEEDED (metadata
    `period`, `remaining_minor`, `currency_code`).

    Call it inside the purchase transaction, before the order is inserted: it locks the user row
    (FOR NO KEY UPDATE, which does not block the order's foreign key), so two concurrent purchases
    of one user are checked one after the other, and it counts unpaid orders still holding
    tickets as well as paid ones, so the second purchase sees the first.
    """
    user = await session.scalar(
        select(User).where(User.id == user_id).with_for_update(key_share=True)
    )
    if user is None:
        raise NotFound("USER_NOT_FOUND", "no user has this id")
    if user.status is UserStatus.DELETED:
        raise FailedPrecondition("ACCOUNT_DELETED", "the account is closed")
    exclusion = await active_exclusion(session, user_id, now=now)
    if exclusion is not None:
        raise FailedPrecondition(
            "SELF_EXCLUDED", "the account is self-excluded", metadata=exclusion.until_metadata()
        )
    if user.status is UserStatus.SUSPENDED:
        raise FailedPrecondition(
            "ACCOUNT_SUSPENDED",
            "the account is suspended",
            metadata={"reason": user.status_reason or ""},
        )
    rows = await _rows(session, user_id)
    limits = {period: _effective(rows.get(period), now)[0] for period in PlayLimitPeriod}
    if all(limit is None for limit in limits.values()):
        return
    paid = await spent(session, user_id=user_id, currency=currency, now=now)
    held = await _reserved(session, user_id=user_id, currency=currency, now=now)
    for period, limit in limits.items():
        if limit is None:
            continue
        used = paid[period] + held[period]
        if used + amount_minor > limit:
            raise ResourceExhausted(
                "PLAY_LIMIT_EXCEEDED",
                f"the order would exceed the {period.value.lower()} spend limit",
                metadata={
                    "period": period.value,
                    "remaining_minor": str(max(limit - used, 0)),
                    "currency_code": currency,
                },
            )
