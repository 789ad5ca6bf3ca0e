"""The house catalogue: GetHouse and ListHouses (filters, full-text search, PostGIS radius,
AIP-132 ordering and keyset pagination).

Visibility: nobody but an administrator sees a DRAFT house; a deleted house is seen only by an
administrator asking for it by name (GetHouse), never in a list.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Double, Select, and_, cast, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from server.core.errors import FieldViolation, InvalidArgument, NotFound
from server.lottery.models import House, HouseState, PropertyType

SORT_KEYS = ("draw_time", "ticket_price", "create_time", "sold_ratio", "distance")
RELEVANCE = "relevance"
# Sort values must never be NULL for keyset comparisons: drafts may lack terms.
_FAR_FUTURE = datetime.datetime(9999, 12, 31, tzinfo=datetime.UTC)


def house_not_found() -> NotFound:
    return NotFound("HOUSE_NOT_FOUND", "no such house")


@dataclass(frozen=True)
class Money:
    currency: str
    amount_minor: int


@dataclass(frozen=True)
class Near:
    latitude: float
    longitude: float
    radius_km: float


@dataclass(frozen=True)
class HouseFilter:
    """The typed filters of ListHouses; empty fields filter nothing."""

    states: Sequence[HouseState] = ()
    min_ticket_price: Money | None = None
    max_ticket_price: Money | None = None
    min_property_value: Money | None = None
    max_property_value: Money | None = None
    country_code: str = ""
    city: str = ""
    property_types: Sequence[PropertyType] = ()
    min_bedrooms: int = 0
    query: str = ""
    near: Near | None = None


@dataclass(frozen=True)
class SortKey:
    key: str
    descending: bool = False


@dataclass
class HousePage:
    houses: list[House]
    # The keyset cursor after the last house, None on the last page.
    next_cursor: dict[str, Any] | None
    total_size: int


def parse_order_by(order_by: str, *, has_query: bool, has_near: bool) -> list[SortKey]:
    """AIP-132 `order_by` over the allow-list; the default is relevance with a query, else
    draw_time. Unknown keys, repeated keys and `distance` without `near` are INVALID_ARGUMENT."""
    if not order_by.strip():
        return [SortKey(RELEVANCE, descending=True)] if has_query else [SortKey("draw_time")]
    keys: list[SortKey] = []
    for item in order_by.split(","):
        words = item.split()
        direction = words[1].lower() if len(words) == 2 else "asc"
        if (
            len(words) not in (1, 2)
            or words[0] not in SORT_KEYS
            or direction not in ("asc", "desc")
            or any(k.key == words[0] for k in keys)
        ):
            raise _invalid_order_by(f"unknown or repeated sort key {item.strip()!r}")
        if words[0] == "distance" and not has_near:
            raise _invalid_order_by("order_by distance requires near")
        keys.append(SortKey(words[0], descending=direction == "desc"))
    return keys


def _invalid_order_by(description: str) -> InvalidArgument:
    return InvalidArgument(
        "INVALID_REQUEST",
        f"order_by is invalid: {description}",
        violations=[FieldViolation("order_by", description)],
    )


def visible(*, admin: bool, include_deleted: bool = False) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = []
    if not include_deleted:
        conditions.append(House.delete_time.is_(None))
    if not admin:
        conditions.append(House.state != HouseState.DRAFT)
    return and_(*conditions) if conditions else ~false()


async def get_house(session: AsyncSession, *, house_id: uuid.UUID, admin: bool) -> House:
    """The house with its images; HOUSE_NOT_FOUND when absent or invisible to the caller."""
    house = await session.scalar(
        select(House)
        .options(selectinload(House.images))
        .where(House.id == house_id, visible(admin=admin, include_deleted=admin))
    )
    if house is None:
        raise house_not_found()
    return house


def _point(near: Near) -> ColumnElement[Any]:
    return func.ST_SetSRID(func.ST_MakePoint(near.longitude, near.latitude), 4326).cast(
        House.location.type
    )


def _filters(spec: HouseFilter, *, admin: bool) -> list[ColumnElement[bool]]:
    conditions = [visible(admin=admin)]
    if spec.states:
        conditions.append(House.state.in_(list(spec.states)))
    else:
        conditions.append(House.state != HouseState.DRAFT)
    if spec.min_ticket_price is not None:
        conditions.append(House.currency == spec.min_ticket_price.currency)
        conditions.append(House.ticket_price_minor >= spec.min_ticket_price.amount_minor)
    if spec.max_ticket_price is not None:
        conditions.append(House.currency == spec.max_ticket_price.currency)
        conditions.append(House.ticket_price_minor <= spec.max_ticket_price.amount_minor)
    if spec.min_property_value is not None:
        conditions.append(House.property_value_currency == spec.min_property_value.currency)
        conditions.append(House.property_value_minor >= spec.min_property_value.amount_minor)
    if spec.max_property_value is not None:
        conditions.append(House.property_value_currency == spec.max_property_value.currency)
        conditions.append(House.property_value_minor <= spec.max_property_value.amount_minor)
    if spec.country_code:
        conditions.append(House.country_code == spec.country_code)
    if spec.city:
        conditions.append(func.lower(House.city) == spec.city.lower())
    if spec.property_types:
        conditions.append(House.property_type.in_(list(spec.property_types)))
    if spec.min_bedrooms:
        conditions.append(House.bedrooms >= spec.min_bedrooms)
    if spec.query:
        conditions.append(House.search_vector.op("@@")(_tsquery(spec.query)))
    if spec.near is not None:
        conditions.append(
            func.ST_DWithin(House.location, _point(spec.near), spec.near.radius_km * 1000.0)
        )
    return conditions


def _tsquery(query: str) -> ColumnElement[Any]:
    # The column is built with the 'simple' configuration, so the query must use it too.
    return func.websearch_to_tsquery("simple", query)


def _sort_expression(key: str, spec: HouseFilter) -> ColumnElement[Any]:
    if key == "draw_time":
        return func.coalesce(House.draw_time, _FAR_FUTURE)
    if key == "create_time":
        return House.create_time.expression
    if key == "ticket_price":
        return func.coalesce(House.ticket_price_minor, 0)
    if key == "sold_ratio":
        return cast(
            func.coalesce(
                cast(House.tickets_sold, Double()) / func.nullif(House.total_tickets, 0), 0.0
            ),
            Double(),
        )
    if key == "distance":
        assert spec.near is not None
        return cast(func.ST_Distance(House.location, _point(spec.near)), Double())
    if key == RELEVANCE:
        return cast(func.ts_rank(House.search_vector, _tsquery(spec.query)), Double())
    raise AssertionError(key)


def _encode(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime.datetime) else value


def _decode(key: str, value: Any) -> Any:
    if key in ("draw_time", "create_time"):
        if not isinstance(value, str):
            raise ValueError(key)
        return datetime.datetime.fromisoformat(value)
    if key == "ticket_price":
        return int(value)
    return float(value)


def _after_cursor(
    expressions: list[tuple[SortKey, ColumnElement[Any]]], cursor: dict[str, Any]
) -> ColumnElement[bool]:
    """Rows strictly after the cursor in the (mixed-direction) sort order, ties broken by id:
    (k1 > v1) OR (k1 = v1 AND k2 > v2) OR … OR (k1 = v1 AND … AND id > last_id)."""
    try:
        values = [
            _decode(sort.key, raw) for (sort, _), raw in zip(expressions, cursor["k"], strict=True)
        ]
        last_id = uuid.UUID(str(cursor["id"]))
    except (KeyError, TypeError, ValueError):
        raise InvalidArgument(
            "PAGE_TOKEN_INVALID",
            "page_token is not valid for this request; start again without it",
            violations=[FieldViolation("page_token", "not a token issued for this request")],
        ) from None
    branches: list[ColumnElement[bool]] = []
    equal: list[ColumnElement[bool]] = []
    for (sort, expression), value in zip(expressions, values, strict=True):
        beyond = expression < value if sort.descending else expression > value
        branches.append(and_(*equal, beyond))
        equal.append(expression == value)
    branches.append(and_(*equal, House.id > last_id))
    return or_(*branches)


async def list_houses(
    session: AsyncSession,
    *,
    spec: HouseFilter,
    order: list[SortKey],
    cursor: dict[str, Any] | None,
    page_size: int,
    admin: bool,
) -> HousePage:
    conditions = _filters(spec, admin=admin)
    total = await session.scalar(select(func.count()).select_from(House).where(*conditions))
    expressions = [(sort, _sort_expression(sort.key, spec)) for sort in order]
    query: Select[Any] = select(House, *(expression for _, expression in expressions)).where(
        *conditions
    )
    if cursor is not None:
        query = query.where(_after_cursor(expressions, cursor))
    query = (
        query.options(selectinload(House.images))
        .order_by(
            *(expr.desc() if sort.descending else expr.asc() for sort, expr in expressions),
            House.id.asc(),
        )
        .limit(page_size + 1)
    )
    rows = (await session.execute(query)).all()
    page = rows[:page_size]
    next_cursor = None
    if len(rows) > page_size and page:
        last = page[-1]
        next_cursor = {
            "k": [_encode(last[i + 1]) for i in range(len(expressions))],
            "id": str(last[0].id),
        }
    return HousePage(
        houses=[row[0] for row in page],
        next_cursor=next_cursor,
        total_size=int(total or 0),
    )
