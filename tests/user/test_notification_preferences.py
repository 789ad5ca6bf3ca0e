"""UserService.GetNotificationPreferences and UpdateNotificationPreferences."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.user.v1 import user_service_pb2 as pb
from amesa.user.v1 import user_service_pb2_grpc
from tests.support import failure
from tests.user.conftest import Account

pytestmark = pytest.mark.usefixtures("languages")

NAME = "users/me/notificationPreferences"
ON_BY_DEFAULT = pb.ChannelPreferences(email=True, sms=False, in_app=True, push=True)


def update(
    prefs: pb.NotificationPreferences, *paths: str
) -> pb.UpdateNotificationPreferencesRequest:
    if not prefs.name:
        prefs.name = NAME
    return pb.UpdateNotificationPreferencesRequest(
        notification_preferences=prefs, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
    )


async def test_defaults_until_changed(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    prefs = await stub.GetNotificationPreferences(
        pb.GetNotificationPreferencesRequest(name=NAME), metadata=alice.metadata
    )

    assert prefs == pb.NotificationPreferences(
        name=f"{alice.name}/notificationPreferences",
        account=ON_BY_DEFAULT,
        draws=ON_BY_DEFAULT,
        marketing=pb.ChannelPreferences(),
        purchases=ON_BY_DEFAULT,
    )


async def test_update_changes_only_the_masked_fields(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    changed = await stub.UpdateNotificationPreferences(
        update(
            pb.NotificationPreferences(
                draws=pb.ChannelPreferences(sms=True),
                purchases=pb.ChannelPreferences(email=False, push=True),  # only email is masked
                account=pb.ChannelPreferences(email=False),  # not masked: ignored
                language="fr",
            ),
            "draws",
            "purchases.email",
            "language",
        ),
        metadata=alice.metadata,
    )
    read_back = await stub.GetNotificationPreferences(
        pb.GetNotificationPreferencesRequest(name=NAME), metadata=alice.metadata
    )

    assert changed.draws == pb.ChannelPreferences(sms=True)
    assert changed.purchases == pb.ChannelPreferences(email=False, in_app=True, push=True)
    assert changed.account == ON_BY_DEFAULT
    assert changed.language == "fr"
    assert changed.HasField("update_time")
    assert read_back == changed


async def test_masked_language_left_empty_clears_it(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    await stub.UpdateNotificationPreferences(
        update(pb.NotificationPreferences(language="fr"), "language"), metadata=alice.metadata
    )

    cleared = await stub.UpdateNotificationPreferences(
        update(pb.NotificationPreferences(), "language"), metadata=alice.metadata
    )

    assert cleared.language == ""


async def test_unsupported_language_is_invalid(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.UpdateNotificationPreferences(
            update(pb.NotificationPreferences(language="xh"), "language"), metadata=alice.metadata
        )

    error = failure(raised.value)
    assert (error.code, error.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "LANGUAGE_NOT_SUPPORTED",
    )
    assert [v.field for v in error.field_violations] == ["notification_preferences.language"]


async def test_marketing_cannot_be_turned_on_while_self_excluded(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, owner_engine: AsyncEngine, alice: Account
) -> None:
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO self_exclusions (user_id, start_time, end_time) "
                "VALUES (:u, now() - interval '1 minute', now() + interval '180 days')"
            ),
            {"u": alice.id},
        )

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.UpdateNotificationPreferences(
            update(
                pb.NotificationPreferences(marketing=pb.ChannelPreferences(email=True)), "marketing"
            ),
            metadata=alice.metadata,
        )
    off = await stub.UpdateNotificationPreferences(
        update(pb.NotificationPreferences(), "marketing"), metadata=alice.metadata
    )

    error = failure(raised.value)
    assert (error.code, error.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SELF_EXCLUSION_ACTIVE",
    )
    assert "until" in error.error_info.metadata
    assert off.marketing == pb.ChannelPreferences()  # turning it off is always allowed


async def test_unknown_mask_path_is_invalid(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.UpdateNotificationPreferences(
            update(pb.NotificationPreferences(), "draws.fax"), metadata=alice.metadata
        )

    assert failure(raised.value).code is grpc.StatusCode.INVALID_ARGUMENT


async def test_another_users_preferences_are_permission_denied(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, bob: Account
) -> None:
    name = f"{bob.name}/notificationPreferences"
    with pytest.raises(grpc.aio.AioRpcError) as get:
        await stub.GetNotificationPreferences(
            pb.GetNotificationPreferencesRequest(name=name), metadata=alice.metadata
        )
    with pytest.raises(grpc.aio.AioRpcError) as change:
        await stub.UpdateNotificationPreferences(
            update(pb.NotificationPreferences(name=name), "draws"), metadata=alice.metadata
        )

    assert failure(get.value).reason == "NOT_OWNER"
    assert failure(change.value).reason == "NOT_OWNER"


async def test_admin_change_is_audited(
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    owner_engine: AsyncEngine,
    admin: Account,
    bob: Account,
) -> None:
    name = f"{bob.name}/notificationPreferences"

    await stub.UpdateNotificationPreferences(
        update(pb.NotificationPreferences(name=name), "draws"), metadata=admin.metadata
    )

    async with owner_engine.connect() as connection:
        action = await connection.scalar(
            text("SELECT action FROM audit_log WHERE resource_name = :n"), {"n": name}
        )
    assert action == "user.update_notification_preferences"
