"""LotteryService.WatchHouse: a snapshot, then every event of the house from any replica."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import grpc
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from amesa.lottery.v1 import lottery_service_pb2_grpc
from server.app import App, build_server
from server.core.errors import Aborted
from server.core.events import EventBus, SubscriberLagged
from server.core.settings import Settings
from server.lottery import house_events
from server.lottery.models import House
from tests.lottery.conftest import (
    Callers,
    active_house,
    add_image,
    buy_tickets,
    create_house,
    new_user,
)
from tests.support import failure, separate_server


def watch(name: str) -> pb.WatchHouseRequest:
    return pb.WatchHouseRequest(name=name)


async def read(call: Any, seconds: float = 5.0) -> pb.WatchHouseResponse:
    message = await asyncio.wait_for(call.read(), seconds)
    assert isinstance(message, pb.WatchHouseResponse), message
    return message


async def error_of(call: Any, seconds: float = 5.0) -> grpc.aio.AioRpcError:
    """The status the stream ends with (reading past any messages still queued)."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                await call.read()
    except grpc.aio.AioRpcError as error:
        return error


async def load_house(app: App, house_name: str) -> House:
    async with app.deps.database.session(system=True) as session:
        house = await session.get(House, uuid.UUID(house_name.split("/")[1]))
    assert house is not None
    return house


async def buy_and_announce(
    app: App, owner_engine: AsyncEngine, *, house: str, quantity: int
) -> None:
    """The purchase path: issue tickets, then (after commit) publish what changed."""
    user_id, _ = await new_user(app, owner_engine)
    issued = await buy_tickets(app, owner_engine, house=house, user_id=user_id, quantity=quantity)
    row = await load_house(app, house)
    sold_out = issued[-1].number == row.total_tickets
    await house_events.tickets_issued(app.deps.events, row, sold_out=sold_out)


async def subscribers(app: App, house_name: str) -> int:
    """Redis-side subscribers of the house's topic, over every replica."""
    channel = f"amesa:ev:{house_events.topic(uuid.UUID(house_name.split('/')[1]))}"
    counts = await app.redis.pubsub_numsub(channel)
    return int(counts[0][1])


@asynccontextmanager
async def stub_of(app: App) -> AsyncIterator[lottery_service_pb2_grpc.LotteryServiceAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        yield lottery_service_pb2_grpc.LotteryServiceStub(channel)


@pytest_asyncio.fixture(loop_scope="session")
async def second(settings: Settings) -> AsyncIterator[App]:
    """Another replica: its own EventBus connection to Redis, its own database pool."""
    async with separate_server(settings) as app:
        yield app


async def test_first_message_is_a_snapshot_of_state_and_sales(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    user_id, _ = await new_user(app, owner_engine)
    await buy_tickets(app, owner_engine, house=house.name, user_id=user_id, quantity=3)

    call = callers.stub.WatchHouse(watch(house.name))  # anonymous
    first = await read(call)
    call.cancel()

    assert first.WhichOneof("event") == "snapshot"
    assert first.HasField("event_time")
    snapshot = first.snapshot.house
    assert snapshot.name == house.name
    assert snapshot.state == pb.HOUSE_STATE_ACTIVE
    assert (snapshot.tickets_sold, snapshot.tickets_remaining) == (3, 7)


async def test_sales_on_one_replica_reach_a_stream_on_another(
    app: App, second: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=5)
    async with stub_of(second) as stub:
        call = stub.WatchHouse(watch(house.name))
        assert (await read(call)).WhichOneof("event") == "snapshot"

        await buy_and_announce(app, owner_engine, house=house.name, quantity=2)
        progress = await read(call)
        await buy_and_announce(app, owner_engine, house=house.name, quantity=3)
        last_progress = await read(call)
        sold_out = await read(call)
        call.cancel()

    assert progress.sales_progress == pb.SalesProgressEvent(
        tickets_sold=2, tickets_remaining=3, total_tickets=5
    )
    assert last_progress.sales_progress == pb.SalesProgressEvent(
        tickets_sold=5, tickets_remaining=0, total_tickets=5
    )
    assert sold_out.state_changed == pb.HouseStateChangedEvent(
        previous_state=pb.HOUSE_STATE_ACTIVE, state=pb.HOUSE_STATE_SOLD_OUT
    )


async def test_cancellation_reaches_an_open_stream_and_ends_it_with_ok(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    call = callers.stub.WatchHouse(watch(house.name), metadata=callers.user)
    assert (await read(call)).WhichOneof("event") == "snapshot"

    await callers.stub.CancelHouse(
        pb.CancelHouseRequest(name=house.name, reason="The owner withdrew the property"),
        metadata=callers.admin,
    )
    event = await read(call)

    assert event.cancelled == pb.HouseCancelledEvent(reason="The owner withdrew the property")
    assert await asyncio.wait_for(call.read(), 5) == grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_a_cancelled_house_ends_the_stream_after_its_snapshot(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    await callers.stub.CancelHouse(
        pb.CancelHouseRequest(name=house.name, reason="Withdrawn"), metadata=callers.admin
    )

    call = callers.stub.WatchHouse(watch(house.name))
    first = await read(call)

    assert first.snapshot.house.state == pb.HOUSE_STATE_CANCELLED
    assert await asyncio.wait_for(call.read(), 5) == grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_draft_house_is_not_found_for_an_anonymous_watcher(callers: Callers) -> None:
    draft = await create_house(callers)

    error = await error_of(callers.stub.WatchHouse(watch(draft.name)))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert failure(error).reason == "HOUSE_NOT_FOUND"


async def test_unknown_house_is_not_found(callers: Callers) -> None:
    error = await error_of(callers.stub.WatchHouse(watch(f"houses/{uuid.uuid4()}")))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert failure(error).reason == "HOUSE_NOT_FOUND"


async def test_an_admin_watches_a_draft_house_being_published(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    draft = await create_house(callers)
    await add_image(owner_engine, draft.name)
    call = callers.stub.WatchHouse(watch(draft.name), metadata=callers.admin)
    first = await read(call)

    await callers.stub.PublishHouse(pb.PublishHouseRequest(name=draft.name), metadata=callers.admin)
    event = await read(call)
    call.cancel()

    assert first.snapshot.house.state == pb.HOUSE_STATE_DRAFT
    assert event.state_changed == pb.HouseStateChangedEvent(
        previous_state=pb.HOUSE_STATE_DRAFT, state=pb.HOUSE_STATE_UPCOMING
    )


async def test_idle_stream_receives_heartbeats(
    settings: Settings, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    tuned = replace(settings, notify=replace(settings.notify, heartbeat_seconds=0.2))
    async with separate_server(tuned) as replica, stub_of(replica) as stub:
        call = stub.WatchHouse(watch(house.name))
        first = await read(call)
        beats = [await read(call, 2), await read(call, 2)]
        call.cancel()

    assert first.WhichOneof("event") == "snapshot"
    assert [beat.WhichOneof("event") for beat in beats] == ["heartbeat", "heartbeat"]


async def test_slow_subscriber_is_cut_off_without_blocking_a_fast_one(app: App) -> None:
    bus = EventBus(app.redis, queue_size=3)
    topic = f"house:{uuid.uuid4()}"
    try:
        async with bus.subscribe(topic) as fast, bus.subscribe(topic) as slow:
            received: list[bytes] = []
            for number in range(8):
                await bus.publish(topic, b"%d" % number)
                item = await asyncio.wait_for(anext(fast), 5)  # the fast one keeps up
                assert isinstance(item, bytes)
                received.append(item)
            with pytest.raises(SubscriberLagged):
                await anext(slow)
    finally:
        await bus.close()

    assert received == [b"%d" % number for number in range(8)]


async def test_a_lagging_watcher_ends_with_watch_lagged(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    row = await load_house(app, house.name)
    bus = EventBus(app.redis, queue_size=2)
    stream = house_events.watch_house(
        database=app.deps.database,
        events=bus,
        shutting_down=asyncio.Event(),
        house_id=row.id,
        admin=False,
        media_base_url=app.settings.media_base_url,
        heartbeat_seconds=30,
    )
    try:
        assert (await anext(stream)).WhichOneof("event") == "snapshot"
        for _ in range(3):  # the stream reads nothing meanwhile: one more than its queue holds
            await house_events.sales_progress(app.deps.events, row)
        await asyncio.sleep(0.3)  # the bus's reader dispatches them
        with pytest.raises(Aborted) as raised:
            await anext(stream)
    finally:
        await stream.aclose()
        await bus.close()

    assert raised.value.reason == "WATCH_LAGGED"


async def test_shutdown_ends_streams_with_draining(
    settings: Settings, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    replica = build_server(replace(settings), address="127.0.0.1:0")
    await replica.start()
    stopped = False
    try:
        async with stub_of(replica) as stub:
            call = stub.WatchHouse(watch(house.name))
            assert (await read(call)).WhichOneof("event") == "snapshot"
            stopping = asyncio.create_task(replica.stop(grace=5))
            error = await error_of(call)
            await stopping
            stopped = True
    finally:
        if not stopped:
            await replica.stop(grace=0)

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert failure(error).reason == "DRAINING"


async def test_a_client_going_away_releases_its_subscription(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    call = callers.stub.WatchHouse(watch(house.name))
    await read(call)
    assert await subscribers(app, house.name) == 1

    call.cancel()

    for _ in range(100):  # the server notices the cancellation, then unsubscribes
        if await subscribers(app, house.name) == 0:
            break
        await asyncio.sleep(0.05)
    assert await subscribers(app, house.name) == 0
