"""Administrators' account management: ListUsers, UpdateUserStatus, SetUserRoles. Every change
is audited with its before and after."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Text, cast, func, literal, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.models import SessionRevokeReason
from server.auth.sessions import revoke_all_sessions
from server.core.audit import record_activity, record_audit
from server.core.context import Principal
from server.core.crypto import PiiCipher
from server.core.errors import FailedPrecondition
from server.core.models import ActivityKind
from server.core.names import user_name
from server.core.pagination import Page, PageTokens, keyset_page
from server.user.accounts import active_exclusion, load_open_user, status_filter
from server.user.models import KycStatus, Role, User, UserStatus
from server.user.profile import UserView, view_of, views_of


@dataclass(frozen=True, slots=True)
class UserFilter:
    email_prefix: str
    statuses: Sequence[str]
    kyc_statuses: Sequence[str]
    roles: Sequence[str]
    order_by: str


def _like_prefix(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


async def list_users(
    session: AsyncSession,
    *,
    filters: UserFilter,
    requested_size: int,
    token: str,
    tokens: PageTokens,
    cipher: PiiCipher,
) -> Page[UserView]:
    query = select(User)
    if filters.email_prefix:
        pattern = _like_prefix(filters.email_prefix.lower())
        query = query.where(
            or_(
                func.lower(User.email).like(pattern, escape="\\"),
                func.lower(User.pending_email).like(pattern, escape="\\"),
            )
        )
    if filters.statuses:
        query = query.where(or_(*(status_filter(status) for status in filters.statuses)))
    if filters.kyc_statuses:
        query = query.where(User.kyc_status.in_([KycStatus(k) for k in filters.kyc_statuses]))
    if filters.roles:
        roles = cast(literal(list(filters.roles), ARRAY(Text())), ARRAY(Text()))
        query = query.where(User.roles.overlap(roles))
    # AIP-132: ascending unless ` desc`; no order_by at all means newest first.
    field, _, direction = (filters.order_by or "create_time desc").partition(" ")
    descending = direction == "desc"
    key = User.email if field == "email" else User.create_time
    page = await keyset_page(
        session,
        query,
        keys=[key, User.id],
        key_of=lambda u: [u.email if field == "email" else u.create_time, u.id],
        descending=descending,
        requested_size=requested_size,
        token=token,
        tokens=tokens,
        filters={
            "list": "users",
            "email": filters.email_prefix.lower(),
            "statuses": sorted(filters.statuses),
            "kyc": sorted(filters.kyc_statuses),
            "roles": sorted(filters.roles),
            "order_by": f"{field} {'desc' if descending else 'asc'}",
        },
    )
    return Page(
        items=await views_of(session, page.items, cipher=cipher),
        next_page_token=page.next_page_token,
        total_size=page.total_size,
    )


async def update_user_status(
    session: AsyncSession,
    *,
    principal: Principal,
    user_id: uuid.UUID,
    status: str,
    reason: str,
    cipher: PiiCipher,
) -> UserView:
    if user_id == principal.user_id:
        raise FailedPrecondition(
            "CANNOT_CHANGE_OWN_STATUS", "an administrator cannot change their own status"
        )
    user = await load_open_user(session, user_id, for_update=True)
    exclusion = await active_exclusion(session, user_id)
    if exclusion is not None:
        raise FailedPrecondition(
            "SELF_EXCLUSION_ACTIVE",
            "the user is self-excluded; nobody can end that early",
            metadata=exclusion.until_metadata(),
        )
    before = {"status": user.status.value, "status_reason": user.status_reason}
    user.status = UserStatus(status)
    user.status_reason = reason
    user.status_change_time = func.now()
    await session.flush()
    if user.status is UserStatus.SUSPENDED:
        await revoke_all_sessions(
            session, user_id=user_id, reason=SessionRevokeReason.ACCOUNT_SUSPENDED
        )
    await record_audit(
        session,
        actor=principal,
        action="user.status.update",
        resource_name=user_name(user_id),
        before=before,
        after={"status": status, "status_reason": reason},
    )
    await record_activity(
        session,
        user_id=user_id,
        kind=ActivityKind.ACCOUNT_STATUS_CHANGED,
        details={"by": "admin", "status": status},
    )
    await session.refresh(user)
    return await view_of(session, user, cipher=cipher)


async def set_user_roles(
    session: AsyncSession,
    *,
    principal: Principal,
    user_id: uuid.UUID,
    roles: Sequence[Role],
    cipher: PiiCipher,
) -> UserView:
    if user_id == principal.user_id:
        raise FailedPrecondition(
            "CANNOT_CHANGE_OWN_ROLES", "an administrator cannot change their own roles"
        )
    user = await load_open_user(session, user_id, for_update=True)
    before = sorted(user.roles)
    wanted = {Role.USER, *roles}
    after = [role.value for role in Role if role in wanted]  # USER first, then ADMIN
    user.roles = after
    await session.flush()
    if Role.ADMIN.value in before and Role.ADMIN not in wanted:
        await revoke_all_sessions(
            session, user_id=user_id, reason=SessionRevokeReason.ADMIN_REVOKED
        )
    await record_audit(
        session,
        actor=principal,
        action="user.roles.set",
        resource_name=user_name(user_id),
        before={"roles": before},
        after={"roles": after},
    )
    if sorted(after) != before:
        await record_activity(
            session,
            user_id=user_id,
            kind=ActivityKind.ACCOUNT_STATUS_CHANGED,
            details={"by": "admin", "roles": ",".join(after)},
        )
    await session.refresh(user)
    return await view_of(session, user, cipher=cipher)
