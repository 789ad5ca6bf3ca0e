"""Admin writes to houses: create, update (field mask), soft delete, publish and cancel."""

from __future__ import annotations

import datetime
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from server.core.audit import record_audit
from server.core.context import Principal
from server.core.errors import FailedPrecondition, FieldViolation, InvalidArgument
from server.lottery import draws
from server.lottery.catalogue import house_not_found
from server.lottery.draws import DrawSigner
from server.lottery.lifecycle import Event, transition, utcnow
from server.lottery.mapping import LISTING_PATHS, OUTPUT_ONLY_PATHS, TERMS_PATHS
from server.lottery.models import House, HouseState

METADATA_MAX_BYTES = 16 * 1024
# Terms can change while nobody can have bought a ticket yet.
TERMS_EDITABLE_STATES = frozenset({HouseState.DRAFT, HouseState.UPCOMING})
TERM_COLUMNS = (
    "ticket_price_minor",
    "currency",
    "total_tickets",
    "min_participation",
    "max_tickets_per_order",
    "max_tickets_per_user",
    "sales_open_time",
    "sales_close_time",
    "draw_time",
)
DELETABLE_STATES = frozenset({HouseState.DRAFT, HouseState.CANCELLED})


def _terms_invalid(field: str, description: str) -> InvalidArgument:
    return InvalidArgument(
        "LOTTERY_TERMS_INVALID",
        f"lottery terms are incoherent: {description}",
        violations=[FieldViolation(f"house.lottery_terms.{field}", description)],
    )


def check_metadata(values: Mapping[str, Any]) -> None:
    if "metadata_" not in values:
        return
    size = len(json.dumps(values["metadata_"], separators=(",", ":")).encode())
    if size > METADATA_MAX_BYTES:
        raise InvalidArgument(
            "HOUSE_METADATA_TOO_LARGE",
            f"metadata serialises to {size} bytes, more than {METADATA_MAX_BYTES}",
            violations=[FieldViolation("house.metadata", "at most 16 KiB serialised")],
        )


def check_terms(
    terms: Mapping[str, Any], *, state: HouseState, draw_delay: datetime.timedelta
) -> None:
    """The merged terms are coherent (and complete once published). The draw cannot happen
    before the beacon round fixed at sales close + `draw_delay`, so draw_time may not either."""
    price = terms["ticket_price_minor"]
    total = terms["total_tickets"]
    if price is not None and price <= 0:
        raise _terms_invalid("ticket_price", "must be greater than zero")
    if terms["min_participation"] > total:
        raise _terms_invalid("min_participation", "must not exceed total_tickets")
    if total and terms["max_tickets_per_order"] > total:
        raise _terms_invalid("max_tickets_per_order", "must not exceed total_tickets")
    if total and terms["max_tickets_per_user"] > total:
        raise _terms_invalid("max_tickets_per_user", "must not exceed total_tickets")
    order_cap, user_cap = terms["max_tickets_per_order"], terms["max_tickets_per_user"]
    if order_cap and user_cap and order_cap > user_cap:
        raise _terms_invalid("max_tickets_per_order", "must not exceed max_tickets_per_user")
    opens, closes, draws = terms["sales_open_time"], terms["sales_close_time"], terms["draw_time"]
    if opens is not None and closes is not None and opens >= closes:
        raise _terms_invalid("sales_close_time", "must be after sales_open_time")
    if closes is not None and draws is not None and closes >= draws:
        raise _terms_invalid("draw_time", "must be after sales_close_time")
    if closes is not None and draws is not None and closes + draw_delay > draws:
        raise _terms_invalid(
            "draw_time",
            f"must be at least {draw_delay.total_seconds():g} s after sales_close_time (the "
            "beacon delay)",
        )
    if opens is not None and draws is not None and opens >= draws:
        raise _terms_invalid("draw_time", "must be after sales_open_time")
    if state is not HouseState.DRAFT:
        missing = missing_terms(terms)
        if missing:
            raise _terms_invalid(missing[0], "required once the house is published")


def missing_terms(terms: Mapping[str, Any]) -> list[str]:
    missing = []
    if terms["ticket_price_minor"] is None:
        missing.append("ticket_price")
    if not terms["total_tickets"]:
        missing.append("total_tickets")
    for name in ("sales_open_time", "sales_close_time", "draw_time"):
        if terms[name] is None:
            missing.append(name)
    return missing


def _terms_of(house: House | None) -> dict[str, Any]:
    if house is None:
        return {
            "ticket_price_minor": None,
            "currency": None,
            "total_tickets": 0,
            "min_participation": 0,
            "max_tickets_per_order": 0,
            "max_tickets_per_user": 0,
            "sales_open_time": None,
            "sales_close_time": None,
            "draw_time": None,
        }
    return {column: getattr(house, column) for column in TERM_COLUMNS}


def _snapshot(values: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-safe copy of column values for the audit trail."""
    return {
        key.rstrip("_"): value.isoformat() if isinstance(value, datetime.datetime) else value
        for key, value in values.items()
    }


def request_digest(values: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(
        json.dumps(_snapshot(values), sort_keys=True, default=str).encode()
    ).digest()


async def _load(session: AsyncSession, house_id: uuid.UUID, *, lock: bool = False) -> House:
    query = (
        select(House)
        .options(selectinload(House.images))
        .where(House.id == house_id, House.delete_time.is_(None))
        .execution_options(populate_existing=True)
    )
    if lock:
        query = query.with_for_update(of=House)
    house = await session.scalar(query)
    if house is None:
        raise house_not_found()
    return house


async def create_house(
    session: AsyncSession,
    *,
    values: Mapping[str, Any],
    request_id: uuid.UUID | None,
    actor: Principal,
    signer: DrawSigner,
) -> House:
    """A new DRAFT house from the given column values. With a `request_id`, a retry (even a
    concurrent one) returns the house the first call created."""
    check_metadata(values)
    terms = _terms_of(None) | {k: v for k, v in values.items() if k in TERM_COLUMNS}
    check_terms(terms, state=HouseState.DRAFT, draw_delay=signer.config.delay)
    digest = request_digest(values)
    house_id = await session.scalar(
        insert(House)
        .values(**values, create_request_id=request_id, create_request_digest=digest)
        .on_conflict_do_nothing(index_elements=[House.create_request_id])
        .returning(House.id)
    )
    if house_id is None:
        return await _first_created(session, request_id=request_id, digest=digest)
    await record_audit(
        session,
        actor=actor,
        action="lottery.house.create",
        resource_name=f"houses/{house_id}",
        after=_snapshot({k: v for k, v in values.items() if k != "location"}),
    )
    return await _load(session, house_id)


async def _first_created(
    session: AsyncSession, *, request_id: uuid.UUID | None, digest: bytes
) -> House:
    first = await session.scalar(
        select(House)
        .options(selectinload(House.images))
        .where(House.create_request_id == request_id)
    )
    assert first is not None  # the conflicting row is committed, so it is visible now
    if first.create_request_digest != digest:
        raise InvalidArgument(
            "REQUEST_ID_REUSED",
            "request_id was already used with different parameters",
            violations=[FieldViolation("request_id", "already used with other parameters")],
        )
    return first


def normalise_mask(paths: Iterable[str]) -> frozenset[str]:
    """The writable paths a mask names: `*` is everything, `lottery_terms` all its sub-fields,
    output-only fields are dropped; anything else is UPDATE_MASK_INVALID."""
    writable: set[str] = set()
    for path in paths:
        if path == "*":
            writable.update(LISTING_PATHS, TERMS_PATHS)
        elif path == "lottery_terms":
            writable.update(TERMS_PATHS)
        elif path in LISTING_PATHS or path in TERMS_PATHS:
            writable.add(path)
        elif path not in OUTPUT_ONLY_PATHS:
            raise InvalidArgument(
                "UPDATE_MASK_INVALID",
                f"update_mask names an unknown field {path!r}",
                violations=[FieldViolation("update_mask", f"unknown field {path!r}")],
            )
    return frozenset(writable)


async def update_house(
    session: AsyncSession,
    *,
    house_id: uuid.UUID,
    paths: frozenset[str],
    values: Mapping[str, Any],
    actor: Principal,
    signer: DrawSigner,
) -> House:
    """Applies `values` (the columns of `paths`); terms only while no ticket can exist."""
    house = await _load(session, house_id, lock=True)
    touches_terms = bool(paths & set(TERMS_PATHS))
    if touches_terms and house.state not in TERMS_EDITABLE_STATES:
        raise FailedPrecondition(
            "LOTTERY_TERMS_FROZEN",
            f"lottery terms are frozen once sales opened (state {house.state.value})",
            metadata={"state": house.state.value, "subject": "lottery_terms"},
        )
    check_metadata(values)
    terms = _terms_of(house) | {k: v for k, v in values.items() if k in TERM_COLUMNS}
    check_terms(terms, state=house.state, draw_delay=signer.config.delay)
    if touches_terms and house.state is HouseState.UPCOMING:
        await draws.reissue_manifest(
            session,
            signer,
            house_id=house_id,
            total_tickets=terms["total_tickets"],
            sales_close_time=terms["sales_close_time"],
            now=utcnow(),
        )
    before = {key: getattr(house, key) for key in values if key != "location"}
    if values:
        await session.execute(update(House).where(House.id == house_id).values(**values))
    await record_audit(
        session,
        actor=actor,
        action="lottery.house.update",
        resource_name=f"houses/{house_id}",
        before=_snapshot(before),
        after=_snapshot({k: v for k, v in values.items() if k != "location"}),
    )
    return await _load(session, house_id)


async def delete_house(session: AsyncSession, *, house_id: uuid.UUID, actor: Principal) -> None:
    deleted = await session.scalar(
        update(House)
        .where(
            House.id == house_id,
            House.delete_time.is_(None),
            House.state.in_(list(DELETABLE_STATES)),
        )
        .values(delete_time=func.now())
        .returning(House.state)
    )
    if deleted is None:
        state = await session.scalar(
            select(House.state).where(House.id == house_id, House.delete_time.is_(None))
        )
        if state is None:
            raise house_not_found()
        raise FailedPrecondition(
            "HOUSE_NOT_DELETABLE",
            f"only DRAFT or CANCELLED houses can be deleted (state {state.value})",
            metadata={"state": state.value, "subject": "state"},
        )
    await record_audit(
        session,
        actor=actor,
        action="lottery.house.delete",
        resource_name=f"houses/{house_id}",
        before={"state": deleted.value},
        after={"deleted": True},
    )


def missing_for_publish(house: House) -> list[str]:
    """What PublishHouse requires that the house lacks (HOUSE_INCOMPLETE)."""
    missing = [
        name
        for name, present in (
            ("title", bool(house.title)),
            ("description", bool(house.description)),
            ("country_code", bool(house.country_code)),
            ("city", bool(house.city)),
            ("location", house.location is not None),
            ("property_type", house.property_type is not None),
            ("images", bool(house.images)),
        )
        if not present
    ]
    return missing + [f"lottery_terms.{name}" for name in missing_terms(_terms_of(house))]


async def publish_house(
    session: AsyncSession, *, house_id: uuid.UUID, actor: Principal, signer: DrawSigner
) -> House:
    """DRAFT → UPCOMING (or ACTIVE when sales already opened), with the draw's signed manifest
    created in the same transaction."""
    house = await _load(session, house_id, lock=True)
    if house.state is not HouseState.DRAFT:
        # Let the state machine give its reason (HOUSE_NOT_DRAFT with the state).
        return await transition(
            session, house_id=house_id, event=Event.PUBLISH, target=HouseState.UPCOMING, actor=actor
        )
    missing = missing_for_publish(house)
    if missing:
        raise FailedPrecondition(
            "HOUSE_INCOMPLETE",
            "the house lacks what it needs to sell: " + ", ".join(missing),
            metadata={"missing": ",".join(missing), "subject": ",".join(missing)},
        )
    now = utcnow()
    assert house.sales_close_time is not None
    assert house.draw_time is not None
    assert house.sales_open_time is not None
    if house.sales_close_time <= now or house.draw_time <= now:
        raise FailedPrecondition(
            "SALES_WINDOW_IN_PAST",
            "sales_close_time or draw_time has already passed",
            metadata={"subject": "lottery_terms"},
        )
    target = HouseState.ACTIVE if house.sales_open_time <= now else HouseState.UPCOMING
    published = await transition(
        session,
        house_id=house_id,
        event=Event.PUBLISH,
        target=target,
        actor=actor,
        changes={"publish_time": now},
    )
    await draws.create_draw(session, signer, house=published, now=now)
    return published


async def cancel_house(
    session: AsyncSession, *, house_id: uuid.UUID, reason: str, actor: Principal
) -> House:
    """Cancels a published lottery and requests its refunds; a CANCELLED house is returned
    unchanged. DRAW_IN_PROGRESS while its winner is being recorded."""
    draw = await draws.lock_draw(session, house_id=house_id)  # the draw first: lock order
    house = await _load(session, house_id, lock=True)
    if house.state is HouseState.CANCELLED:
        return house
    return await draws.cancel_lottery(
        session, house_id=house_id, reason=reason, actor=actor, draw=draw, now=utcnow()
    )
