"""Notifications and preferences ↔ protos, field by field."""

from __future__ import annotations

from amesa.user.v1 import user_service_pb2 as pb
from server.core.names import child_name, user_name
from server.notify.inbox import MarkResult, PreferencesView, changed_columns
from server.user.mapping import timestamp
from server.user.models import Notification, NotificationCategory

_CATEGORIES = {
    NotificationCategory.ACCOUNT: pb.NOTIFICATION_CATEGORY_ACCOUNT,
    NotificationCategory.DRAWS: pb.NOTIFICATION_CATEGORY_DRAWS,
    NotificationCategory.MARKETING: pb.NOTIFICATION_CATEGORY_MARKETING,
    NotificationCategory.PURCHASES: pb.NOTIFICATION_CATEGORY_PURCHASES,
}


def notification_to_proto(notification: Notification) -> pb.Notification:
    return pb.Notification(
        name=child_name(notification.user_id, "notifications", notification.id),
        category=_CATEGORIES[notification.category],
        kind=notification.kind,
        title=notification.title,
        body=notification.body,
        resource=notification.resource or "",
        create_time=timestamp(notification.create_time),
        read_time=timestamp(notification.read_time),
    )


def _channels(channels: dict[str, bool]) -> pb.ChannelPreferences:
    return pb.ChannelPreferences(
        email=channels["email"],
        sms=channels["sms"],
        in_app=channels["in_app"],
        push=channels["push"],
    )


def preferences_to_proto(view: PreferencesView) -> pb.NotificationPreferences:
    return pb.NotificationPreferences(
        name=f"{user_name(view.user_id)}/notificationPreferences",
        account=_channels(view.grid["account"]),
        draws=_channels(view.grid["draws"]),
        marketing=_channels(view.grid["marketing"]),
        purchases=_channels(view.grid["purchases"]),
        language=view.language or "",
        update_time=timestamp(view.update_time),
    )


def _grid_row(channels: pb.ChannelPreferences) -> dict[str, bool]:
    return {
        "email": channels.email,
        "sms": channels.sms,
        "in_app": channels.in_app,
        "push": channels.push,
    }


def grid_from_proto(preferences: pb.NotificationPreferences) -> dict[str, dict[str, bool]]:
    """Unset categories read as all channels off (what the mask then applies)."""
    return {
        "account": _grid_row(preferences.account),
        "draws": _grid_row(preferences.draws),
        "marketing": _grid_row(preferences.marketing),
        "purchases": _grid_row(preferences.purchases),
    }


def watch_event(notification: Notification | None, *, unread_count: int) -> bytes:
    """What the EventBus carries on `notifications:{user}`: the stream message, serialised."""
    message = pb.WatchNotificationsResponse(unread_count=unread_count)
    if notification is not None:
        message.notification.CopyFrom(notification_to_proto(notification))
    return message.SerializeToString()


def read_events(result: MarkResult) -> list[bytes]:
    """The stream events of MarkNotificationsRead: each notification it changed (a bulk "all"
    beyond 100 becomes one unread-count event), each carrying the final unread count."""
    if len(result.marked) > 100:
        return [watch_event(None, unread_count=result.unread_count)]
    return [watch_event(n, unread_count=result.unread_count) for n in result.marked]


def preference_columns_from_proto(
    request: pb.UpdateNotificationPreferencesRequest,
) -> dict[str, bool | str | None]:
    preferences = request.notification_preferences
    return changed_columns(
        request.update_mask.paths,
        grid=grid_from_proto(preferences),
        language=preferences.language,
    )
