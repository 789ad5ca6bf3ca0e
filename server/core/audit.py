"""The audit trail (every admin action, every change to money, tickets, draws, KYC and roles)
and the user's own activity log — both written in the caller's transaction, so a change and its
record commit or roll back together."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from server.core.context import Principal, current_client, current_request_id
from server.core.models import ActivityKind, ActivityLog, AuditActorKind, AuditLog


async def record_audit(
    session: AsyncSession,
    *,
    actor: Principal | None,
    action: str,
    resource_name: str,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> None:
    """Appends an audit row. `actor=None` means the system (scheduler, webhook, reconciler)."""
    if actor is None:
        kind = AuditActorKind.SYSTEM
    elif actor.is_admin:
        kind = AuditActorKind.ADMIN
    else:
        kind = AuditActorKind.USER
    session.add(
        AuditLog(
            actor_kind=kind,
            actor_user_id=actor.user_id if actor else None,
            action=action,
            resource_name=resource_name,
            before=dict(before) if before is not None else None,
            after=dict(after) if after is not None else None,
            request_id=current_request_id(),
            ip_address=current_client().ip,
        )
    )


async def record_activity(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    kind: ActivityKind,
    details: Mapping[str, str] | None = None,
) -> None:
    """Appends an entry to the user's activity log (ListActivity); never put secrets in it."""
    client = current_client()
    session.add(
        ActivityLog(
            user_id=user_id,
            kind=kind,
            ip_address=client.ip,
            user_agent=client.user_agent,
            details=dict(details or {}),
            request_id=current_request_id(),
        )
    )
