"""Email link tokens: email verification (registration, email change) and password reset.

A token is 256 random bits sent in a link and stored as its SHA-256, single use (`consume_time`)
and expiring. Issuing a new token of a purpose deletes the user's earlier unspent ones, so only
the newest link works. The clear token travels once, in the outbox payload of the email that
carries the link — unavoidable for a link sent by mail; the payload is deleted with the outbox
row once delivered and purged.
"""

from __future__ import annotations

import datetime
import uuid

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.models import VerificationPurpose, VerificationToken
from server.auth.opaque import new_token, token_hash
from server.core.audit import record_activity
from server.core.errors import AlreadyExists, InvalidArgument
from server.core.models import ActivityKind
from server.core.outbox import enqueue
from server.user.models import User

EMAIL_VERIFICATION_LIFETIME = datetime.timedelta(hours=24)
PASSWORD_RESET_LIFETIME = datetime.timedelta(hours=1)


async def _issue(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    purpose: VerificationPurpose,
    email: str,
    lifetime: datetime.timedelta,
) -> str:
    await session.execute(
        delete(VerificationToken).where(
            VerificationToken.user_id == user_id,
            VerificationToken.purpose == purpose,
            VerificationToken.consume_time.is_(None),
        )
    )
    token, digest = new_token()
    session.add(
        VerificationToken(
            id=uuid.uuid4(),
            user_id=user_id,
            purpose=purpose,
            token_hash=digest,
            email=email,
            expire_time=datetime.datetime.now(datetime.UTC) + lifetime,
        )
    )
    await session.flush()
    return token


async def issue_email_verification(
    session: AsyncSession, *, user_id: uuid.UUID, email: str, language: str
) -> None:
    """Sends a verification link for `email` (the account's address, or a pending new one);
    earlier links of the user stop working."""
    token = await _issue(
        session,
        user_id=user_id,
        purpose=VerificationPurpose.EMAIL_VERIFICATION,
        email=email,
        lifetime=EMAIL_VERIFICATION_LIFETIME,
    )
    await enqueue(
        session,
        topic="email.verify_email",
        payload={"to": email, "language": language, "token": token},
        user_id=user_id,
    )


async def issue_password_reset(
    session: AsyncSession, *, user_id: uuid.UUID, email: str, language: str
) -> None:
    """Sends a password reset link to the account's address; earlier links stop working."""
    token = await _issue(
        session,
        user_id=user_id,
        purpose=VerificationPurpose.PASSWORD_RESET,
        email=email,
        lifetime=PASSWORD_RESET_LIFETIME,
    )
    await enqueue(
        session,
        topic="email.password_reset",
        payload={"to": email, "language": language, "token": token},
        user_id=user_id,
    )


async def consume_token(
    session: AsyncSession, *, token: str, purpose: VerificationPurpose, reason_prefix: str
) -> VerificationToken:
    """Spends a link token (locked, so it is spent once). Raises `{prefix}_TOKEN_INVALID` for an
    unknown, spent or superseded token and `{prefix}_TOKEN_EXPIRED` past its expiry."""
    stored = await session.scalar(
        select(VerificationToken)
        .where(VerificationToken.token_hash == token_hash(token))
        .with_for_update()
    )
    if stored is None or stored.purpose != purpose or stored.consume_time is not None:
        raise InvalidArgument(
            f"{reason_prefix}_TOKEN_INVALID", "the link is not valid; ask for a new one"
        )
    if stored.expire_time <= datetime.datetime.now(datetime.UTC):
        raise InvalidArgument(
            f"{reason_prefix}_TOKEN_EXPIRED", "the link has expired; ask for a new one"
        )
    stored.consume_time = datetime.datetime.now(datetime.UTC)
    await session.flush()
    return stored


def _same_email(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.casefold() == b.casefold()


async def verify_email(session: AsyncSession, *, token: str) -> None:
    """Consumes an email verification token: verifies the account's address, or swaps in the
    pending new address it was sent to (EMAIL_TAKEN when another account took it meanwhile)."""
    stored = await consume_token(
        session, token=token, purpose=VerificationPurpose.EMAIL_VERIFICATION, reason_prefix="EMAIL"
    )
    user = await session.scalar(select(User).where(User.id == stored.user_id).with_for_update())
    assert user is not None
    now = datetime.datetime.now(datetime.UTC)
    if _same_email(stored.email, user.email):
        if user.email_verify_time is None:
            user.email_verify_time = now
        await session.flush()
        return
    if not _same_email(stored.email, user.pending_email):
        raise InvalidArgument("EMAIL_TOKEN_INVALID", "the link is not valid; ask for a new one")
    taken = await session.scalar(
        select(User.id).where(User.email == stored.email, User.id != user.id)
    )
    if taken is not None:
        raise AlreadyExists("EMAIL_TAKEN", "another account uses this email")
    previous = user.email
    user.email = stored.email
    user.pending_email = None
    user.email_verify_time = now
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:  # taken by a concurrent registration after the check
        raise AlreadyExists("EMAIL_TAKEN", "another account uses this email") from None
    await record_activity(
        session,
        user_id=user.id,
        kind=ActivityKind.EMAIL_CHANGED,
        details={"previous_email": previous, "email": stored.email},
    )
