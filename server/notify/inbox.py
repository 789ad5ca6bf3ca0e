"""The in-app inbox and the preferences grid: the rules behind UserService's notification RPCs,
and what the dispatcher writes for the in-app channel."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Final

from sqlalchemy import exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.content.models import Language
from server.core.audit import record_activity, record_audit
from server.core.context import Principal
from server.core.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from server.core.models import ActivityKind
from server.core.names import child_name, user_name
from server.core.pagination import Page, PageTokens, keyset_page
from server.user.accounts import active_exclusion, load_user
from server.user.models import Notification, NotificationCategory, NotificationPreferences

CATEGORIES: Final = ("account", "draws", "marketing", "purchases")
CHANNELS: Final = ("email", "sms", "in_app", "push")
# Column defaults of notification_preferences (the proto's documented defaults).
DEFAULT_GRID: Final[Mapping[str, Mapping[str, bool]]] = {
    category: {
        channel: category != "marketing" and channel in ("email", "in_app", "push")
        for channel in CHANNELS
    }
    for category in CATEGORIES
}


def topic(user_id: uuid.UUID) -> str:
    """The EventBus topic of a user's live notification events."""
    return f"notifications:{user_id}"


async def unread_count(session: AsyncSession, user_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Notification)
        .where(Notification.user_id == user_id, Notification.read_time.is_(None))
    )
    return int(count or 0)


async def create_notification(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    category: NotificationCategory,
    kind: str,
    title: str,
    body: str,
    resource: str | None,
    outbox_id: uuid.UUID | None,
) -> Notification | None:
    """Stores an in-app notification; None when this outbox message already stored one."""
    statement = (
        insert(Notification)
        .values(
            user_id=user_id,
            category=category,
            kind=kind,
            title=title,
            body=body,
            resource=resource,
            outbox_id=outbox_id,
        )
        .on_conflict_do_nothing(index_elements=[Notification.outbox_id])
        .returning(Notification)
    )
    return (await session.scalars(statement)).one_or_none()


async def list_notifications(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    unread_only: bool,
    requested_size: int,
    token: str,
    tokens: PageTokens,
) -> Page[Notification]:
    await load_user(session, user_id)
    query = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        query = query.where(Notification.read_time.is_(None))
    return await keyset_page(
        session,
        query,
        keys=[Notification.create_time, Notification.id],
        key_of=lambda row: [row.create_time, row.id],
        descending=True,
        requested_size=requested_size,
        token=token,
        tokens=tokens,
        filters={"list": "notifications", "user": str(user_id), "unread_only": unread_only},
    )


@dataclass(frozen=True, slots=True)
class MarkResult:
    # The notifications this call changed from unread to read.
    marked: list[Notification]
    unread_count: int


async def mark_read(
    session: AsyncSession, *, user_id: uuid.UUID, notification_ids: Collection[uuid.UUID] | None
) -> MarkResult:
    """Marks the given notifications (all unread ones when None) read, all or nothing."""
    await load_user(session, user_id)
    statement = update(Notification).where(
        Notification.user_id == user_id, Notification.read_time.is_(None)
    )
    if notification_ids is not None:
        found = set(
            (
                await session.scalars(
                    select(Notification.id).where(
                        Notification.user_id == user_id, Notification.id.in_(notification_ids)
                    )
                )
            ).all()
        )
        for missing in notification_ids:
            if missing not in found:
                name = child_name(user_id, "notifications", missing)
                raise NotFound(
                    "NOTIFICATION_NOT_FOUND",
                    "the user has no such notification",
                    metadata={"name": name},
                )
        statement = statement.where(Notification.id.in_(notification_ids))
    marked = list(
        (
            await session.scalars(
                statement.values(read_time=func.now())
                .returning(Notification)
                .execution_options(synchronize_session=False)
            )
        ).all()
    )
    marked.sort(key=lambda row: (row.create_time, row.id))
    return MarkResult(marked=marked, unread_count=await unread_count(session, user_id))


@dataclass(frozen=True, slots=True)
class PreferencesView:
    user_id: uuid.UUID
    # category → channel → delivered
    grid: dict[str, dict[str, bool]]
    language: str | None
    # None while the preferences are the defaults.
    update_time: datetime.datetime | None


def _view(user_id: uuid.UUID, row: NotificationPreferences | None) -> PreferencesView:
    if row is None:
        grid = {category: dict(channels) for category, channels in DEFAULT_GRID.items()}
        return PreferencesView(user_id=user_id, grid=grid, language=None, update_time=None)
    grid = {
        category: {channel: bool(getattr(row, f"{category}_{channel}")) for channel in CHANNELS}
        for category in CATEGORIES
    }
    return PreferencesView(
        user_id=user_id, grid=grid, language=row.language, update_time=row.update_time
    )


async def load_preferences(session: AsyncSession, user_id: uuid.UUID) -> PreferencesView:
    """The stored preferences or the defaults (no user check: the dispatcher's read)."""
    row = await session.scalar(
        select(NotificationPreferences).where(NotificationPreferences.user_id == user_id)
    )
    return _view(user_id, row)


async def get_preferences(session: AsyncSession, *, user_id: uuid.UUID) -> PreferencesView:
    await load_user(session, user_id)
    return await load_preferences(session, user_id)


def changed_columns(
    paths: Collection[str], *, grid: Mapping[str, Mapping[str, bool]], language: str
) -> dict[str, bool | str | None]:
    """The columns an update mask names, with their new values (validation checked the paths)."""
    columns: dict[str, bool | str | None] = {}
    for path in paths:
        if path == "language":
            columns["language"] = language or None
            continue
        category, _, channel = path.partition(".")
        for name in (channel,) if channel else CHANNELS:
            columns[f"{category}_{name}"] = bool(grid.get(category, {}).get(name, False))
    return columns


async def update_preferences(
    session: AsyncSession,
    *,
    principal: Principal,
    user_id: uuid.UUID,
    columns: Mapping[str, bool | str | None],
) -> PreferencesView:
    await load_user(session, user_id)
    language = columns.get("language")
    if isinstance(language, str):
        supported = await session.scalar(
            select(
                exists().where(
                    func.lower(Language.language_code) == language.lower(), Language.enabled
                )
            )
        )
        if not supported:
            raise InvalidArgument(
                "LANGUAGE_NOT_SUPPORTED",
                "language is not a supported language",
                violations=[
                    FieldViolation("notification_preferences.language", "not a supported language")
                ],
            )
    if any(value is True for name, value in columns.items() if name.startswith("marketing_")):
        exclusion = await active_exclusion(session, user_id)
        if exclusion is not None:
            raise FailedPrecondition(
                "SELF_EXCLUSION_ACTIVE",
                "marketing cannot be turned on while self-excluded",
                metadata=exclusion.until_metadata(),
            )
    before = await load_preferences(session, user_id)
    upsert = (
        insert(NotificationPreferences)
        .values(user_id=user_id, **columns)
        .on_conflict_do_update(
            index_elements=[NotificationPreferences.user_id],
            set_={**columns, "update_time": func.now()},
        )
        .returning(NotificationPreferences)
        .execution_options(populate_existing=True)
    )
    row = (await session.scalars(upsert)).one()
    after = _view(user_id, row)
    await record_activity(
        session,
        user_id=user_id,
        kind=ActivityKind.PROFILE_UPDATED,
        details={"fields": "notification_preferences", "paths": ",".join(sorted(columns))},
    )
    if principal.user_id != user_id:
        await record_audit(
            session,
            actor=principal,
            action="user.update_notification_preferences",
            resource_name=f"{user_name(user_id)}/notificationPreferences",
            before={"grid": before.grid, "language": before.language},
            after={"grid": after.grid, "language": after.language},
        )
    return after
