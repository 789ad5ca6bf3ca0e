"""The house state machine (server/lottery/lifecycle.py) against the real database: every legal
transition applies and is audited; every illegal one is refused with its event's reason, for
the events the RPCs reach (publish, cancel) and those the scheduler and draw will use."""

from __future__ import annotations

import datetime
import uuid

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.app import App
from server.core.errors import FailedPrecondition
from server.core.models import AuditLog
from server.lottery.lifecycle import ALLOWED, RULES, Event, transition
from server.lottery.models import House, HouseState

ILLEGAL = [
    (event, state, target)
    for event, rule in RULES.items()
    for state in HouseState
    if state not in rule.sources
    for target in sorted(rule.targets)
]
LEGAL = [
    (event, state, target)
    for event, rule in RULES.items()
    for state in sorted(rule.sources)
    for target in sorted(rule.targets)
]


async def house_in(owner_engine: AsyncEngine, state: HouseState) -> uuid.UUID:
    opens = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    cancelled = state is HouseState.CANCELLED
    async with owner_engine.begin() as connection:
        house_id = await connection.scalar(
            insert(House)
            .values(
                title=f"Lifecycle {uuid.uuid4().hex[:8]}",
                state=state,
                ticket_price_minor=100,
                currency="EUR",
                total_tickets=10,
                sales_open_time=opens,
                sales_close_time=opens + datetime.timedelta(days=1),
                draw_time=opens + datetime.timedelta(days=2),
                cancel_time=opens if cancelled else None,
                cancel_reason="r" if cancelled else None,
            )
            .returning(House.id)
        )
    assert isinstance(house_id, uuid.UUID)
    return house_id


def test_the_rules_stay_inside_the_graph() -> None:
    for rule in RULES.values():
        for source in rule.sources:
            assert rule.targets <= ALLOWED[source]
    assert ALLOWED[HouseState.DRAWN] == frozenset()
    assert ALLOWED[HouseState.CANCELLED] == frozenset()


@pytest.mark.parametrize(("event", "state", "target"), ILLEGAL)
async def test_an_illegal_transition_is_refused_with_its_reason(
    app: App, owner_engine: AsyncEngine, event: Event, state: HouseState, target: HouseState
) -> None:
    house_id = await house_in(owner_engine, state)

    with pytest.raises(FailedPrecondition) as raised:
        async with app.database.session(system=True) as session:
            await transition(session, house_id=house_id, event=event, target=target, actor=None)

    assert raised.value.reason == RULES[event].refusal
    assert raised.value.metadata["state"] == state.value
    async with owner_engine.connect() as connection:
        assert await connection.scalar(select(House.state).where(House.id == house_id)) == state


@pytest.mark.parametrize(("event", "state", "target"), LEGAL)
async def test_a_legal_transition_applies_and_is_audited(
    app: App, owner_engine: AsyncEngine, event: Event, state: HouseState, target: HouseState
) -> None:
    house_id = await house_in(owner_engine, state)
    changes = (
        {"cancel_time": datetime.datetime.now(datetime.UTC), "cancel_reason": "r"}
        if target is HouseState.CANCELLED
        else {}
    )

    async with app.database.session(system=True) as session:
        house = await transition(
            session, house_id=house_id, event=event, target=target, actor=None, changes=changes
        )

    assert house.state is target
    async with owner_engine.connect() as connection:
        audit = (
            await connection.execute(
                select(AuditLog.action, AuditLog.before, AuditLog.after, AuditLog.actor_kind).where(
                    AuditLog.resource_name == f"houses/{house_id}"
                )
            )
        ).one()
    assert audit.action == f"lottery.house.{event.value}"
    assert audit.before == {"state": state.value}
    assert audit.after["state"] == target.value
    assert audit.actor_kind == "SYSTEM"
