"""The lottery state machine of a house.

    DRAFT ─publish→ UPCOMING ─open_sales→ ACTIVE ─sell_out→ SOLD_OUT ─record_draw→ DRAWN
      └──publish (sales already open)──→ ACTIVE ─close_sales→ CLOSED ─record_draw→ DRAWN
    UPCOMING, ACTIVE, SOLD_OUT, CLOSED ─cancel→ CANCELLED

`transition` is the only code that changes `houses.state`. It checks the event against the
graph, then applies it with a conditional UPDATE (`… WHERE state = :from`), so of two racing
callers exactly one moves the house; the other is refused with the reason its event has for the
state the winner left. Every transition writes an audit row in the same transaction.
"""

from __future__ import annotations

import datetime
import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from server.core.audit import record_audit
from server.core.context import Principal
from server.core.errors import FailedPrecondition
from server.lottery.catalogue import house_not_found
from server.lottery.models import House, HouseState

S = HouseState

# The whole graph: every state and where it may go.
ALLOWED: Mapping[HouseState, frozenset[HouseState]] = {
    S.DRAFT: frozenset({S.UPCOMING, S.ACTIVE}),
    S.UPCOMING: frozenset({S.ACTIVE, S.CANCELLED}),
    S.ACTIVE: frozenset({S.SOLD_OUT, S.CLOSED, S.CANCELLED}),
    S.SOLD_OUT: frozenset({S.DRAWN, S.CANCELLED}),
    S.CLOSED: frozenset({S.DRAWN, S.CANCELLED}),
    S.DRAWN: frozenset(),
    S.CANCELLED: frozenset(),
}


class Event(enum.StrEnum):
    PUBLISH = "publish"
    OPEN_SALES = "open_sales"
    SELL_OUT = "sell_out"
    CLOSE_SALES = "close_sales"
    RECORD_DRAW = "record_draw"
    CANCEL = "cancel"


@dataclass(frozen=True)
class Rule:
    sources: frozenset[HouseState]
    targets: frozenset[HouseState]
    # The FAILED_PRECONDITION reason when the house is in any other state.
    refusal: str


RULES: Mapping[Event, Rule] = {
    Event.PUBLISH: Rule(frozenset({S.DRAFT}), frozenset({S.UPCOMING, S.ACTIVE}), "HOUSE_NOT_DRAFT"),
    Event.OPEN_SALES: Rule(frozenset({S.UPCOMING}), frozenset({S.ACTIVE}), "HOUSE_NOT_UPCOMING"),
    Event.SELL_OUT: Rule(frozenset({S.ACTIVE}), frozenset({S.SOLD_OUT}), "SALES_NOT_OPEN"),
    Event.CLOSE_SALES: Rule(frozenset({S.ACTIVE}), frozenset({S.CLOSED}), "SALES_NOT_OPEN"),
    Event.RECORD_DRAW: Rule(
        frozenset({S.SOLD_OUT, S.CLOSED}), frozenset({S.DRAWN}), "SALES_NOT_CLOSED"
    ),
    Event.CANCEL: Rule(
        frozenset({S.UPCOMING, S.ACTIVE, S.SOLD_OUT, S.CLOSED}),
        frozenset({S.CANCELLED}),
        "HOUSE_NOT_CANCELLABLE",
    ),
}

# Every rule stays inside the graph (checked at import, so an edit cannot drift).
for _event, _rule in RULES.items():
    for _source in _rule.sources:
        assert _rule.targets <= ALLOWED[_source], (_event, _source)


def refusal(event: Event, state: HouseState, target: HouseState) -> FailedPrecondition | None:
    """Why `event` cannot move a house from `state` to `target`, or None if it can."""
    rule = RULES[event]
    if state in rule.sources and target in rule.targets and target in ALLOWED[state]:
        return None
    return FailedPrecondition(
        rule.refusal,
        f"cannot {event.value.replace('_', ' ')} a house in state {state.value}",
        metadata={"state": state.value, "subject": "state"},
    )


async def transition(
    session: AsyncSession,
    *,
    house_id: uuid.UUID,
    event: Event,
    target: HouseState,
    actor: Principal | None,
    changes: Mapping[str, Any] | None = None,
    audit: Mapping[str, Any] | None = None,
) -> House:
    """Moves the house to `target` by `event`, setting `changes` (other columns) at the same
    time; refuses with the event's reason if the house is not in one of its source states."""
    current = await session.scalar(
        select(House.state).where(House.id == house_id, House.delete_time.is_(None))
    )
    if current is None:
        raise house_not_found()
    error = refusal(event, current, target)
    if error is not None:
        raise error
    moved = await session.scalar(
        update(House)
        .where(House.id == house_id, House.state == current, House.delete_time.is_(None))
        .values(state=target, **dict(changes or {}))
        .returning(House.id)
    )
    if moved is None:
        # Another transaction moved (or deleted) it first; answer for the state it left.
        now_state = await session.scalar(
            select(House.state).where(House.id == house_id, House.delete_time.is_(None))
        )
        if now_state is None:
            raise house_not_found()
        error = refusal(event, now_state, target)
        raise error or FailedPrecondition(
            RULES[event].refusal, "the house changed state concurrently; retry"
        )
    await record_audit(
        session,
        actor=actor,
        action=f"lottery.house.{event.value}",
        resource_name=f"houses/{house_id}",
        before={"state": current.value},
        after={"state": target.value, **dict(audit or {})},
    )
    house = await session.scalar(
        select(House)
        .options(selectinload(House.images))
        .where(House.id == house_id)
        .execution_options(populate_existing=True)
    )
    assert house is not None
    return house


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
