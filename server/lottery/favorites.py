"""A user's favorite houses. Sessions are scoped to the caller (row level security on
`favorites`); the ownership rule (`users/me` or one's own id, NOT_OWNER otherwise) is applied by
`resolve_user` before these functions run."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from server.core.errors import FieldViolation, InvalidArgument, NotFound, ResourceExhausted
from server.lottery.catalogue import house_not_found, visible
from server.lottery.models import Favorite, House

MAX_FAVORITES = 500
# First key of the transaction-scoped advisory lock serialising one user's favorite additions.
_FAVORITES_LOCK = 0x4641_5600


@dataclass
class FavoritePage:
    favorites: list[tuple[Favorite, House]]
    next_cursor: dict[str, Any] | None
    total_size: int


def _listed() -> Any:
    return and_(Favorite.house_id == House.id, visible(admin=False))


async def add_favorite(
    session: AsyncSession, *, user_id: uuid.UUID, house_id: uuid.UUID
) -> tuple[Favorite, House]:
    """Adds the house (idempotent: an existing favorite is returned as it is)."""
    house = await session.scalar(
        select(House)
        .options(selectinload(House.images))
        .where(House.id == house_id, visible(admin=False))
    )
    if house is None:
        raise house_not_found()
    existing = await _favorite(session, user_id=user_id, house_id=house_id)
    if existing is not None:
        return existing, house
    # One adder per user at a time, so concurrent adds cannot overshoot the limit.
    await session.execute(
        select(func.pg_advisory_xact_lock(_FAVORITES_LOCK, func.hashtext(str(user_id))))
    )
    count = await session.scalar(
        select(func.count()).select_from(Favorite).where(Favorite.user_id == user_id)
    )
    if int(count or 0) >= MAX_FAVORITES:
        raise ResourceExhausted(
            "FAVORITE_LIMIT_REACHED", f"a user may have at most {MAX_FAVORITES} favorites"
        )
    await session.execute(
        insert(Favorite)
        .values(user_id=user_id, house_id=house_id)
        .on_conflict_do_nothing(index_elements=[Favorite.user_id, Favorite.house_id])
    )
    favorite = await _favorite(session, user_id=user_id, house_id=house_id)
    assert favorite is not None
    return favorite, house


async def _favorite(
    session: AsyncSession, *, user_id: uuid.UUID, house_id: uuid.UUID
) -> Favorite | None:
    favorite: Favorite | None = await session.scalar(
        select(Favorite).where(Favorite.user_id == user_id, Favorite.house_id == house_id)
    )
    return favorite


async def remove_favorite(
    session: AsyncSession, *, user_id: uuid.UUID, house_id: uuid.UUID
) -> None:
    removed = await session.scalar(
        delete(Favorite)
        .where(Favorite.user_id == user_id, Favorite.house_id == house_id)
        .returning(Favorite.id)
    )
    if removed is None:
        raise NotFound("FAVORITE_NOT_FOUND", "the house is not one of the user's favorites")


async def list_favorites(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    cursor: dict[str, Any] | None,
    page_size: int,
) -> FavoritePage:
    """Most recently added first; deleted (or unpublished) houses are left out."""
    total = await session.scalar(
        select(func.count())
        .select_from(Favorite)
        .join(House, _listed())
        .where(Favorite.user_id == user_id)
    )
    query = (
        select(Favorite, House)
        .join(House, _listed())
        .options(selectinload(House.images))
        .where(Favorite.user_id == user_id)
        .order_by(Favorite.create_time.desc(), Favorite.id.desc())
        .limit(page_size + 1)
    )
    if cursor is not None:
        try:
            after_time = datetime.datetime.fromisoformat(str(cursor["t"]))
            after_id = uuid.UUID(str(cursor["id"]))
        except (KeyError, ValueError):
            raise InvalidArgument(
                "PAGE_TOKEN_INVALID",
                "page_token is not valid for this request; start again without it",
                violations=[FieldViolation("page_token", "not a token issued for this request")],
            ) from None
        query = query.where(
            or_(
                Favorite.create_time < after_time,
                and_(Favorite.create_time == after_time, Favorite.id < after_id),
            )
        )
    rows = [(favorite, house) for favorite, house in (await session.execute(query)).all()]
    page = rows[:page_size]
    next_cursor = None
    if len(rows) > page_size:
        last = page[-1][0]
        next_cursor = {"t": last.create_time.isoformat(), "id": str(last.id)}
    return FavoritePage(favorites=page, next_cursor=next_cursor, total_size=int(total or 0))
