"""Tables of AuthService: linked OAuth identities, sessions and their refresh tokens, email link
tokens, phone verification codes, TOTP secrets and backup codes.

Every table is user-owned (row level security on `user_id`). Secrets are never stored in clear:
tokens and codes as hashes, the TOTP secret encrypted (it must be read back to check codes).
"""

from __future__ import annotations

import datetime
import enum
import uuid

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import CITEXT, INET
from sqlalchemy.orm import Mapped, mapped_column

from server.core.orm import (
    FALSE,
    ZERO,
    Base,
    IPAddress,
    TextEnum,
    Timestamps,
    UUIDPrimaryKey,
    encrypted_check,
    enum_check,
)


class SessionRevokeReason(enum.StrEnum):
    LOGOUT = "LOGOUT"
    USER_REVOKED = "USER_REVOKED"
    PASSWORD_CHANGED = "PASSWORD_CHANGED"
    PASSWORD_RESET = "PASSWORD_RESET"
    # A rotated refresh token was presented again: the family is presumed stolen.
    REFRESH_TOKEN_REUSED = "REFRESH_TOKEN_REUSED"
    ACCOUNT_SUSPENDED = "ACCOUNT_SUSPENDED"
    ACCOUNT_DELETED = "ACCOUNT_DELETED"
    SELF_EXCLUDED = "SELF_EXCLUDED"
    ADMIN_REVOKED = "ADMIN_REVOKED"


class VerificationPurpose(enum.StrEnum):
    EMAIL_VERIFICATION = "EMAIL_VERIFICATION"
    PASSWORD_RESET = "PASSWORD_RESET"


class UserIdentity(UUIDPrimaryKey, Timestamps, Base):
    """`users/{user}/oauthIdentities/{id}`: a provider account linked to a user. Linked only by
    sign-up through the provider or an explicit, signed-in link call — never by email match."""

    __tablename__ = "user_identities"
    __table_args__ = (
        CheckConstraint("provider ~ '^[a-z][a-z0-9_-]{1,31}$'", name="provider_id"),
        UniqueConstraint("provider", "subject"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # Provider id as configured on the server ("google", "apple", …).
    provider: Mapped[str]
    # The provider's stable user id (the ID token's `sub`).
    subject: Mapped[str]
    # The email the provider asserted at the last sign-in or link, and whether it said verified.
    email: Mapped[str | None] = mapped_column(CITEXT())
    email_verified: Mapped[bool] = mapped_column(server_default=FALSE)
    last_login_time: Mapped[datetime.datetime | None]


class UserSession(UUIDPrimaryKey, Timestamps, Base):
    """`users/{user}/sessions/{id}`: one signed-in device, i.e. one refresh-token family; `id` is
    the access token's `sid`. Ends at `revoke_time`, or when used after either expiry time."""

    __tablename__ = "sessions"
    __table_args__ = (
        enum_check("revoke_reason", SessionRevokeReason),
        CheckConstraint(
            "(revoke_time IS NULL) = (revoke_reason IS NULL)", name="revoke_reason_iff_revoked"
        ),
        CheckConstraint("idle_expire_time <= absolute_expire_time", name="idle_within_absolute"),
        Index("ix_sessions_user_id_last_use_time", "user_id", "last_use_time"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # Human-readable device summary ("Firefox on Windows") and the raw user agent (≤ 512 chars).
    device: Mapped[str | None]
    user_agent: Mapped[str | None]
    # Client IP of the most recent use.
    ip_address: Mapped[IPAddress | None] = mapped_column(INET())
    last_use_time: Mapped[datetime.datetime] = mapped_column(server_default=func.now())
    # Moves forward on every refresh (7 days after the last use), capped by the absolute expiry
    # (30 days after sign-in); the limits that applied at the time are kept with the session.
    idle_expire_time: Mapped[datetime.datetime]
    absolute_expire_time: Mapped[datetime.datetime]
    revoke_time: Mapped[datetime.datetime | None]
    revoke_reason: Mapped[SessionRevokeReason | None] = mapped_column(TextEnum(SessionRevokeReason))


class RefreshToken(UUIDPrimaryKey, Timestamps, Base):
    """A refresh token of a session, stored as its SHA-256 only (the token has 256 random bits,
    so a fast hash suffices). Rotation sets `rotate_time` on the presented token with a
    conditional UPDATE and inserts its successor; presenting a token whose `rotate_time` is set is
    reuse and revokes the whole session."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        # Exactly one live token per session: two concurrent refreshes cannot both succeed.
        Index(
            "ix_refresh_tokens_session_id_live",
            "session_id",
            unique=True,
            postgresql_where=text("rotate_time IS NULL"),
        ),
    )

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    # Denormalised from the session for row level security.
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[bytes] = mapped_column(unique=True)
    rotate_time: Mapped[datetime.datetime | None]


class VerificationToken(UUIDPrimaryKey, Timestamps, Base):
    """A single-use link token (email verification, password reset), stored as its SHA-256."""

    __tablename__ = "verification_tokens"
    __table_args__ = (
        enum_check("purpose", VerificationPurpose),
        Index("ix_verification_tokens_user_id_purpose", "user_id", "purpose"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[VerificationPurpose] = mapped_column(TextEnum(VerificationPurpose))
    token_hash: Mapped[bytes] = mapped_column(unique=True)
    # The address the link was sent to: verifying it verifies this address (an email change
    # verifies the new address, and a link for a superseded address does nothing).
    email: Mapped[str] = mapped_column(CITEXT())
    expire_time: Mapped[datetime.datetime]
    consume_time: Mapped[datetime.datetime | None]


class PhoneVerification(UUIDPrimaryKey, Timestamps, Base):
    """A 6-digit SMS code for one of the user's phones: keyed hash only (a plain hash of 10⁶
    possibilities is reversible), 10-minute life, limited attempts counted atomically."""

    __tablename__ = "phone_verifications"
    __table_args__ = (
        CheckConstraint("attempt_count >= 0", name="attempt_count_non_negative"),
        CheckConstraint("attempt_count <= max_attempts", name="attempts_within_max"),
        Index("ix_phone_verifications_phone_id_create_time", "phone_id", "create_time"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    phone_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_phones.id", ondelete="CASCADE"))
    code_hash: Mapped[bytes]
    attempt_count: Mapped[int] = mapped_column(server_default=ZERO)
    max_attempts: Mapped[int] = mapped_column(server_default=text("5"))
    expire_time: Mapped[datetime.datetime]
    verify_time: Mapped[datetime.datetime | None]


class TotpCredential(UUIDPrimaryKey, Timestamps, Base):
    """The user's RFC 6238 secret. Pending (EnrollTotp) until `confirm_time` is set by a first
    valid code (ConfirmTotp) before `enroll_expire_time`; enforced at login only once confirmed."""

    __tablename__ = "totp_credentials"
    __table_args__ = (encrypted_check("secret"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), unique=True
    )
    secret_ciphertext: Mapped[bytes]
    secret_key_id: Mapped[str]
    enroll_expire_time: Mapped[datetime.datetime]
    confirm_time: Mapped[datetime.datetime | None]
    # The last accepted 30-second time step: a code is accepted once (no replay in its window).
    last_used_step: Mapped[int | None] = mapped_column(BigInteger())


class TotpBackupCode(UUIDPrimaryKey, Timestamps, Base):
    """A one-time backup code (keyed hash); spent by setting `use_time` conditionally."""

    __tablename__ = "totp_backup_codes"
    __table_args__ = (UniqueConstraint("user_id", "code_hash"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_hash: Mapped[bytes]
    use_time: Mapped[datetime.datetime | None]
