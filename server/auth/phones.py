"""Phone verification: a 6-digit SMS code for one of the user's phones (UserService's
`user_phones`; only its `verify_time` is written here).

The code is stored as a keyed hash bound to its verification row (a plain hash of 10⁶ values is
reversible), lives 10 minutes and allows 5 attempts, counted by a conditional UPDATE under the
row lock so that concurrent guesses cannot exceed the limit. Starting again replaces the code.
The clear code travels once, in the outbox payload of the SMS — unavoidable for a code sent by
SMS; the payload names the phone by id, never by number.
"""

from __future__ import annotations

import datetime
import hmac
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth.models import PhoneVerification
from server.auth.outcome import Outcome, failed, succeeded
from server.core.audit import record_activity
from server.core.context import Principal
from server.core.crypto import PiiCipher
from server.core.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from server.core.models import ActivityKind
from server.core.names import ME, parse_name
from server.core.outbox import enqueue
from server.user.models import User, UserPhone

CODE_LIFETIME = datetime.timedelta(minutes=10)
MAX_ATTEMPTS = 5
CODE_CONTEXT = "phone_verifications.code"


@dataclass(frozen=True, slots=True)
class StartedVerification:
    expire_time: datetime.datetime
    max_attempts: int


def _not_found() -> NotFound:
    return NotFound("PHONE_NOT_FOUND", "you have no phone with this name")


def phone_of(name: str, *, user_id: uuid.UUID, principal: Principal) -> uuid.UUID:
    """The phone id of `users/{user|me}/phones/{id}`; PHONE_NOT_FOUND when it names another
    user's phone than the request's user."""
    owner, phone = parse_name(name, "users", "phones", field="phone")
    owner_id = principal.user_id if owner == ME else uuid.UUID(owner)
    if owner_id != user_id:
        raise _not_found()
    return uuid.UUID(phone)


def _code_hash(cipher: PiiCipher, verification_id: uuid.UUID, code: str) -> bytes:
    return cipher.blind_index(f"{verification_id}:{code}", context=CODE_CONTEXT)


async def _phone(session: AsyncSession, *, user_id: uuid.UUID, phone_id: uuid.UUID) -> UserPhone:
    phone = await session.scalar(
        select(UserPhone)
        .where(UserPhone.id == phone_id, UserPhone.user_id == user_id)
        .with_for_update()
    )
    if phone is None:
        raise _not_found()
    if phone.verify_time is not None:
        raise FailedPrecondition("PHONE_ALREADY_VERIFIED", "this phone is already verified")
    return phone


async def start(
    session: AsyncSession, *, cipher: PiiCipher, user_id: uuid.UUID, phone_id: uuid.UUID
) -> StartedVerification:
    phone = await _phone(session, user_id=user_id, phone_id=phone_id)
    await session.execute(delete(PhoneVerification).where(PhoneVerification.phone_id == phone.id))
    code = f"{secrets.randbelow(10**6):06d}"
    verification_id = uuid.uuid4()
    expire_time = datetime.datetime.now(datetime.UTC) + CODE_LIFETIME
    session.add(
        PhoneVerification(
            id=verification_id,
            user_id=user_id,
            phone_id=phone.id,
            code_hash=_code_hash(cipher, verification_id, code),
            max_attempts=MAX_ATTEMPTS,
            expire_time=expire_time,
        )
    )
    language = await session.scalar(select(User.preferred_language).where(User.id == user_id))
    await enqueue(
        session,
        topic="sms.phone_code",
        payload={"phone_id": str(phone.id), "code": code, "language": language or "en"},
        user_id=user_id,
    )
    await session.flush()
    return StartedVerification(expire_time=expire_time, max_attempts=MAX_ATTEMPTS)


async def verify(
    session: AsyncSession,
    *,
    cipher: PiiCipher,
    user_id: uuid.UUID,
    phone_id: uuid.UUID,
    code: str,
) -> Outcome[None]:
    """A wrong code is returned (not raised) so that the spent attempt commits."""
    phone = await _phone(session, user_id=user_id, phone_id=phone_id)
    pending = await session.scalar(
        select(PhoneVerification)
        .where(PhoneVerification.phone_id == phone.id, PhoneVerification.verify_time.is_(None))
        .order_by(PhoneVerification.create_time.desc())
        .limit(1)
        .with_for_update()
    )
    if pending is None:
        raise FailedPrecondition(
            "PHONE_VERIFICATION_NOT_STARTED", "no code was sent; call StartPhoneVerification"
        )
    now = datetime.datetime.now(datetime.UTC)
    if pending.expire_time <= now:
        raise FailedPrecondition("PHONE_CODE_EXPIRED", "the code expired; start again")
    if pending.attempt_count >= pending.max_attempts:
        raise ResourceExhausted(
            "PHONE_CODE_ATTEMPTS_EXHAUSTED", "too many wrong codes; start again"
        )
    if not hmac.compare_digest(pending.code_hash, _code_hash(cipher, pending.id, code)):
        attempts = await session.scalar(
            update(PhoneVerification)
            .where(
                PhoneVerification.id == pending.id,
                PhoneVerification.attempt_count < PhoneVerification.max_attempts,
            )
            .values(attempt_count=PhoneVerification.attempt_count + 1)
            .returning(PhoneVerification.attempt_count)
        )
        remaining = pending.max_attempts - (
            attempts if attempts is not None else pending.max_attempts
        )
        return failed(
            InvalidArgument(
                "PHONE_CODE_INVALID",
                "the code is wrong",
                metadata={"attempts_remaining": str(remaining)},
            )
        )
    pending.verify_time = now
    phone.verify_time = now
    await record_activity(
        session,
        user_id=user_id,
        kind=ActivityKind.PHONE_CHANGED,
        details={"phone": f"users/{user_id}/phones/{phone.id}", "change": "verified"},
    )
    await session.flush()
    return succeeded(None)
