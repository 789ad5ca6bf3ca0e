"""Sessions (refresh-token families): creation, rotation, revocation.

A session is one signed-in device; its refresh tokens form a chain in which exactly one token is
live (a partial unique index). Rotation locks the session row, then reads the presented token:
of two concurrent refreshes with one token the second sees it rotated, which is reuse — the
family is revoked, as for any replay of a rotated token (a thief racing the owner must not win)."""

from __future__ import annotations

import datetime
import ipaddress
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.alerts import security_alert
from server.auth.models import RefreshToken, SessionRevokeReason, UserSession
from server.auth.opaque import new_token, token_hash
from server.auth.outcome import Outcome, failed, succeeded
from server.core.audit import record_activity, record_audit
from server.core.context import Principal, current_client
from server.core.errors import NotFound, Unauthenticated
from server.core.models import ActivityKind
from server.core.pagination import Page, PageTokens, keyset_page

IDLE_LIFETIME = datetime.timedelta(days=7)
ABSOLUTE_LIFETIME = datetime.timedelta(days=30)
_DEVICE_MAX = 100


@dataclass(frozen=True, slots=True)
class IssuedRefresh:
    """A session and the clear refresh token handed to the client (stored only as a hash)."""

    session: UserSession
    refresh_token: str

    @property
    def expire_time(self) -> datetime.datetime:
        return min(self.session.idle_expire_time, self.session.absolute_expire_time)


def live_session_filter() -> list[ColumnElement[bool]]:
    """WHERE clauses selecting sessions neither revoked nor expired."""
    now = func.now()
    return [
        UserSession.revoke_time.is_(None),
        UserSession.idle_expire_time > now,
        UserSession.absolute_expire_time > now,
    ]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def describe_device(user_agent: str | None) -> str | None:
    """A short human summary of a user agent ("Firefox on Windows"); None when unknown."""
    if not user_agent:
        return None
    agent = user_agent.lower()
    browser = next(
        (
            name
            for key, name in (
                ("edg/", "Edge"),
                ("firefox/", "Firefox"),
                ("chrome/", "Chrome"),
                ("safari/", "Safari"),
                ("grpc-python", "gRPC Python"),
                ("grpc-", "gRPC client"),
                ("okhttp", "Android app"),
                ("cfnetwork", "iOS app"),
            )
            if key in agent
        ),
        None,
    )
    system = next(
        (
            name
            for key, name in (
                ("windows", "Windows"),
                ("android", "Android"),
                ("iphone", "iOS"),
                ("ipad", "iPadOS"),
                ("mac os", "macOS"),
                ("linux", "Linux"),
            )
            if key in agent
        ),
        None,
    )
    if browser and system:
        return f"{browser} on {system}"[:_DEVICE_MAX]
    return (browser or system or user_agent)[:_DEVICE_MAX]


async def start_session(session: AsyncSession, *, user_id: uuid.UUID) -> IssuedRefresh:
    """A new session for the user (sign-in) with its first refresh token."""
    client = current_client()
    now = _now()
    user_session = UserSession(
        id=uuid.uuid4(),
        user_id=user_id,
        device=describe_device(client.user_agent),
        user_agent=client.user_agent,
        ip_address=ipaddress.ip_address(client.ip) if client.ip else None,
        last_use_time=now,
        idle_expire_time=now + IDLE_LIFETIME,
        absolute_expire_time=now + ABSOLUTE_LIFETIME,
    )
    session.add(user_session)
    await session.flush()
    refresh_token, digest = new_token()
    session.add(
        RefreshToken(
            id=uuid.uuid4(), session_id=user_session.id, user_id=user_id, token_hash=digest
        )
    )
    await session.flush()
    return IssuedRefresh(session=user_session, refresh_token=refresh_token)


async def rotate_refresh_token(
    session: AsyncSession, *, refresh_token: str
) -> Outcome[IssuedRefresh]:
    """Spends `refresh_token` and returns its successor, moving the idle expiry forward.

    Raises REFRESH_TOKEN_INVALID, SESSION_REVOKED and SESSION_EXPIRED. A token already rotated —
    including one a concurrent refresh has just rotated — is reuse: the session is revoked, the
    activity recorded and a security alert enqueued, and the outcome is REFRESH_TOKEN_REUSED
    (returned, not raised, so that those writes commit).
    """
    digest = token_hash(refresh_token)
    session_id = await session.scalar(
        select(RefreshToken.session_id).where(RefreshToken.token_hash == digest)
    )
    if session_id is None:
        raise Unauthenticated("REFRESH_TOKEN_INVALID", "the refresh token is not valid")
    # The session row serialises refreshes of one family; the token is read after the lock, so a
    # concurrent refresh with the same token sees it rotated.
    user_session = await session.scalar(
        select(UserSession).where(UserSession.id == session_id).with_for_update()
    )
    stored = await session.scalar(
        select(RefreshToken)
        .where(RefreshToken.token_hash == digest)
        .execution_options(populate_existing=True)
    )
    assert user_session is not None  # foreign key
    assert stored is not None  # tokens are deleted only with their session
    if user_session.revoke_time is not None:
        raise Unauthenticated("SESSION_REVOKED", "the session was revoked; sign in again")
    if stored.rotate_time is not None:
        await _revoke_after_reuse(session, user_session)
        return failed(
            Unauthenticated(
                "REFRESH_TOKEN_REUSED",
                "the refresh token was already used; the session is revoked",
            )
        )
    now = _now()
    if min(user_session.idle_expire_time, user_session.absolute_expire_time) <= now:
        raise Unauthenticated("SESSION_EXPIRED", "the session expired; sign in again")
    stored.rotate_time = now
    await session.flush()
    successor, successor_digest = new_token()
    session.add(
        RefreshToken(
            id=uuid.uuid4(),
            session_id=user_session.id,
            user_id=user_session.user_id,
            token_hash=successor_digest,
        )
    )
    client = current_client()
    user_session.last_use_time = now
    user_session.idle_expire_time = min(now + IDLE_LIFETIME, user_session.absolute_expire_time)
    if client.ip:
        user_session.ip_address = ipaddress.ip_address(client.ip)
    await session.flush()
    return succeeded(IssuedRefresh(session=user_session, refresh_token=successor))


async def _revoke_after_reuse(session: AsyncSession, user_session: UserSession) -> None:
    await revoke_session(
        session, session_id=user_session.id, reason=SessionRevokeReason.REFRESH_TOKEN_REUSED
    )
    await record_activity(
        session,
        user_id=user_session.user_id,
        kind=ActivityKind.REFRESH_TOKEN_REUSED,
        details={"session": f"users/{user_session.user_id}/sessions/{user_session.id}"},
    )
    await security_alert(
        session,
        user_id=user_session.user_id,
        alert="refresh_token_reused",
        details={
            "session": f"users/{user_session.user_id}/sessions/{user_session.id}",
            "device": user_session.device or "",
        },
        dedupe_key=f"refresh_token_reused:{user_session.id}",
    )


async def revoke_all_sessions(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    reason: SessionRevokeReason,
    except_session_id: uuid.UUID | None = None,
) -> int:
    """Revokes every live session of the user (and so every refresh token of each family),
    except `except_session_id` when given; returns how many were revoked."""
    conditions: list[Any] = [UserSession.user_id == user_id, *live_session_filter()]
    if except_session_id is not None:
        conditions.append(UserSession.id != except_session_id)
    revoked = await session.scalars(
        update(UserSession)
        .where(*conditions)
        .values(revoke_time=func.now(), revoke_reason=reason)
        .returning(UserSession.id)
    )
    return len(revoked.all())


async def revoke_session(
    session: AsyncSession, *, session_id: uuid.UUID, reason: SessionRevokeReason
) -> bool:
    """Revokes one session if it is still unrevoked; False when it already was."""
    revoked = await session.scalar(
        update(UserSession)
        .where(UserSession.id == session_id, UserSession.revoke_time.is_(None))
        .values(revoke_time=func.now(), revoke_reason=reason)
        .returning(UserSession.id)
    )
    return revoked is not None


async def list_sessions(
    session: AsyncSession,
    *,
    page_tokens: PageTokens,
    user_id: uuid.UUID,
    page_size: int,
    page_token: str,
) -> Page[UserSession]:
    """The user's live sessions, most recently used first (keyset on last use time, id)."""
    return await keyset_page(
        session,
        select(UserSession).where(UserSession.user_id == user_id, *live_session_filter()),
        keys=[UserSession.last_use_time, UserSession.id],
        key_of=lambda row: (row.last_use_time, row.id),
        descending=True,
        requested_size=page_size,
        token=page_token,
        tokens=page_tokens,
        filters={"user": str(user_id)},
    )


async def revoke_named_session(
    session: AsyncSession, *, principal: Principal, user_id: uuid.UUID, session_id: uuid.UUID
) -> None:
    """RevokeSession: idempotent; SESSION_NOT_FOUND for an id the user does not own."""
    target = await session.scalar(
        select(UserSession).where(UserSession.id == session_id, UserSession.user_id == user_id)
    )
    if target is None:
        raise NotFound("SESSION_NOT_FOUND", "you have no session with this id")
    if target.revoke_time is not None:
        return
    if session_id == principal.session_id:
        reason = SessionRevokeReason.LOGOUT
    elif user_id != principal.user_id:
        reason = SessionRevokeReason.ADMIN_REVOKED
    else:
        reason = SessionRevokeReason.USER_REVOKED
    await revoke_session(session, session_id=session_id, reason=reason)
    name = f"users/{user_id}/sessions/{session_id}"
    await record_activity(
        session, user_id=user_id, kind=ActivityKind.SESSION_REVOKED, details={"session": name}
    )
    if user_id != principal.user_id:
        await record_audit(
            session, actor=principal, action="auth.revoke_session", resource_name=name
        )


async def revoke_sessions_of(
    session: AsyncSession, *, principal: Principal, user_id: uuid.UUID, include_current: bool
) -> int:
    """RevokeAllSessions: every live session of the user, except the caller's own unless asked."""
    by_admin = user_id != principal.user_id
    count = await revoke_all_sessions(
        session,
        user_id=user_id,
        reason=SessionRevokeReason.ADMIN_REVOKED if by_admin else SessionRevokeReason.USER_REVOKED,
        except_session_id=None if include_current else principal.session_id,
    )
    if count:
        await record_activity(
            session,
            user_id=user_id,
            kind=ActivityKind.SESSION_REVOKED,
            details={"sessions": str(count)},
        )
    if by_admin:
        await record_audit(
            session,
            actor=principal,
            action="auth.revoke_all_sessions",
            resource_name=f"users/{user_id}",
            after={"revoked_count": count},
        )
    return count


async def logout(session: AsyncSession, *, principal: Principal) -> None:
    if await revoke_session(
        session, session_id=principal.session_id, reason=SessionRevokeReason.LOGOUT
    ):
        await record_activity(session, user_id=principal.user_id, kind=ActivityKind.LOGOUT)
