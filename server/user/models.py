"""Tables of UserService: accounts, their addresses, phones and identity documents (KYC),
in-app notifications and their preferences, and responsible-play limits and self-exclusions.

Every table here is user-owned: row level security limits it to `amesa.user_id` (migration 0001).
Credentials (sessions, tokens, TOTP, OAuth identities) live in server/auth/models.py.
"""

from __future__ import annotations

import datetime
import enum
import uuid

from sqlalchemy import (
    CHAR,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, CITEXT
from sqlalchemy.orm import Mapped, mapped_column

from server.core.orm import (
    FALSE,
    TRUE,
    Base,
    MinorUnits,
    SoftDelete,
    TextEnum,
    Timestamps,
    UUIDPrimaryKey,
    currency_check,
    encrypted_check,
    enum_check,
    non_negative,
)

# Largest identity document file accepted by UploadIdentityDocument (SPEC §3: ≤ 10 MB).
MAX_IDENTITY_DOCUMENT_BYTES = 10 * 1024 * 1024


class UserStatus(enum.StrEnum):
    """The stored part of `amesa.user.v1.UserStatus`. SELF_EXCLUDED is not stored: it is derived
    from `self_exclusions` when read, so it ends by itself without a job flipping it back."""

    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    # Closed by DeleteUser: `delete_time` is set, PII is anonymised after the grace period.
    DELETED = "DELETED"


class KycStatus(enum.StrEnum):
    """Follows the latest review of the user's identity documents."""

    NOT_STARTED = "NOT_STARTED"
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class Role(enum.StrEnum):
    """`amesa.user.v1.Role`. Access tokens spell them in lower case in the `roles` claim."""

    USER = "USER"
    ADMIN = "ADMIN"


class IdentityDocumentType(enum.StrEnum):
    PASSPORT = "PASSPORT"
    NATIONAL_ID = "NATIONAL_ID"
    DRIVING_LICENCE = "DRIVING_LICENCE"


class IdentityDocumentState(enum.StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class IdentityDocumentContentType(enum.StrEnum):
    """Detected from the file's bytes, never from its name."""

    JPEG = "image/jpeg"
    PNG = "image/png"
    PDF = "application/pdf"


class NotificationCategory(enum.StrEnum):
    ACCOUNT = "ACCOUNT"
    DRAWS = "DRAWS"
    MARKETING = "MARKETING"
    PURCHASES = "PURCHASES"


class PlayLimitPeriod(enum.StrEnum):
    DAILY = "DAILY"
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"


class User(UUIDPrimaryKey, Timestamps, SoftDelete, Base):
    """An account, `users/{id}`. Rows are never deleted: DeleteUser sets `delete_time` and the
    anonymisation job later overwrites the PII (financial records keep pointing here)."""

    __tablename__ = "users"
    __table_args__ = (
        enum_check("status", UserStatus),
        enum_check("kyc_status", KycStatus),
        CheckConstraint(
            "(status = 'DELETED') = (delete_time IS NOT NULL)", name="deleted_iff_delete_time"
        ),
        CheckConstraint(
            "roles <@ ARRAY[" + ", ".join(f"'{role.value}'" for role in Role) + "]::text[]",
            name="roles_valid",
        ),
        encrypted_check("birth_date"),
    )

    # Case-insensitive and unique (CITEXT): `Foo@x.org` and `foo@x.org` are one account.
    email: Mapped[str] = mapped_column(CITEXT(), unique=True)
    # Set when the user proved they receive mail at `email`.
    email_verify_time: Mapped[datetime.datetime | None]
    # A requested new address, waiting for its verification link (UpdateUser on `email`).
    pending_email: Mapped[str | None] = mapped_column(CITEXT())
    # argon2id (PHC string), or a legacy bcrypt hash until the next successful login rehashes it;
    # NULL for accounts that only sign in with OAuth.
    password_hash: Mapped[str | None]
    password_change_time: Mapped[datetime.datetime | None]
    given_name: Mapped[str]
    family_name: Mapped[str]
    # Birth date (ISO `YYYY-MM-DD`) encrypted with AES-GCM; the blind index (keyed hash) allows
    # equality lookups such as duplicate-identity checks without decrypting. NULL only after
    # anonymisation.
    birth_date_ciphertext: Mapped[bytes | None]
    birth_date_key_id: Mapped[str | None]
    birth_date_blind_index: Mapped[bytes | None]
    # BCP-47 tag of the preferred language for emails, SMS and the UI.
    preferred_language: Mapped[str] = mapped_column(server_default=text("'en'"))
    accepted_terms_version: Mapped[str | None]
    terms_accept_time: Mapped[datetime.datetime | None]
    marketing_opt_in: Mapped[bool] = mapped_column(server_default=FALSE)
    status: Mapped[UserStatus] = mapped_column(
        TextEnum(UserStatus), server_default=text("'ACTIVE'")
    )
    # The admin's reason for the last status change, shown to the user.
    status_reason: Mapped[str | None]
    status_change_time: Mapped[datetime.datetime | None]
    kyc_status: Mapped[KycStatus] = mapped_column(
        TextEnum(KycStatus), server_default=text("'NOT_STARTED'")
    )
    # Every account holds USER; SetUserRoles adds or removes ADMIN.
    roles: Mapped[list[str]] = mapped_column(
        ARRAY(Text()), server_default=text("ARRAY['USER']::text[]")
    )
    last_login_time: Mapped[datetime.datetime | None]
    # Set by the job that anonymises closed accounts after the grace period.
    anonymize_time: Mapped[datetime.datetime | None]


class UserAddress(UUIDPrimaryKey, Timestamps, Base):
    """`users/{user}/addresses/{id}`."""

    __tablename__ = "user_addresses"
    __table_args__ = (
        CheckConstraint("country_code ~ '^[A-Z]{2}$'", name="country_code_iso3166"),
        # At most one primary address per user ("primary" itself is an SQL reserved word).
        Index(
            "ix_user_addresses_user_id_primary",
            "user_id",
            unique=True,
            postgresql_where=text("is_primary"),
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str | None]
    line1: Mapped[str]
    line2: Mapped[str | None]
    city: Mapped[str]
    region: Mapped[str | None]
    postal_code: Mapped[str | None]
    # ISO 3166-1 alpha-2.
    country_code: Mapped[str] = mapped_column(CHAR(2))
    is_primary: Mapped[bool] = mapped_column(server_default=FALSE)


class UserPhone(UUIDPrimaryKey, Timestamps, Base):
    """`users/{user}/phones/{id}`: an E.164 number, encrypted at rest.

    The blind index (keyed hash of the E.164 string) finds a number without decrypting; a number
    appears at most once in a user's list.
    """

    __tablename__ = "user_phones"
    __table_args__ = (
        encrypted_check("phone"),
        UniqueConstraint("user_id", "phone_blind_index"),
        # At most one primary phone (the SMS destination) per user.
        Index(
            "ix_user_phones_user_id_primary",
            "user_id",
            unique=True,
            postgresql_where=text("is_primary"),
        ),
        CheckConstraint("NOT is_primary OR verify_time IS NOT NULL", name="primary_is_verified"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    phone_ciphertext: Mapped[bytes]
    phone_key_id: Mapped[str]
    phone_blind_index: Mapped[bytes] = mapped_column(index=True)
    # Set when the user entered the SMS code sent to this number.
    verify_time: Mapped[datetime.datetime | None]
    is_primary: Mapped[bool] = mapped_column(server_default=FALSE)


class UserIdentityDocument(UUIDPrimaryKey, Timestamps, Base):
    """`users/{user}/identityDocuments/{id}`: a KYC document awaiting or having had review.

    The file is stored encrypted (AES-GCM) outside the database under a server-generated name;
    the document number is encrypted here, with a blind index to spot one document used by two
    accounts.
    """

    __tablename__ = "user_identity_documents"
    __table_args__ = (
        enum_check("document_type", IdentityDocumentType),
        enum_check("state", IdentityDocumentState),
        enum_check("content_type", IdentityDocumentContentType),
        encrypted_check("document_number"),
        # UploadIdentityDocument's idempotency key (migration 0002); NULLs never collide.
        UniqueConstraint("user_id", "request_id"),
        CheckConstraint("issuing_country ~ '^[A-Z]{2}$'", name="issuing_country_iso3166"),
        CheckConstraint(
            f"size_bytes > 0 AND size_bytes <= {MAX_IDENTITY_DOCUMENT_BYTES}",
            name="size_bytes_range",
        ),
        CheckConstraint(
            "(state = 'PENDING') = (review_time IS NULL)", name="review_time_iff_reviewed"
        ),
        Index("ix_user_identity_documents_user_id_create_time", "user_id", "create_time"),
        # The admins' review queue.
        Index(
            "ix_user_identity_documents_pending_create_time",
            "create_time",
            postgresql_where=text("state = 'PENDING'"),
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    document_type: Mapped[IdentityDocumentType] = mapped_column(TextEnum(IdentityDocumentType))
    # ISO 3166-1 alpha-2.
    issuing_country: Mapped[str] = mapped_column(CHAR(2))
    document_number_ciphertext: Mapped[bytes]
    document_number_key_id: Mapped[str]
    document_number_blind_index: Mapped[bytes] = mapped_column(index=True)
    # Shown to the user and in admin lists without decrypting the number.
    document_number_last4: Mapped[str]
    # Server-generated object name of the encrypted file; never derived from the upload's name.
    file_storage_name: Mapped[str] = mapped_column(unique=True)
    file_key_id: Mapped[str]
    # SHA-256 of the plaintext file, checked after decryption.
    file_sha256: Mapped[bytes]
    content_type: Mapped[IdentityDocumentContentType] = mapped_column(
        TextEnum(IdentityDocumentContentType)
    )
    size_bytes: Mapped[int] = mapped_column(BigInteger())
    state: Mapped[IdentityDocumentState] = mapped_column(
        TextEnum(IdentityDocumentState), server_default=text("'PENDING'")
    )
    review_reason: Mapped[str | None]
    reviewer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    review_time: Mapped[datetime.datetime | None]
    # The client's idempotency key of UploadIdentityDocument, when it sent one.
    request_id: Mapped[uuid.UUID | None]


class Notification(UUIDPrimaryKey, Timestamps, Base):
    """`users/{user}/notifications/{id}`: an in-app notification (also pushed live to
    WatchNotifications streams)."""

    __tablename__ = "notifications"
    __table_args__ = (
        enum_check("category", NotificationCategory),
        CheckConstraint("kind ~ '^[a-z][a-z0-9_]*([.][a-z0-9_]+)*$'", name="kind_format"),
        Index("ix_notifications_user_id_create_time", "user_id", "create_time"),
        # The unread badge and the unread filter of ListNotifications.
        Index(
            "ix_notifications_user_id_unread",
            "user_id",
            postgresql_where=text("read_time IS NULL"),
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    category: Mapped[NotificationCategory] = mapped_column(TextEnum(NotificationCategory))
    # Stable dotted event id clients switch on, e.g. "order.paid", "draw.won".
    kind: Mapped[str]
    title: Mapped[str]
    body: Mapped[str]
    # The resource it is about, e.g. "houses/{uuid}"; NULL when none.
    resource: Mapped[str | None]
    read_time: Mapped[datetime.datetime | None]
    # The outbox row it was delivered from: a redelivery after a crash inserts nothing. No
    # foreign key, because delivered outbox rows may be purged.
    outbox_id: Mapped[uuid.UUID | None] = mapped_column(unique=True)


class NotificationPreferences(UUIDPrimaryKey, Timestamps, Base):
    """`users/{user}/notificationPreferences` (a singleton): one boolean per channel and
    category. No row means the defaults below; security alerts ignore the grid."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), unique=True
    )
    # BCP-47 language of notifications; NULL: the user's preferred language.
    language: Mapped[str | None]
    account_email: Mapped[bool] = mapped_column(server_default=TRUE)
    account_sms: Mapped[bool] = mapped_column(server_default=FALSE)
    account_in_app: Mapped[bool] = mapped_column(server_default=TRUE)
    account_push: Mapped[bool] = mapped_column(server_default=TRUE)
    draws_email: Mapped[bool] = mapped_column(server_default=TRUE)
    draws_sms: Mapped[bool] = mapped_column(server_default=FALSE)
    draws_in_app: Mapped[bool] = mapped_column(server_default=TRUE)
    draws_push: Mapped[bool] = mapped_column(server_default=TRUE)
    # Marketing is opt-in per channel too (and needs `users.marketing_opt_in`).
    marketing_email: Mapped[bool] = mapped_column(server_default=FALSE)
    marketing_sms: Mapped[bool] = mapped_column(server_default=FALSE)
    marketing_in_app: Mapped[bool] = mapped_column(server_default=FALSE)
    marketing_push: Mapped[bool] = mapped_column(server_default=FALSE)
    purchases_email: Mapped[bool] = mapped_column(server_default=TRUE)
    purchases_sms: Mapped[bool] = mapped_column(server_default=FALSE)
    purchases_in_app: Mapped[bool] = mapped_column(server_default=TRUE)
    purchases_push: Mapped[bool] = mapped_column(server_default=TRUE)


class PlayLimit(UUIDPrimaryKey, Timestamps, Base):
    """A spend limit for one period (`amount_minor` NULL: none; 0 blocks all spending).

    Lowering applies at once; a raise or removal waits as `pending_*` until
    `pending_effective_time` (24 h later), so a limit cannot be lifted on impulse.
    """

    __tablename__ = "play_limits"
    __table_args__ = (
        enum_check("period", PlayLimitPeriod),
        currency_check(),
        UniqueConstraint("user_id", "period"),
        non_negative("amount_minor"),
        non_negative("pending_amount_minor"),
        CheckConstraint(
            "pending_amount_minor IS NULL OR pending_effective_time IS NOT NULL",
            name="pending_amount_has_effective_time",
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    period: Mapped[PlayLimitPeriod] = mapped_column(TextEnum(PlayLimitPeriod))
    amount_minor: Mapped[MinorUnits | None]
    currency: Mapped[str] = mapped_column(CHAR(3))
    # A pending change: a time with a NULL amount means "remove the limit" at that time.
    pending_amount_minor: Mapped[MinorUnits | None]
    pending_effective_time: Mapped[datetime.datetime | None]


class SelfExclusion(UUIDPrimaryKey, Timestamps, Base):
    """A self-exclusion, in force from `start_time` until `end_time` (NULL: permanent). Rows are
    only added or extended, never shortened (the service's rule)."""

    __tablename__ = "self_exclusions"
    __table_args__ = (
        CheckConstraint("end_time IS NULL OR end_time > start_time", name="end_after_start"),
        Index("ix_self_exclusions_user_id_end_time", "user_id", "end_time"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    start_time: Mapped[datetime.datetime]
    end_time: Mapped[datetime.datetime | None]
