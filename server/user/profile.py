"""The account itself: GetUser, UpdateUser (field mask, email change through `pending_email`)
and DeleteUser (soft delete)."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.models import SessionRevokeReason, TotpCredential
from server.auth.sessions import revoke_all_sessions
from server.auth.verification import issue_email_verification
from server.content.models import Language
from server.core.audit import record_activity, record_audit
from server.core.context import Principal
from server.core.crypto import Encrypted, PiiCipher
from server.core.errors import FailedPrecondition, FieldViolation, InvalidArgument
from server.core.models import ActivityKind
from server.core.names import user_name
from server.core.outbox import enqueue
from server.user.accounts import (
    Exclusion,
    active_exclusion,
    active_exclusions,
    age_on,
    load_open_user,
    load_user,
    minimum_age,
)
from server.user.models import User, UserIdentityDocument, UserStatus

BIRTH_DATE_CONTEXT = "users.birth_date"


@dataclass(frozen=True, slots=True)
class UserView:
    """An account as clients see it: the row, its decrypted birth date, the exclusion in force
    and whether TOTP is on."""

    user: User
    birth_date: datetime.date | None
    exclusion: Exclusion | None
    totp_enabled: bool

    @property
    def status(self) -> str:
        if self.user.status is UserStatus.DELETED:
            return "DELETED"
        if self.exclusion is not None:
            return "SELF_EXCLUDED"
        return self.user.status.value


@dataclass(frozen=True, slots=True)
class ProfileChange:
    """UpdateUser's input: the masked fields and their new values (None = not in the mask)."""

    paths: frozenset[str]
    email: str
    given_name: str
    family_name: str
    birth_date: tuple[int, int, int] | None
    preferred_language: str
    marketing_opt_in: bool


def decrypt_birth_date(user: User, cipher: PiiCipher) -> datetime.date | None:
    if user.birth_date_ciphertext is None or user.birth_date_key_id is None:
        return None
    plaintext = cipher.decrypt(
        Encrypted(user.birth_date_ciphertext, user.birth_date_key_id), context=BIRTH_DATE_CONTEXT
    )
    return datetime.date.fromisoformat(plaintext)


async def view_of(session: AsyncSession, user: User, *, cipher: PiiCipher) -> UserView:
    totp = await session.scalar(
        select(
            exists().where(
                TotpCredential.user_id == user.id, TotpCredential.confirm_time.is_not(None)
            )
        )
    )
    return UserView(
        user=user,
        birth_date=decrypt_birth_date(user, cipher),
        exclusion=await active_exclusion(session, user.id),
        totp_enabled=bool(totp),
    )


async def views_of(
    session: AsyncSession, users: list[User], *, cipher: PiiCipher
) -> list[UserView]:
    """Views of many accounts in two queries (ListUsers), not two per account."""
    ids = [user.id for user in users]
    totp = set(
        await session.scalars(
            select(TotpCredential.user_id).where(
                TotpCredential.user_id.in_(ids), TotpCredential.confirm_time.is_not(None)
            )
        )
    )
    exclusions = await active_exclusions(session, ids)
    return [
        UserView(
            user=user,
            birth_date=decrypt_birth_date(user, cipher),
            exclusion=exclusions.get(user.id),
            totp_enabled=user.id in totp,
        )
        for user in users
    ]


async def get_user(session: AsyncSession, *, user_id: uuid.UUID, cipher: PiiCipher) -> UserView:
    return await view_of(session, await load_user(session, user_id), cipher=cipher)


async def _check_birth_date(
    session: AsyncSession, user: User, value: tuple[int, int, int]
) -> datetime.date:
    try:
        birth = datetime.date(*value)
    except ValueError:
        birth = None
    today = datetime.datetime.now(datetime.UTC).date()
    if birth is None or birth > today:
        raise InvalidArgument(
            "BIRTH_DATE_INVALID",
            "the birth date is not a real calendar date or is in the future",
            violations=[FieldViolation("user.birth_date", "not a real past date")],
        )
    minimum = await minimum_age(session)
    if age_on(birth, today) < minimum:
        raise InvalidArgument(
            "UNDERAGE",
            f"users must be at least {minimum} years old",
            violations=[FieldViolation("user.birth_date", f"must be at least {minimum} years ago")],
            metadata={"minimum_age": str(minimum)},
        )
    submitted = await session.scalar(
        select(exists().where(UserIdentityDocument.user_id == user.id))
    )
    if submitted:
        raise FailedPrecondition(
            "BIRTH_DATE_LOCKED",
            "an identity document was submitted; the birth date changes only through KYC support",
        )
    return birth


async def _check_language(session: AsyncSession, language: str) -> None:
    supported = await session.scalar(
        select(
            exists().where(func.lower(Language.language_code) == language.lower(), Language.enabled)
        )
    )
    if not supported:
        raise InvalidArgument(
            "LANGUAGE_NOT_SUPPORTED",
            "preferred_language is not a supported language",
            violations=[FieldViolation("user.preferred_language", "not a supported language")],
        )


async def update_user(
    session: AsyncSession,
    *,
    principal: Principal,
    user_id: uuid.UUID,
    change: ProfileChange,
    cipher: PiiCipher,
) -> UserView:
    user = await load_open_user(session, user_id, for_update=True)
    before: dict[str, str | bool | None] = {}
    after: dict[str, str | bool | None] = {}

    def changed(field: str, old: str | bool | None, new: str | bool | None) -> None:
        before[field], after[field] = old, new

    if "given_name" in change.paths and change.given_name != user.given_name:
        changed("given_name", user.given_name, change.given_name)
        user.given_name = change.given_name
    if "family_name" in change.paths and change.family_name != user.family_name:
        changed("family_name", user.family_name, change.family_name)
        user.family_name = change.family_name
    if "marketing_opt_in" in change.paths and change.marketing_opt_in != user.marketing_opt_in:
        changed("marketing_opt_in", user.marketing_opt_in, change.marketing_opt_in)
        user.marketing_opt_in = change.marketing_opt_in
    if "preferred_language" in change.paths and change.preferred_language != (
        user.preferred_language
    ):
        await _check_language(session, change.preferred_language)
        changed("preferred_language", user.preferred_language, change.preferred_language)
        user.preferred_language = change.preferred_language
    if "birth_date" in change.paths and change.birth_date is not None:
        birth = await _check_birth_date(session, user, change.birth_date)
        if birth != decrypt_birth_date(user, cipher):
            sealed = cipher.encrypt(birth.isoformat(), context=BIRTH_DATE_CONTEXT)
            user.birth_date_ciphertext = sealed.ciphertext
            user.birth_date_key_id = sealed.key_id
            user.birth_date_blind_index = cipher.blind_index(
                birth.isoformat(), context=BIRTH_DATE_CONTEXT
            )
            changed("birth_date", "(encrypted)", "(encrypted)")  # never the date itself
    by_admin = principal.user_id != user.id
    details = {"by": "admin"} if by_admin else {}
    if before:
        await record_activity(
            session,
            user_id=user.id,
            kind=ActivityKind.PROFILE_UPDATED,
            details={**details, "fields": ",".join(sorted(before))},
        )
    if "email" in change.paths:
        pending_before = user.pending_email
        await _change_email(session, user, change.email, details=details)
        if user.pending_email != pending_before:
            changed("pending_email", pending_before, user.pending_email)
    if by_admin and before:
        await record_audit(
            session,
            actor=principal,
            action="user.update",
            resource_name=user_name(user.id),
            before=before,
            after=after,
        )
    await session.flush()
    await session.refresh(user)
    return await view_of(session, user, cipher=cipher)


async def _change_email(
    session: AsyncSession, user: User, email: str, *, details: dict[str, str]
) -> None:
    """A new address waits in `pending_email` for its link; the current one cancels a change.
    Whether the address belongs to someone else is only checked by VerifyEmail."""
    if email.lower() == user.email.lower():
        if user.pending_email is not None:
            user.pending_email = None
            await record_activity(
                session,
                user_id=user.id,
                kind=ActivityKind.EMAIL_CHANGED,
                details={**details, "change": "cancelled"},
            )
        return
    if user.pending_email is not None and user.pending_email.lower() == email.lower():
        return  # already waiting for this address; ResendEmailVerification sends the link again
    user.pending_email = email
    await session.flush()
    await issue_email_verification(
        session, user_id=user.id, email=email, language=user.preferred_language
    )
    # The current address hears of it too, so a hijacked session cannot move the account quietly.
    await enqueue(
        session,
        topic="email.email_change_requested",
        payload={"to": user.email, "language": user.preferred_language, "new_email": email},
        user_id=user.id,
    )
    await record_activity(
        session,
        user_id=user.id,
        kind=ActivityKind.EMAIL_CHANGED,
        details={**details, "change": "requested"},
    )


async def delete_user(session: AsyncSession, *, principal: Principal, user_id: uuid.UUID) -> None:
    """Soft delete: DELETED with `delete_time`, every session revoked in this transaction. The
    anonymisation job erases personal data after the grace period."""
    user = await load_user(session, user_id, for_update=True)
    if user.status is UserStatus.DELETED:
        return
    before_status = user.status.value
    user.status = UserStatus.DELETED
    user.delete_time = func.now()
    user.status_change_time = func.now()
    await session.flush()
    await revoke_all_sessions(session, user_id=user.id, reason=SessionRevokeReason.ACCOUNT_DELETED)
    # Unpaid orders stop holding tickets; a payment that still goes through is refunded.
    from server.payment.orders import cancel_pending_orders  # noqa: PLC0415 - orders imports profile

    await cancel_pending_orders(
        session, user_id=user.id, reason="account closed", now=datetime.datetime.now(datetime.UTC)
    )
    by_admin = principal.user_id != user.id
    await record_activity(
        session,
        user_id=user.id,
        kind=ActivityKind.ACCOUNT_DELETED,
        details={"by": "admin"} if by_admin else {},
    )
    await record_audit(
        session,
        actor=principal,
        action="user.delete",
        resource_name=user_name(user.id),
        before={"status": before_status},
        after={"status": "DELETED"},
    )
