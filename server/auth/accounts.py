"""Registration, sign-in with a password, and password changes and resets."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth import second_factor
from server.auth.alerts import security_alert
from server.auth.models import SessionRevokeReason, VerificationPurpose
from server.auth.outcome import Outcome, failed, succeeded
from server.auth.passwords import hash_password, needs_rehash, verify_password
from server.auth.policy import check_new_password
from server.auth.sessions import (
    IssuedRefresh,
    revoke_all_sessions,
    rotate_refresh_token,
    start_session,
)
from server.auth.verification import consume_token, issue_email_verification, issue_password_reset
from server.content.models import Language
from server.core.audit import record_activity
from server.core.crypto import PiiCipher
from server.core.errors import (
    AlreadyExists,
    AmesaError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)
from server.core.models import ActivityKind
from server.core.tokens import AccessTokenSigner, IssuedToken
from server.user.accounts import age_on, setting
from server.user.models import SelfExclusion, User, UserStatus

DEFAULT_MINIMUM_AGE = 18
# The terms version new accounts must accept, unless the `terms_version` setting says otherwise.
DEFAULT_TERMS_VERSION = "2026-01"
BIRTH_DATE_CONTEXT = "users.birth_date"

# Verified when the email is unknown or the account has no password, so that every failed login
# costs one argon2id verification (comparable timing; no account enumeration).
TIMING_DUMMY_HASH = (
    "$argon2id$v=19$m=19456,t=2,p=1$WdR1VIH6UvU2n0M/dEuIiQ$"
    "q77fO2g1rJb+FkhXMGmUV49pTUmKnhi3uW/gvBbzMfo"
)


@dataclass(frozen=True, slots=True)
class SignedIn:
    """What Register, Login and RefreshToken hand back."""

    user_id: uuid.UUID
    refresh: IssuedRefresh
    access: IssuedToken
    account_created: bool


def _invalid_credentials() -> Unauthenticated:
    return Unauthenticated("INVALID_CREDENTIALS", "the email or the password is wrong")


def access_roles(user: User) -> list[str]:
    return sorted(role.lower() for role in user.roles)


def sign_in_tokens(
    signer: AccessTokenSigner, *, user: User, refresh: IssuedRefresh, account_created: bool
) -> SignedIn:
    access = signer.issue(user_id=user.id, session_id=refresh.session.id, roles=access_roles(user))
    return SignedIn(
        user_id=user.id, refresh=refresh, access=access, account_created=account_created
    )


def _birth_date(year: int, month: int, day: int) -> datetime.date:
    try:
        birth_date = datetime.date(year, month, day)
    except ValueError:
        birth_date = None
    if birth_date is None or birth_date > datetime.datetime.now(datetime.UTC).date():
        raise InvalidArgument(
            "BIRTH_DATE_INVALID",
            "birth_date is not a real date in the past",
            violations=[FieldViolation("birth_date", "not a real date in the past")],
        )
    return birth_date


async def check_sign_up_details(
    session: AsyncSession,
    *,
    birth_year: int,
    birth_month: int,
    birth_day: int,
    language_code: str,
    accepted_terms_version: str,
    field_prefix: str = "",
) -> datetime.date:
    """The checks every new account passes (Register, OAuth sign-up); returns the birth date."""
    enabled = await session.scalar(
        select(Language.id).where(Language.language_code == language_code, Language.enabled)
    )
    if enabled is None:
        raise InvalidArgument(
            "LANGUAGE_NOT_SUPPORTED",
            f"language {language_code!r} is not supported",
            violations=[FieldViolation(f"{field_prefix}language_code", "not a supported language")],
        )
    current_terms = str(await setting(session, "terms_version", DEFAULT_TERMS_VERSION))
    if accepted_terms_version != current_terms:
        raise FailedPrecondition(
            "TERMS_VERSION_OUTDATED",
            "accept the current terms first",
            metadata={"current_version": current_terms},
        )
    birth_date = _birth_date(birth_year, birth_month, birth_day)
    minimum_age = int(await setting(session, "minimum_age", DEFAULT_MINIMUM_AGE))
    if age_on(birth_date, datetime.datetime.now(datetime.UTC).date()) < minimum_age:
        raise InvalidArgument(
            "UNDERAGE",
            f"you must be at least {minimum_age} to register",
            violations=[FieldViolation(f"{field_prefix}birth_date", f"younger than {minimum_age}")],
        )
    return birth_date


def _email_taken() -> AlreadyExists:
    return AlreadyExists("EMAIL_TAKEN", "an account already uses this email")


async def create_account(
    session: AsyncSession,
    *,
    cipher: PiiCipher,
    email: str,
    password_hash: str | None,
    email_verified: bool,
    given_name: str,
    family_name: str,
    birth_date: datetime.date,
    language_code: str,
    accepted_terms_version: str,
    marketing_opt_in: bool,
    email_taken: Callable[[], AmesaError],
) -> User:
    """Inserts a new account (Register, OAuth sign-up); the caller checked the details. An
    unverified email gets a verification link; `email_taken()` is raised when a concurrent
    registration took the email first."""
    now = datetime.datetime.now(datetime.UTC)
    iso_birth_date = birth_date.isoformat()
    encrypted = cipher.encrypt(iso_birth_date, context=BIRTH_DATE_CONTEXT)
    user = User(
        id=uuid.uuid4(),
        email=email,
        email_verify_time=now if email_verified else None,
        password_hash=password_hash,
        given_name=given_name,
        family_name=family_name,
        birth_date_ciphertext=encrypted.ciphertext,
        birth_date_key_id=encrypted.key_id,
        birth_date_blind_index=cipher.blind_index(iso_birth_date, context=BIRTH_DATE_CONTEXT),
        preferred_language=language_code,
        accepted_terms_version=accepted_terms_version,
        terms_accept_time=now,
        marketing_opt_in=marketing_opt_in,
        roles=["USER"],
    )
    session.add(user)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:  # a concurrent registration with the same email won
        raise email_taken() from None
    if not email_verified:
        await issue_email_verification(
            session, user_id=user.id, email=email, language=language_code
        )
    return user


async def register(
    session: AsyncSession,
    *,
    signer: AccessTokenSigner,
    cipher: PiiCipher,
    email: str,
    password: str,
    given_name: str,
    family_name: str,
    birth_year: int,
    birth_month: int,
    birth_day: int,
    language_code: str,
    accepted_terms_version: str,
    marketing_opt_in: bool,
) -> SignedIn:
    birth_date = await check_sign_up_details(
        session,
        birth_year=birth_year,
        birth_month=birth_month,
        birth_day=birth_day,
        language_code=language_code,
        accepted_terms_version=accepted_terms_version,
    )
    check_new_password(password, field="password")
    email = email.strip()
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise _email_taken()
    user = await create_account(
        session,
        cipher=cipher,
        email=email,
        password_hash=await hash_password(password),
        email_verified=False,
        given_name=given_name,
        family_name=family_name,
        birth_date=birth_date,
        language_code=language_code,
        accepted_terms_version=accepted_terms_version,
        marketing_opt_in=marketing_opt_in,
        email_taken=_email_taken,
    )
    refresh = await start_session(session, user_id=user.id)
    user.last_login_time = refresh.session.last_use_time
    await record_activity(
        session, user_id=user.id, kind=ActivityKind.LOGIN_SUCCEEDED, details={"method": "register"}
    )
    return sign_in_tokens(signer, user=user, refresh=refresh, account_created=True)


async def account_state_error(session: AsyncSession, user: User) -> AmesaError | None:
    """Why this account may not sign in (deleted, suspended, self-excluded), or None."""
    if user.status is UserStatus.DELETED or user.delete_time is not None:
        return FailedPrecondition("ACCOUNT_DELETED", "this account was closed")
    if user.status is UserStatus.SUSPENDED:
        return FailedPrecondition(
            "ACCOUNT_SUSPENDED",
            "this account is suspended",
            metadata={"reason": user.status_reason or ""},
        )
    now = datetime.datetime.now(datetime.UTC)
    exclusions = (
        await session.scalars(
            select(SelfExclusion).where(
                SelfExclusion.user_id == user.id,
                SelfExclusion.start_time <= now,
                or_(SelfExclusion.end_time.is_(None), SelfExclusion.end_time > now),
            )
        )
    ).all()
    if exclusions:
        ends = [exclusion.end_time for exclusion in exclusions]
        metadata = {} if None in ends else {"until": max(e for e in ends if e).isoformat()}
        return FailedPrecondition(
            "ACCOUNT_SELF_EXCLUDED", "you excluded yourself from playing", metadata=metadata
        )
    return None


async def login(
    session: AsyncSession,
    *,
    signer: AccessTokenSigner,
    cipher: PiiCipher,
    email: str,
    password: str,
    totp_code: str | None,
    backup_code: str | None,
) -> Outcome[SignedIn]:
    """Failures are returned (not raised) so that their activity entries commit."""
    user = await session.scalar(select(User).where(User.email == email.strip()))
    if user is None or user.password_hash is None:
        await verify_password(TIMING_DUMMY_HASH, password)
        return failed(_invalid_credentials())
    if not await verify_password(user.password_hash, password):
        await record_activity(
            session, user_id=user.id, kind=ActivityKind.LOGIN_FAILED, details={"reason": "password"}
        )
        return failed(_invalid_credentials())
    if needs_rehash(user.password_hash):
        user.password_hash = await hash_password(password)
    factor_error = await second_factor.check_at_sign_in(
        session, cipher=cipher, user_id=user.id, totp_code=totp_code, backup_code=backup_code
    )
    if factor_error is not None:
        if factor_error.reason == "TOTP_INVALID":
            await record_activity(
                session, user_id=user.id, kind=ActivityKind.LOGIN_FAILED, details={"reason": "totp"}
            )
        return failed(factor_error)
    state_error = await account_state_error(session, user)
    if state_error is not None:
        return failed(state_error)
    refresh = await start_session(session, user_id=user.id)
    user.last_login_time = refresh.session.last_use_time
    await record_activity(
        session, user_id=user.id, kind=ActivityKind.LOGIN_SUCCEEDED, details={"method": "password"}
    )
    return succeeded(sign_in_tokens(signer, user=user, refresh=refresh, account_created=False))


async def load_user(session: AsyncSession, user_id: uuid.UUID, *, lock: bool = False) -> User:
    statement = select(User).where(User.id == user_id)
    if lock:
        statement = statement.with_for_update()
    user = await session.scalar(statement)
    if user is None:
        # Only reachable by an administrator naming an unknown user, or a deleted token subject.
        raise Unauthenticated("TOKEN_INVALID", "the account of this token does not exist")
    return user


def _current_password_incorrect() -> PermissionDenied:
    return PermissionDenied("CURRENT_PASSWORD_INCORRECT", "the current password is wrong")


async def check_current_password(user: User, password: str) -> PermissionDenied | None:
    """For re-authentication (EnrollTotp, LinkOAuthIdentity): required when the account has a
    password. Returns the error instead of raising it."""
    if user.password_hash is None:
        return None
    if not password or not await verify_password(user.password_hash, password):
        return _current_password_incorrect()
    return None


async def change_password(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    current_session_id: uuid.UUID,
    current_password: str,
    new_password: str,
) -> Outcome[None]:
    user = await load_user(session, user_id, lock=True)
    if user.password_hash is None:
        raise FailedPrecondition(
            "PASSWORD_NOT_SET", "this account signs in with OAuth only; set a password first"
        )
    if not await verify_password(user.password_hash, current_password):
        return failed(_current_password_incorrect())
    check_new_password(new_password, field="new_password")
    await _set_password(session, user, new_password)
    await revoke_all_sessions(
        session,
        user_id=user.id,
        reason=SessionRevokeReason.PASSWORD_CHANGED,
        except_session_id=current_session_id,
    )
    await record_activity(
        session, user_id=user.id, kind=ActivityKind.PASSWORD_CHANGED, details={"method": "change"}
    )
    await security_alert(session, user_id=user.id, alert="password_changed")
    return succeeded(None)


async def _set_password(session: AsyncSession, user: User, password: str) -> None:
    user.password_hash = await hash_password(password)
    user.password_change_time = datetime.datetime.now(datetime.UTC)
    await session.flush()


async def request_password_reset(session: AsyncSession, *, email: str) -> None:
    """Emails a reset link when an open account has this email; silent otherwise."""
    user = await session.scalar(
        select(User).where(User.email == email.strip(), User.delete_time.is_(None))
    )
    if user is None:
        return
    await issue_password_reset(
        session, user_id=user.id, email=user.email, language=user.preferred_language
    )


async def reset_password(session: AsyncSession, *, token: str, new_password: str) -> None:
    check_new_password(new_password, field="new_password")
    stored = await consume_token(
        session, token=token, purpose=VerificationPurpose.PASSWORD_RESET, reason_prefix="RESET"
    )
    user = await load_user(session, stored.user_id, lock=True)
    if stored.email.casefold() != user.email.casefold():  # the account's email changed since
        raise InvalidArgument("RESET_TOKEN_INVALID", "the link is not valid; ask for a new one")
    await _set_password(session, user, new_password)
    if user.email_verify_time is None:  # the link proved the address
        user.email_verify_time = datetime.datetime.now(datetime.UTC)
    await revoke_all_sessions(session, user_id=user.id, reason=SessionRevokeReason.PASSWORD_RESET)
    await record_activity(
        session, user_id=user.id, kind=ActivityKind.PASSWORD_CHANGED, details={"method": "reset"}
    )
    await security_alert(session, user_id=user.id, alert="password_changed")


async def refresh(
    session: AsyncSession, *, signer: AccessTokenSigner, refresh_token: str
) -> Outcome[SignedIn]:
    """RefreshToken: rotation, then the account must still be allowed to sign in."""
    rotated = await rotate_refresh_token(session, refresh_token=refresh_token)
    if rotated.error is not None:
        return failed(rotated.error)
    issued = rotated.value()
    user = await load_user(session, issued.session.user_id)
    state_error = await account_state_error(session, user)
    if state_error is not None:
        raise state_error
    return succeeded(sign_in_tokens(signer, user=user, refresh=issued, account_created=False))


async def enroll_totp(
    session: AsyncSession, *, cipher: PiiCipher, user_id: uuid.UUID, current_password: str
) -> Outcome[second_factor.Enrollment]:
    user = await load_user(session, user_id)
    if await second_factor.is_enabled(session, user_id):
        raise FailedPrecondition("TOTP_ALREADY_ENABLED", "two-factor authentication is enabled")
    password_error = await check_current_password(user, current_password)
    if password_error is not None:
        return failed(password_error)
    return succeeded(
        await second_factor.enroll(session, cipher=cipher, user_id=user_id, email=user.email)
    )


async def resend_email_verification(session: AsyncSession, *, user_id: uuid.UUID) -> None:
    """A new link for the pending new email, else for the unverified account email."""
    user = await load_user(session, user_id)
    if user.pending_email:
        address = user.pending_email
    elif user.email_verify_time is None:
        address = user.email
    else:
        raise FailedPrecondition(
            "EMAIL_ALREADY_VERIFIED", "your email is verified and no change is pending"
        )
    await issue_email_verification(
        session, user_id=user.id, email=address, language=user.preferred_language
    )
