"""TOTP two-factor authentication: enrolment, confirmation, disabling, and the check at sign-in.

The secret is encrypted (it must be read back to compute codes); backup codes are stored as
keyed hashes (the blind-index key) and spent with a conditional UPDATE; a TOTP code is accepted
once (`last_used_step` only moves forward).
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.auth import totp
from server.auth.alerts import security_alert
from server.auth.models import TotpBackupCode, TotpCredential
from server.core.audit import record_activity
from server.core.crypto import Encrypted, PiiCipher
from server.core.errors import (
    AmesaError,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)
from server.core.models import ActivityKind

SECRET_CONTEXT = "totp_credentials.secret"  # noqa: S105 - an encryption context name
BACKUP_CODE_CONTEXT = "totp_backup_codes.code"
ENROLL_LIFETIME = datetime.timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Enrollment:
    secret: str
    otpauth_uri: str
    expire_time: datetime.datetime


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _secret(cipher: PiiCipher, credential: TotpCredential) -> str:
    return cipher.decrypt(
        Encrypted(ciphertext=credential.secret_ciphertext, key_id=credential.secret_key_id),
        context=SECRET_CONTEXT,
    )


def _backup_hash(cipher: PiiCipher, code: str) -> bytes:
    return cipher.blind_index(totp.normalize_backup_code(code), context=BACKUP_CODE_CONTEXT)


async def _credential(session: AsyncSession, user_id: uuid.UUID) -> TotpCredential | None:
    return await session.scalar(
        select(TotpCredential).where(TotpCredential.user_id == user_id).with_for_update()
    )


async def is_enabled(session: AsyncSession, user_id: uuid.UUID) -> bool:
    credential = await _credential(session, user_id)
    return credential is not None and credential.confirm_time is not None


async def _accept_code(
    session: AsyncSession, *, cipher: PiiCipher, credential: TotpCredential, code: str
) -> bool:
    step = totp.matching_step(
        _secret(cipher, credential), code, after_step=credential.last_used_step
    )
    if step is None:
        return False
    credential.last_used_step = step
    await session.flush()
    return True


async def _spend_backup_code(
    session: AsyncSession, *, cipher: PiiCipher, user_id: uuid.UUID, code: str
) -> bool:
    spent = await session.scalar(
        update(TotpBackupCode)
        .where(
            TotpBackupCode.user_id == user_id,
            TotpBackupCode.code_hash == _backup_hash(cipher, code),
            TotpBackupCode.use_time.is_(None),
        )
        .values(use_time=func.now())
        .returning(TotpBackupCode.id)
    )
    return spent is not None


async def _check_factor(
    session: AsyncSession,
    *,
    cipher: PiiCipher,
    credential: TotpCredential,
    totp_code: str | None,
    backup_code: str | None,
) -> bool:
    if totp_code:
        return await _accept_code(session, cipher=cipher, credential=credential, code=totp_code)
    assert backup_code
    return await _spend_backup_code(
        session, cipher=cipher, user_id=credential.user_id, code=backup_code
    )


async def check_at_sign_in(
    session: AsyncSession,
    *,
    cipher: PiiCipher,
    user_id: uuid.UUID,
    totp_code: str | None,
    backup_code: str | None,
) -> AmesaError | None:
    """None when the account has no TOTP or the factor is right; else TOTP_REQUIRED or
    TOTP_INVALID (returned, so a spent code or step commits with the failure's activity)."""
    credential = await _credential(session, user_id)
    if credential is None or credential.confirm_time is None:
        return None
    if not totp_code and not backup_code:
        return Unauthenticated(
            "TOTP_REQUIRED", "enter the code from your authenticator app or a backup code"
        )
    if await _check_factor(
        session, cipher=cipher, credential=credential, totp_code=totp_code, backup_code=backup_code
    ):
        return None
    return Unauthenticated("TOTP_INVALID", "the code is wrong, already used or expired")


async def enroll(
    session: AsyncSession, *, cipher: PiiCipher, user_id: uuid.UUID, email: str
) -> Enrollment:
    """A new pending secret (replacing a pending one). The caller checked the password."""
    credential = await _credential(session, user_id)
    if credential is not None and credential.confirm_time is not None:
        raise FailedPrecondition("TOTP_ALREADY_ENABLED", "two-factor authentication is enabled")
    if credential is not None:
        await session.delete(credential)
        await session.flush()
    secret = totp.new_secret()
    encrypted = cipher.encrypt(secret, context=SECRET_CONTEXT)
    expire_time = _now() + ENROLL_LIFETIME
    session.add(
        TotpCredential(
            id=uuid.uuid4(),
            user_id=user_id,
            secret_ciphertext=encrypted.ciphertext,
            secret_key_id=encrypted.key_id,
            enroll_expire_time=expire_time,
        )
    )
    await session.flush()
    return Enrollment(
        secret=secret,
        otpauth_uri=totp.provisioning_uri(secret, account=email),
        expire_time=expire_time,
    )


async def confirm(
    session: AsyncSession, *, cipher: PiiCipher, user_id: uuid.UUID, code: str
) -> list[str]:
    """Enables TOTP and returns the fresh backup codes (shown once)."""
    credential = await _credential(session, user_id)
    if credential is None:
        raise FailedPrecondition(
            "TOTP_ENROLLMENT_NOT_STARTED", "start enrolment with EnrollTotp first"
        )
    if credential.confirm_time is not None:
        raise FailedPrecondition("TOTP_ALREADY_ENABLED", "two-factor authentication is enabled")
    if credential.enroll_expire_time <= _now():
        raise FailedPrecondition(
            "TOTP_ENROLLMENT_EXPIRED", "the enrolment expired; call EnrollTotp again"
        )
    if not await _accept_code(session, cipher=cipher, credential=credential, code=code):
        raise InvalidArgument("TOTP_INVALID", "the code does not match; check the app's clock")
    credential.confirm_time = _now()
    await session.execute(delete(TotpBackupCode).where(TotpBackupCode.user_id == user_id))
    codes = totp.new_backup_codes()
    session.add_all(
        TotpBackupCode(id=uuid.uuid4(), user_id=user_id, code_hash=_backup_hash(cipher, code))
        for code in codes
    )
    await record_activity(
        session, user_id=user_id, kind=ActivityKind.TOTP_CHANGED, details={"change": "enabled"}
    )
    await session.flush()
    return codes


async def disable(
    session: AsyncSession,
    *,
    cipher: PiiCipher,
    user_id: uuid.UUID,
    totp_code: str | None,
    backup_code: str | None,
) -> None:
    credential = await _credential(session, user_id)
    if credential is None or credential.confirm_time is None:
        raise FailedPrecondition("TOTP_NOT_ENABLED", "two-factor authentication is not enabled")
    if not await _check_factor(
        session, cipher=cipher, credential=credential, totp_code=totp_code, backup_code=backup_code
    ):
        raise PermissionDenied("TOTP_INVALID", "the code is wrong, already used or expired")
    await session.execute(delete(TotpBackupCode).where(TotpBackupCode.user_id == user_id))
    await session.delete(credential)
    await record_activity(
        session, user_id=user_id, kind=ActivityKind.TOTP_CHANGED, details={"change": "disabled"}
    )
    await security_alert(session, user_id=user_id, alert="totp_disabled")
    await session.flush()
