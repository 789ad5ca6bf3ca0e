"""Linked OAuth identities of a user: listing and unlinking. (Signing in and linking through a
provider — LoginWithOAuth, LinkOAuthIdentity — are in server/auth/oauth.py.)"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.models import UserIdentity
from server.core.audit import record_activity, record_audit
from server.core.context import Principal
from server.core.errors import FailedPrecondition, NotFound
from server.core.models import ActivityKind
from server.core.pagination import Page, PageTokens, keyset_page
from server.user.models import User


async def list_identities(
    session: AsyncSession,
    *,
    page_tokens: PageTokens,
    user_id: uuid.UUID,
    page_size: int,
    page_token: str,
) -> Page[UserIdentity]:
    """The user's linked identities, oldest first (keyset on create time, id)."""
    return await keyset_page(
        session,
        select(UserIdentity).where(UserIdentity.user_id == user_id),
        keys=[UserIdentity.create_time, UserIdentity.id],
        key_of=lambda row: (row.create_time, row.id),
        descending=False,
        requested_size=page_size,
        token=page_token,
        tokens=page_tokens,
        filters={"user": str(user_id)},
    )


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
