"""WatchHouse: the live events of a house, published on every replica over the EventBus.

Every event is a serialized `WatchHouseResponse` published on the topic `house:{uuid}`, always
AFTER the transaction that made the change committed (a subscriber that reads a snapshot on
`Resubscribed` must find the change; a rolled-back change is never announced). Who publishes:
  - PublishHouse → `state_changed`; CancelHouse → `cancelled` (LotteryServicer);
  - whoever commits `tickets.issue_tickets` (the purchase path) → `tickets_issued` (sales
    progress, and SOLD_OUT when that issuance sold the last ticket); whoever commits
    `reserve_tickets` / `release_reservation` → `sales_progress`;
  - the scheduler and the draw (opening/closing sales, freezing the entry log, the beacon, the
    winner) → `state_changed`, `entry_log_frozen`, `beacon_received`, `winner_drawn`.
Delivery is at most once; a publishing failure is logged and the committed change stands (a
watcher that reconnects gets a fresh snapshot).

`watch_house` is the stream: it subscribes first, then reads the snapshot (so nothing published
in between is missed), then forwards every event, a heartbeat after each idle period, and ends:
  - with OK after `winner_drawn` or `cancelled` (or right after the snapshot of a house that is
    already DRAWN or CANCELLED: nothing more can happen to it);
  - ABORTED WATCH_LAGGED when the client fell a whole queue behind (the bus cut it off, so it
    never slows the shared reader or other streams);
  - UNAVAILABLE DRAINING when the server shuts down.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, Sequence
from typing import Final

from amesa.lottery.v1 import lottery_service_pb2 as pb
from server.core.db import Database
from server.core.errors import Aborted
from server.core.events import EventBus, Resubscribed, SubscriberLagged, next_event
from server.lottery import catalogue, draws, mapping
from server.lottery.lifecycle import utcnow
from server.lottery.models import House, HouseState, SignedTreeHead

log = logging.getLogger("amesa.lottery.events")

# After a snapshot of a house in one of these states no event can follow.
_FINAL_STATES: Final = frozenset({HouseState.DRAWN, HouseState.CANCELLED})


def topic(house_id: uuid.UUID) -> str:
    return f"house:{house_id}"


# --- Publishing (after commit) -------------------------------------------------------------------


async def _publish(events: EventBus, house_id: uuid.UUID, message: pb.WatchHouseResponse) -> None:
    message.event_time.FromDatetime(utcnow())
    try:
        await events.publish(topic(house_id), message.SerializeToString())
    except Exception as error:
        log.warning("could not publish a %s event: %s", message.WhichOneof("event"), error)


def _progress(house: House) -> pb.SalesProgressEvent:
    return pb.SalesProgressEvent(
        tickets_sold=house.tickets_sold,
        tickets_remaining=max(house.total_tickets - house.tickets_sold - house.tickets_reserved, 0),
        total_tickets=house.total_tickets,
    )


async def sales_progress(events: EventBus, house: House) -> None:
    """The house's counters (as committed) after tickets were reserved, issued or released."""
    await _publish(events, house.id, pb.WatchHouseResponse(sales_progress=_progress(house)))


async def state_changed(events: EventBus, house: House, *, previous: HouseState) -> None:
    """A lifecycle transition to `house.state` (CANCELLED is `cancelled` instead)."""
    event = pb.HouseStateChangedEvent(
        previous_state=mapping.state_to_proto(previous), state=mapping.state_to_proto(house.state)
    )
    await _publish(events, house.id, pb.WatchHouseResponse(state_changed=event))


async def tickets_issued(events: EventBus, house: House, *, sold_out: bool) -> None:
    """After a committed `issue_tickets`: sales progress, then ACTIVE → SOLD_OUT when this
    issuance sold the last ticket (its last number is `total_tickets`)."""
    await sales_progress(events, house)
    if sold_out:
        await _publish(
            events,
            house.id,
            pb.WatchHouseResponse(
                state_changed=pb.HouseStateChangedEvent(
                    previous_state=pb.HOUSE_STATE_ACTIVE, state=pb.HOUSE_STATE_SOLD_OUT
                )
            ),
        )


async def entry_log_frozen(events: EventBus, house: House, *, tree_head: SignedTreeHead) -> None:
    """Sales closed and the entry log was frozen at `tree_head`."""
    event = pb.EntryLogFrozenEvent(tree_head=mapping.tree_head_to_proto(tree_head))
    await _publish(events, house.id, pb.WatchHouseResponse(entry_log_frozen=event))


async def beacon_received(events: EventBus, house: House, *, beacon: pb.DrawBeacon) -> None:
    """The target beacon round arrived and verified."""
    event = pb.BeaconReceivedEvent(beacon=beacon)
    await _publish(events, house.id, pb.WatchHouseResponse(beacon_received=event))


async def winner_drawn(events: EventBus, house: House, *, winners: Sequence[pb.DrawWinner]) -> None:
    """The draw completed; the last event of every stream of the house."""
    event = pb.WinnerDrawnEvent(draw=f"{mapping.house_name(house.id)}/draw", winners=winners)
    await _publish(events, house.id, pb.WatchHouseResponse(winner_drawn=event))


async def cancelled(events: EventBus, house: House) -> None:
    """The lottery was cancelled; the last event of every stream of the house."""
    event = pb.HouseCancelledEvent(reason=house.cancel_reason or "")
    await _publish(events, house.id, pb.WatchHouseResponse(cancelled=event))


# --- The stream ----------------------------------------------------------------------------------


def _lagged() -> Aborted:
    return Aborted(
        "WATCH_LAGGED", "the stream fell too far behind and was closed; reconnect for a snapshot"
    )


async def _snapshot(
    database: Database, *, house_id: uuid.UUID, admin: bool, media_base_url: str
) -> tuple[pb.WatchHouseResponse, HouseState]:
    """The house as GetHouse returns it to this caller; HOUSE_NOT_FOUND as GetHouse decides."""
    async with database.session(system=True) as session:
        house = await catalogue.get_house(session, house_id=house_id, admin=admin)
        message = pb.WatchHouseResponse(
            snapshot=pb.HouseSnapshot(
                house=mapping.house_to_proto(
                    house, images=list(house.images), media_base_url=media_base_url
                )
            )
        )
        draw = await draws.find_draw(session, house_id=house_id)
        if draw is not None:
            message.snapshot.draw.CopyFrom(mapping.draw_to_proto(draw))
        state = house.state
    message.event_time.FromDatetime(utcnow())
    return message, state


async def watch_house(
    *,
    database: Database,
    events: EventBus,
    shutting_down: asyncio.Event,
    house_id: uuid.UUID,
    admin: bool,
    media_base_url: str,
    heartbeat_seconds: float,
) -> AsyncGenerator[pb.WatchHouseResponse]:
    async with events.subscribe(topic(house_id)) as subscription:
        snapshot, state = await _snapshot(
            database, house_id=house_id, admin=admin, media_base_url=media_base_url
        )
        yield snapshot
        if state in _FINAL_STATES:
            return
        loop = asyncio.get_running_loop()
        idle_until = loop.time() + heartbeat_seconds
        while True:
            try:
                event = await next_event(
                    subscription, shutting_down, max(0.0, idle_until - loop.time())
                )
            except SubscriberLagged as error:
                raise _lagged() from error
            idle_until = loop.time() + heartbeat_seconds
            if event is None:
                heartbeat = pb.WatchHouseResponse(heartbeat=pb.HeartbeatEvent())
                heartbeat.event_time.FromDatetime(utcnow())
                yield heartbeat
            elif isinstance(event, Resubscribed):  # events may have been missed: start over
                snapshot, state = await _snapshot(
                    database, house_id=house_id, admin=admin, media_base_url=media_base_url
                )
                yield snapshot
                if state in _FINAL_STATES:
                    return
            else:
                message = pb.WatchHouseResponse.FromString(event)
                yield message
                if message.WhichOneof("event") in ("winner_drawn", "cancelled"):
                    return
