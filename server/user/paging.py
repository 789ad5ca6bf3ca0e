"""Keyset pages for UserService's List methods: the signed cursor holds the sort key of the last
row served, so rows added or removed between pages neither repeat nor vanish."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from server.core.errors import FieldViolation, InvalidArgument
from server.core.pagination import PageTokens, page_size

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str
    total_size: int


def _encode(value: Any) -> list[Any]:
    if isinstance(value, datetime.datetime):
        return ["d", value.isoformat()]
    if isinstance(value, uuid.UUID):
        return ["u", str(value)]
    if isinstance(value, bool):
        return ["i", int(value)]
    if isinstance(value, int):
        return ["i", value]
    return ["s", str(value)]


def _decode(item: Any) -> Any:
    if not isinstance(item, list) or len(item) != 2:
        raise InvalidArgument(
            "PAGE_TOKEN_INVALID",
            "page_token is not valid for this request; start again without it",
            violations=[FieldViolation("page_token", "not a token issued for this request")],
        )
    tag, raw = item
    if tag == "d":
        return datetime.datetime.fromisoformat(raw)
    if tag == "u":
        return uuid.UUID(raw)
    return raw


async def keyset_page(
    session: AsyncSession,
    query: Select[T],
    *,
    keys: Sequence[ColumnElement[Any] | InstrumentedAttribute[Any]],
    key_of: Callable[[T], Sequence[Any]],
    descending: bool,
    requested_size: int,
    token: str,
    tokens: PageTokens,
    filters: Mapping[str, Any],
) -> Page[T]:
    """One page of `query` (already filtered) ordered by `keys` (the last one unique)."""
    cursor = tokens.decode(token, filters=filters)
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    size = page_size(requested_size)
    paged = query
    if cursor is not None:
        values = [_decode(item) for item in cursor.get("k", [])]
        if len(values) != len(keys):
            raise InvalidArgument(
                "PAGE_TOKEN_INVALID",
                "page_token is not valid for this request; start again without it",
                violations=[FieldViolation("page_token", "not a token issued for this request")],
            )
        row_key = tuple_(*keys)
        paged = paged.where(row_key < tuple_(*values) if descending else row_key > tuple_(*values))
    ordered = [key.desc() if descending else key.asc() for key in keys]
    rows = list((await session.scalars(paged.order_by(*ordered).limit(size + 1))).all())
    next_token = ""
    if len(rows) > size:
        rows = rows[:size]
        next_token = tokens.encode(
            {"k": [_encode(value) for value in key_of(rows[-1])]}, filters=filters
        )
    return Page(items=rows, next_page_token=next_token, total_size=int(total or 0))
