"""ContentService rules built so far: the public settings and the language list."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.content.models import Language, SystemSetting


async def public_settings(session: AsyncSession) -> dict[str, Any]:
    """Every setting flagged public, key → JSON value."""
    rows = await session.execute(
        select(SystemSetting.key, SystemSetting.value).where(SystemSetting.is_public)
    )
    return {key: value for key, value in rows}


async def list_languages(session: AsyncSession) -> list[Language]:
    """The enabled languages, the default first, then by language code."""
    rows = await session.scalars(
        select(Language)
        .where(Language.enabled)
        .order_by(Language.is_default.desc(), Language.language_code)
    )
    return list(rows)
