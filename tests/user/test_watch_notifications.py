"""UserService.WatchNotifications: the unread count, then live events from any replica."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import grpc
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.user.v1 import user_service_pb2 as pb
from amesa.user.v1 import user_service_pb2_grpc
from server.app import App
from server.core.settings import Settings
from tests.notify.support import add_notifications, dispatch_lease, dispatcher, enqueue
from tests.support import failure, separate_server
from tests.user.conftest import Account

WATCH = pb.WatchNotificationsRequest(parent="users/me")


async def read(call: Any, seconds: float = 5.0) -> pb.WatchNotificationsResponse:
    message = await asyncio.wait_for(call.read(), seconds)
    assert isinstance(message, pb.WatchNotificationsResponse)
    return message


async def error_of(call: Any, seconds: float = 5.0) -> grpc.aio.AioRpcError:
    """The status the stream ends with (reading past any messages still queued)."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                await call.read()
    except grpc.aio.AioRpcError as error:
        return error


@asynccontextmanager
async def tuned_stub(
    settings: Settings, **notify: Any
) -> AsyncIterator[user_service_pb2_grpc.UserServiceAsyncStub]:
    """A separate server whose notification settings differ (e.g. a short heartbeat)."""
    tuned = replace(settings, notify=replace(settings.notify, **notify))
    async with (
        separate_server(tuned) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield user_service_pb2_grpc.UserServiceStub(channel)


@pytest_asyncio.fixture(loop_scope="session")
async def second(settings: Settings) -> AsyncIterator[App]:
    """Another replica: its own EventBus connection to Redis, its own database pool."""
    async with separate_server(settings) as app:
        yield app


@pytest_asyncio.fixture(loop_scope="session")
async def second_stub(second: App) -> AsyncIterator[user_service_pb2_grpc.UserServiceAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as channel:
        yield user_service_pb2_grpc.UserServiceStub(channel)


async def test_first_message_is_the_unread_count(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, owner_engine: AsyncEngine, alice: Account
) -> None:
    await add_notifications(owner_engine, alice.id, 2)
    await add_notifications(owner_engine, alice.id, 1, read=True)

    call = stub.WatchNotifications(WATCH, metadata=alice.metadata)
    first = await read(call)
    call.cancel()

    assert first == pb.WatchNotificationsResponse(unread_count=2)


async def test_notification_delivered_on_one_replica_reaches_a_stream_on_another(
    app: App,
    owner_engine: AsyncEngine,
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    second_stub: user_service_pb2_grpc.UserServiceAsyncStub,
    alice: Account,
) -> None:
    call = second_stub.WatchNotifications(WATCH, metadata=alice.metadata)
    assert (await read(call)).unread_count == 0

    async with dispatch_lease(owner_engine):
        await enqueue(
            app,
            topic="notify.security_alert",
            payload={"alert": "password_changed"},
            user_id=alice.id,
        )
        await dispatcher(app).run()  # the first replica's dispatcher and EventBus
    event = await read(call)
    listed = await stub.ListNotifications(
        pb.ListNotificationsRequest(parent="users/me"), metadata=alice.metadata
    )
    await stub.MarkNotificationsRead(
        pb.MarkNotificationsReadRequest(parent="users/me", all=True), metadata=alice.metadata
    )
    read_event = await read(call)
    call.cancel()

    assert event.unread_count == 1
    assert event.notification == listed.notifications[0]
    assert event.notification.kind == "security.password_changed"
    assert read_event.unread_count == 0
    assert read_event.notification.name == event.notification.name
    assert read_event.notification.HasField("read_time")


async def test_idle_stream_gets_heartbeats_and_ends_when_the_session_is_revoked(
    settings: Settings, owner_engine: AsyncEngine, alice: Account
) -> None:
    await add_notifications(owner_engine, alice.id, 1)
    async with tuned_stub(settings, heartbeat_seconds=0.3) as stub:
        call = stub.WatchNotifications(WATCH, metadata=alice.metadata)
        await read(call)

        heartbeat = await read(call, seconds=2)
        async with owner_engine.begin() as connection:
            await connection.execute(
                text(
                    "UPDATE sessions SET revoke_time = now(), revoke_reason = 'USER_REVOKED' "
                    "WHERE id = :id"
                ),
                {"id": alice.session_id},
            )
        error = failure(await error_of(call, seconds=2))

    assert heartbeat == pb.WatchNotificationsResponse(unread_count=1)
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "SESSION_REVOKED")


async def test_stream_ends_with_draining_when_the_server_shuts_down(
    settings: Settings, alice: Account
) -> None:
    async with (
        separate_server(settings) as replica,
        grpc.aio.insecure_channel(f"127.0.0.1:{replica.port}") as channel,
    ):
        call = user_service_pb2_grpc.UserServiceStub(channel).WatchNotifications(
            WATCH, metadata=alice.metadata
        )
        await read(call)
        stopping = asyncio.create_task(replica.stop(grace=1))
        error = failure(await error_of(call))
        await stopping

    assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, "DRAINING")


async def test_streams_per_user_are_capped_and_a_closed_one_frees_its_slot(
    settings: Settings, alice: Account
) -> None:
    async with tuned_stub(settings, max_streams_per_user=1) as stub:
        first = stub.WatchNotifications(WATCH, metadata=alice.metadata)
        await read(first)

        refused = stub.WatchNotifications(WATCH, metadata=alice.metadata)
        error = failure(await error_of(refused))
        first.cancel()  # the client goes away
        await asyncio.sleep(0.2)
        again = stub.WatchNotifications(WATCH, metadata=alice.metadata)
        reopened = await read(again)
        again.cancel()

    assert (error.code, error.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_STREAMS")
    assert reopened.unread_count == 0


async def test_watching_another_users_notifications_is_permission_denied(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, bob: Account
) -> None:
    call = stub.WatchNotifications(
        pb.WatchNotificationsRequest(parent=bob.name), metadata=alice.metadata
    )

    error = failure(await error_of(call))

    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")


async def test_another_users_events_do_not_reach_the_stream(
    app: App,
    owner_engine: AsyncEngine,
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    alice: Account,
    bob: Account,
) -> None:
    call = stub.WatchNotifications(WATCH, metadata=alice.metadata)
    await read(call)

    async with dispatch_lease(owner_engine):
        await enqueue(app, topic="notify.security_alert", payload={"alert": "x"}, user_id=bob.id)
        await dispatcher(app).run()
    with pytest.raises(TimeoutError):
        await read(call, seconds=0.5)
    call.cancel()
