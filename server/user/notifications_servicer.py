"""The notification RPCs of UserService (ListNotifications, MarkNotificationsRead,
WatchNotifications, Get/UpdateNotificationPreferences), kept apart from the profile RPCs.

UserServicer inherits this class and sets `self._deps`. The rules live in server/notify/.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc

from amesa.user.v1 import user_service_pb2 as pb
from server.core.context import require_principal
from server.core.deps import Deps
from server.core.names import parse_id, parse_name, resolve_user
from server.notify import inbox, mapping
from server.notify.watch import announce, watch

Context = grpc.aio.ServicerContext[Any, Any]


class NotificationRpcs:
    _deps: Deps

    async def ListNotifications(
        self, request: pb.ListNotificationsRequest, context: Context
    ) -> pb.ListNotificationsResponse:
        principal = require_principal()
        (segment,) = parse_name(request.parent, "users", field="parent")
        user_id = resolve_user(segment, principal, field="parent")
        async with self._deps.database.session(principal) as session:
            page = await inbox.list_notifications(
                session,
                user_id=user_id,
                unread_only=request.unread_only,
                requested_size=request.page_size,
                token=request.page_token,
                tokens=self._deps.page_tokens,
            )
        return pb.ListNotificationsResponse(
            notifications=[mapping.notification_to_proto(n) for n in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def MarkNotificationsRead(
        self, request: pb.MarkNotificationsReadRequest, context: Context
    ) -> pb.MarkNotificationsReadResponse:
        principal = require_principal()
        (segment,) = parse_name(request.parent, "users", field="parent")
        user_id = resolve_user(segment, principal, field="parent")
        ids = None if request.all else [_notification_id(name) for name in request.names]
        async with self._deps.database.session(principal) as session:
            result = await inbox.mark_read(session, user_id=user_id, notification_ids=ids)
        await announce(self._deps.events, user_id, mapping.read_events(result))
        return pb.MarkNotificationsReadResponse(
            marked_count=len(result.marked), unread_count=result.unread_count
        )

    async def WatchNotifications(
        self, request: pb.WatchNotificationsRequest, context: Context
    ) -> AsyncIterator[pb.WatchNotificationsResponse]:
        principal = require_principal()
        (segment,) = parse_name(request.parent, "users", field="parent")
        config = self._deps.settings.notify
        stream = watch(
            database=self._deps.database,
            redis=self._deps.redis,
            events=self._deps.events,
            shutting_down=self._deps.shutting_down,
            principal=principal,
            user_id=resolve_user(segment, principal, field="parent"),
            heartbeat_seconds=config.heartbeat_seconds,
            max_streams=config.max_streams_per_user,
        )
        async for message in stream:
            yield message

    async def GetNotificationPreferences(
        self, request: pb.GetNotificationPreferencesRequest, context: Context
    ) -> pb.NotificationPreferences:
        principal = require_principal()
        user_id = resolve_user(_preferences_owner(request.name, "name"), principal)
        async with self._deps.database.session(principal) as session:
            view = await inbox.get_preferences(session, user_id=user_id)
        return mapping.preferences_to_proto(view)

    async def UpdateNotificationPreferences(
        self, request: pb.UpdateNotificationPreferencesRequest, context: Context
    ) -> pb.NotificationPreferences:
        principal = require_principal()
        field = "notification_preferences.name"
        segment = _preferences_owner(request.notification_preferences.name, field)
        user_id = resolve_user(segment, principal, field=field)
        async with self._deps.database.session(principal) as session:
            view = await inbox.update_preferences(
                session,
                principal=principal,
                user_id=user_id,
                columns=mapping.preference_columns_from_proto(request),
            )
        return mapping.preferences_to_proto(view)


def _notification_id(name: str) -> uuid.UUID:
    _, notification = parse_name(name, "users", "notifications", field="names")
    return parse_id(notification, field="names")


def _preferences_owner(name: str, field: str) -> str:
    """The user segment of the singleton `users/{user}/notificationPreferences`."""
    user, slash, singleton = name.rpartition("/")
    if not slash or singleton != "notificationPreferences":
        user = ""  # parse_name then reports the expected shape
    (segment,) = parse_name(user, "users", field=field)
    return segment
