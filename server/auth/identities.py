"""Linked OAuth identities of a user: listing and unlinking. (Signing in and linking through a
provider — LoginWithOAuth, LinkOAuthIdentity — are not built yet.)"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass

from sqlalchemy import func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.models import UserIdentity
from server.core.audit import record_activity, record_audit
from server.core.context import Principal
from server.core.errors import FailedPrecondition, NotFound
from server.core.models import ActivityKind
from server.core.pagination import PageTokens
from server.user.models import User


@dataclass(frozen=True, slots=True)
class IdentityPage:
    identities: list[UserIdentity]
    next_page_token: str
    total_size: int


async def list_identities(
    session: AsyncSession,
    *,
    page_tokens: PageTokens,
    user_id: uuid.UUID,
    page_size: int,
    page_token: str,
) -> IdentityPage:
    """The user's linked identities, oldest first (keyset on create time, id)."""
    filters = {"user": str(user_id)}
    cursor = page_tokens.decode(page_token, filters=filters)
    statement = (
        select(UserIdentity)
        .where(UserIdentity.user_id == user_id)
        .order_by(UserIdentity.create_time, UserIdentity.id)
        .limit(page_size + 1)
    )
    if cursor is not None:
        statement = statement.where(
            tuple_(UserIdentity.create_time, UserIdentity.id)
            > tuple_(
                literal(datetime.datetime.fromisoformat(str(cursor["t"]))),
                literal(uuid.UUID(str(cursor["id"]))),
            )
        )
    rows = list((await session.scalars(statement)).all())
    total = await session.scalar(
        select(func.count()).select_from(UserIdentity).where(UserIdentity.user_id == user_id)
    )
    next_token = ""
    if len(rows) > page_size:
        rows = rows[:page_size]
        last = rows[-1]
        next_token = page_tokens.encode(
            {"t": last.create_time.isoformat(), "id": str(last.id)}, filters=filters
        )
    return IdentityPage(identities=rows, next_page_token=next_token, total_size=int(total or 0))


async def unlink_identity(
    session: AsyncSession, *, principal: Principal, user_id: uuid.UUID, identity_id: uuid.UUID
) -> None:
    """Refused (LAST_SIGN_IN_METHOD) when the account has no password and no other identity."""
    user = await session.scalar(select(User).where(User.id == user_id).with_for_update())
    identity = await session.scalar(
        select(UserIdentity).where(UserIdentity.id == identity_id, UserIdentity.user_id == user_id)
    )
    if user is None or identity is None:
        raise NotFound("OAUTH_IDENTITY_NOT_FOUND", "you have no linked identity with this id")
    others = await session.scalar(
        select(func.count())
        .select_from(UserIdentity)
        .where(UserIdentity.user_id == user_id, UserIdentity.id != identity_id)
    )
    if user.password_hash is None and not others:
        raise FailedPrecondition(
            "LAST_SIGN_IN_METHOD",
            "this is your only way to sign in; set a password first (RequestPasswordReset)",
        )
    await session.delete(identity)
    name = f"users/{user_id}/oauthIdentities/{identity_id}"
    await record_activity(
        session,
        user_id=user_id,
        kind=ActivityKind.OAUTH_IDENTITY_CHANGED,
        details={"change": "unlinked", "provider": identity.provider, "identity": name},
    )
    if user_id != principal.user_id:
        await record_audit(
            session, actor=principal, action="auth.unlink_oauth_identity", resource_name=name
        )
    await session.flush()
