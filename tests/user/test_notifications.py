"""UserService.ListNotifications and MarkNotificationsRead."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.user.v1 import user_service_pb2 as pb
from amesa.user.v1 import user_service_pb2_grpc
from tests.notify.support import add_notifications
from tests.support import failure
from tests.user.conftest import Account


async def test_list_is_newest_first_and_paginated(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, owner_engine: AsyncEngine, alice: Account
) -> None:
    ids = await add_notifications(owner_engine, alice.id, 3)

    first = await stub.ListNotifications(
        pb.ListNotificationsRequest(parent="users/me", page_size=2), metadata=alice.metadata
    )
    second = await stub.ListNotifications(
        pb.ListNotificationsRequest(
            parent="users/me", page_size=2, page_token=first.next_page_token
        ),
        metadata=alice.metadata,
    )

    names = [n.name for n in (*first.notifications, *second.notifications)]
    assert names == [f"{alice.name}/notifications/{i}" for i in reversed(ids)]
    assert first.total_size == 3
    assert second.next_page_token == ""
    newest = first.notifications[0]
    assert (newest.kind, newest.title, newest.body) == (
        "order.paid",
        "Receipt 2",
        "Order 2 is paid.",
    )
    assert newest.category == pb.NOTIFICATION_CATEGORY_PURCHASES
    assert not newest.HasField("read_time")


async def test_unread_only_lists_the_unread_ones(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, owner_engine: AsyncEngine, alice: Account
) -> None:
    await add_notifications(owner_engine, alice.id, 2, read=True)
    unread = await add_notifications(owner_engine, alice.id, 1)

    response = await stub.ListNotifications(
        pb.ListNotificationsRequest(parent="users/me", unread_only=True), metadata=alice.metadata
    )

    assert [n.name for n in response.notifications] == [f"{alice.name}/notifications/{unread[0]}"]
    assert response.total_size == 1


async def test_page_token_of_another_filter_is_invalid(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, owner_engine: AsyncEngine, alice: Account
) -> None:
    await add_notifications(owner_engine, alice.id, 2)
    first = await stub.ListNotifications(
        pb.ListNotificationsRequest(parent="users/me", page_size=1), metadata=alice.metadata
    )

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListNotifications(
            pb.ListNotificationsRequest(
                parent="users/me", page_size=1, unread_only=True, page_token=first.next_page_token
            ),
            metadata=alice.metadata,
        )

    assert failure(raised.value).reason == "PAGE_TOKEN_INVALID"


async def test_listing_another_users_notifications_is_permission_denied(
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    owner_engine: AsyncEngine,
    alice: Account,
    bob: Account,
) -> None:
    await add_notifications(owner_engine, bob.id, 1)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListNotifications(
            pb.ListNotificationsRequest(parent=bob.name), metadata=alice.metadata
        )

    error = failure(raised.value)
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")


async def test_admin_lists_anyones_notifications(
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    owner_engine: AsyncEngine,
    admin: Account,
    bob: Account,
) -> None:
    await add_notifications(owner_engine, bob.id, 2)

    response = await stub.ListNotifications(
        pb.ListNotificationsRequest(parent=bob.name), metadata=admin.metadata
    )

    assert response.total_size == 2


async def test_mark_named_notifications_read(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, owner_engine: AsyncEngine, alice: Account
) -> None:
    ids = await add_notifications(owner_engine, alice.id, 3)

    response = await stub.MarkNotificationsRead(
        pb.MarkNotificationsReadRequest(
            parent="users/me", names=[f"users/me/notifications/{ids[0]}"]
        ),
        metadata=alice.metadata,
    )
    again = await stub.MarkNotificationsRead(
        pb.MarkNotificationsReadRequest(
            parent="users/me", names=[f"users/me/notifications/{ids[0]}"]
        ),
        metadata=alice.metadata,
    )

    assert (response.marked_count, response.unread_count) == (1, 2)
    assert (again.marked_count, again.unread_count) == (0, 2)  # already read: left as it is
    listed = await stub.ListNotifications(
        pb.ListNotificationsRequest(parent="users/me"), metadata=alice.metadata
    )
    assert [n.HasField("read_time") for n in listed.notifications] == [False, False, True]


async def test_mark_all_read(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, owner_engine: AsyncEngine, alice: Account
) -> None:
    await add_notifications(owner_engine, alice.id, 3)

    response = await stub.MarkNotificationsRead(
        pb.MarkNotificationsReadRequest(parent="users/me", all=True), metadata=alice.metadata
    )

    assert (response.marked_count, response.unread_count) == (3, 0)


async def test_marking_another_users_notification_is_not_found_and_marks_nothing(
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    owner_engine: AsyncEngine,
    alice: Account,
    bob: Account,
) -> None:
    (own,) = await add_notifications(owner_engine, alice.id, 1)
    (foreign,) = await add_notifications(owner_engine, bob.id, 1)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.MarkNotificationsRead(
            pb.MarkNotificationsReadRequest(
                parent="users/me",
                names=[f"users/me/notifications/{own}", f"users/me/notifications/{foreign}"],
            ),
            metadata=alice.metadata,
        )

    error = failure(raised.value)
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "NOTIFICATION_NOT_FOUND")
    assert error.error_info.metadata["name"] == f"{alice.name}/notifications/{foreign}"
    unread = await stub.ListNotifications(
        pb.ListNotificationsRequest(parent="users/me", unread_only=True), metadata=alice.metadata
    )
    assert unread.total_size == 1  # all or nothing
    theirs = await stub.ListNotifications(
        pb.ListNotificationsRequest(parent="users/me", unread_only=True), metadata=bob.metadata
    )
    assert theirs.total_size == 1


async def test_marking_under_another_user_is_permission_denied(
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    owner_engine: AsyncEngine,
    alice: Account,
    bob: Account,
) -> None:
    await add_notifications(owner_engine, bob.id, 1)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.MarkNotificationsRead(
            pb.MarkNotificationsReadRequest(parent=bob.name, all=True), metadata=alice.metadata
        )

    error = failure(raised.value)
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")


async def test_mark_needs_names_or_all(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.MarkNotificationsRead(
            pb.MarkNotificationsReadRequest(parent="users/me"), metadata=alice.metadata
        )

    assert failure(raised.value).code is grpc.StatusCode.INVALID_ARGUMENT
