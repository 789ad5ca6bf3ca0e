"""ListActivity: the user's security and purchase history, newest first."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.models import ActivityKind, ActivityLog
from server.core.pagination import Page, PageTokens, keyset_page
from server.user.accounts import load_user


async def list_activity(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    kinds: Sequence[str],
    start_time: datetime.datetime | None,
    end_time: datetime.datetime | None,
    requested_size: int,
    token: str,
    tokens: PageTokens,
) -> Page[ActivityLog]:
    await load_user(session, user_id)
    query = select(ActivityLog).where(ActivityLog.user_id == user_id)
    if kinds:
        query = query.where(ActivityLog.kind.in_([ActivityKind(kind) for kind in kinds]))
    if start_time is not None:
        query = query.where(ActivityLog.create_time >= start_time)
    if end_time is not None:
        query = query.where(ActivityLog.create_time < end_time)
    return await keyset_page(
        session,
        query,
        keys=[ActivityLog.create_time, ActivityLog.id],
        key_of=lambda entry: [entry.create_time, entry.id],
        descending=True,
        requested_size=requested_size,
        token=token,
        tokens=tokens,
        filters={
            "list": "activities",
            "user": str(user_id),
            "kinds": sorted(kinds),
            "start": start_time.isoformat() if start_time else None,
            "end": end_time.isoformat() if end_time else None,
        },
    )
