"""The notification RPCs of UserService (ListNotifications, MarkNotificationsRead,
WatchNotifications, Get/UpdateNotificationPreferences), kept apart from the profile RPCs.

UserServicer inherits this class; until its methods are built they fall through to the
generated base and answer UNIMPLEMENTED.
"""

from __future__ import annotations


class NotificationRpcs:
    pass
