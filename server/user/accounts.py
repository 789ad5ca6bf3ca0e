"""What every UserService rule needs first: the account row, its derived status, and the platform
settings the rules read (minimum age, platform currency)."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.content.models import SystemSetting
from server.core.audit import record_audit
from server.core.context import Principal
from server.core.errors import FailedPrecondition, NotFound
from server.user.models import SelfExclusion, User, UserStatus

DEFAULT_MINIMUM_AGE = 18
DEFAULT_CURRENCY = "EUR"

# Limits the proto calls configurable; module constants until they move to Settings.
MAX_ADDRESSES = 10
MAX_PHONES = 5
MAX_IDENTITY_DOCUMENTS = 10


@dataclass(frozen=True, slots=True)
class Exclusion:
    """The self-exclusion in force: until `end_time`, or for ever when it is None."""

    end_time: datetime.datetime | None

    @property
    def permanent(self) -> bool:
        return self.end_time is None

    def until_metadata(self) -> dict[str, str]:
        return {} if self.end_time is None else {"until": self.end_time.isoformat()}


def excluded_now() -> ColumnElement[bool]:
    """SQL: the user (`users.id`) has a self-exclusion in force at the transaction's time."""
    return exists().where(
        SelfExclusion.user_id == User.id,
        SelfExclusion.start_time <= func.now(),
        or_(SelfExclusion.end_time.is_(None), SelfExclusion.end_time > func.now()),
    )


async def load_user(session: AsyncSession, user_id: uuid.UUID, *, for_update: bool = False) -> User:
    """The account (closed ones included); USER_NOT_FOUND when no user has this id."""
    query = select(User).where(User.id == user_id)
    if for_update:
        query = query.with_for_update()
    user = await session.scalar(query)
    if user is None:
        raise NotFound("USER_NOT_FOUND", "no user has this id", metadata={"user": str(user_id)})
    return user


async def load_open_user(
    session: AsyncSession, user_id: uuid.UUID, *, for_update: bool = False
) -> User:
    """The account, refusing closed ones with ACCOUNT_DELETED."""
    user = await load_user(session, user_id, for_update=for_update)
    if user.status is UserStatus.DELETED:
        raise FailedPrecondition("ACCOUNT_DELETED", "the account is closed")
    return user


async def active_exclusion(
    session: AsyncSession, user_id: uuid.UUID, *, now: datetime.datetime | None = None
) -> Exclusion | None:
    """The self-exclusion in force (the longest when several overlap), or None."""
    at: Any = now if now is not None else func.now()
    rows = await session.execute(
        select(SelfExclusion.end_time).where(
            SelfExclusion.user_id == user_id,
            SelfExclusion.start_time <= at,
            or_(SelfExclusion.end_time.is_(None), SelfExclusion.end_time > at),
        )
    )
    ends = [end for (end,) in rows]
    return _longest(ends) if ends else None


async def active_exclusions(
    session: AsyncSession, user_ids: list[uuid.UUID]
) -> dict[uuid.UUID, Exclusion]:
    """The exclusion in force of each of these users that has one."""
    rows = await session.execute(
        select(SelfExclusion.user_id, SelfExclusion.end_time).where(
            SelfExclusion.user_id.in_(user_ids),
            SelfExclusion.start_time <= func.now(),
            or_(SelfExclusion.end_time.is_(None), SelfExclusion.end_time > func.now()),
        )
    )
    ends: dict[uuid.UUID, list[datetime.datetime | None]] = {}
    for user_id, end in rows:
        ends.setdefault(user_id, []).append(end)
    return {user_id: _longest(values) for user_id, values in ends.items()}


def _longest(ends: list[datetime.datetime | None]) -> Exclusion:
    if any(end is None for end in ends):
        return Exclusion(end_time=None)
    return Exclusion(end_time=max(end for end in ends if end is not None))


def status_filter(status: str) -> ColumnElement[bool]:
    """SQL for the user status a client sees: DELETED first, then an exclusion in force, then
    the stored status (SELF_EXCLUDED is never stored)."""
    if status == "DELETED":
        return User.status == UserStatus.DELETED
    if status == "SELF_EXCLUDED":
        return and_(User.status != UserStatus.DELETED, excluded_now())
    return and_(User.status == UserStatus(status), ~excluded_now())


async def audit_for_other_user(
    session: AsyncSession,
    *,
    principal: Principal,
    user_id: uuid.UUID,
    action: str,
    resource_name: str,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> None:
    """Audits a change an administrator made to someone else's account (a user's own changes
    go to their activity log instead)."""
    if principal.user_id != user_id:
        await record_audit(
            session,
            actor=principal,
            action=action,
            resource_name=resource_name,
            before=before,
            after=after,
        )


async def setting(session: AsyncSession, key: str, default: Any = None) -> Any:
    """A system setting's value (JSON), or `default` when it is not set."""
    value = await session.scalar(select(SystemSetting.value).where(SystemSetting.key == key))
    return default if value is None else value


def age_on(birth: datetime.date, today: datetime.date) -> int:
    """Age in whole years on `today`."""
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


async def minimum_age(session: AsyncSession) -> int:
    value = await setting(session, "minimum_age")
    return value if isinstance(value, int) and not isinstance(value, bool) else DEFAULT_MINIMUM_AGE


async def platform_currency(session: AsyncSession) -> str:
    value = await setting(session, "default_currency")
    return value if isinstance(value, str) and len(value) == 3 else DEFAULT_CURRENCY
