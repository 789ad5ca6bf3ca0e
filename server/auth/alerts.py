"""Security alerts: the owner is told (email + in-app, whatever their preferences) when
something that could mean an account takeover happens — a reused refresh token, a password
change or reset, two-step verification turned off, a sign-in provider linked."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession

from server.core.context import current_client
from server.core.outbox import enqueue


async def security_alert(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    alert: str,
    details: Mapping[str, str] | None = None,
    dedupe_key: str | None = None,
) -> None:
    """Enqueues `notify.security_alert` in the caller's transaction. `alert` names a text in
    server/notify/templates.py ALERT_TEXTS; `details` must never hold secrets."""
    await enqueue(
        session,
        topic="notify.security_alert",
        payload={"alert": alert, "ip_address": current_client().ip or "", **(details or {})},
        user_id=user_id,
        dedupe_key=dedupe_key,
    )
