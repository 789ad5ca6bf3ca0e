"""Shared-kernel tables written by every service: the outbox, the audit and activity logs, and
the leases that keep each background job on one replica at a time."""

from __future__ import annotations

import datetime
import enum
import uuid
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, func, text
from sqlalchemy.dialects.postgresql import INET
from sqlalchemy.orm import Mapped, mapped_column

from server.core.orm import (
    EMPTY_JSONB,
    ZERO,
    Base,
    CreateTime,
    IPAddress,
    TextEnum,
    Timestamps,
    UUIDPrimaryKey,
    enum_check,
)


class OutboxState(enum.StrEnum):
    # Waiting for (another) delivery attempt at `available_time`.
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    # Gave up after `max_attempts` (dead letter): kept for inspection and manual replay.
    DEAD = "DEAD"


class AuditActorKind(enum.StrEnum):
    USER = "USER"
    ADMIN = "ADMIN"
    # Background jobs (scheduler, reconciler) and provider webhooks.
    SYSTEM = "SYSTEM"


class ActivityKind(enum.StrEnum):
    """`amesa.user.v1.ActivityKind`: what ListActivity shows a user about their own account."""

    LOGIN_SUCCEEDED = "LOGIN_SUCCEEDED"
    LOGIN_FAILED = "LOGIN_FAILED"
    LOGOUT = "LOGOUT"
    SESSION_REVOKED = "SESSION_REVOKED"
    REFRESH_TOKEN_REUSED = "REFRESH_TOKEN_REUSED"
    PASSWORD_CHANGED = "PASSWORD_CHANGED"
    EMAIL_CHANGED = "EMAIL_CHANGED"
    PHONE_CHANGED = "PHONE_CHANGED"
    TOTP_CHANGED = "TOTP_CHANGED"
    OAUTH_IDENTITY_CHANGED = "OAUTH_IDENTITY_CHANGED"
    PROFILE_UPDATED = "PROFILE_UPDATED"
    IDENTITY_DOCUMENT = "IDENTITY_DOCUMENT"
    PLAY_LIMITS_CHANGED = "PLAY_LIMITS_CHANGED"
    SELF_EXCLUDED = "SELF_EXCLUDED"
    PURCHASE = "PURCHASE"
    REFUND = "REFUND"
    ACCOUNT_STATUS_CHANGED = "ACCOUNT_STATUS_CHANGED"
    ACCOUNT_DELETED = "ACCOUNT_DELETED"


class Outbox(UUIDPrimaryKey, Timestamps, Base):
    """Work to do after a commit — notifications by channel, provider calls — written in the same
    transaction as the business change, so neither is lost without the other.

    A dispatcher claims due rows by pushing `available_time` forward (a lease) with
    `FOR UPDATE SKIP LOCKED`, delivers outside any transaction, then marks the row DELIVERED or
    schedules the retry with backoff; after `max_attempts` the row goes DEAD.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        enum_check("state", OutboxState),
        CheckConstraint("topic ~ '^[a-z][a-z0-9_.]*$'", name="topic_format"),
        CheckConstraint("attempt_count >= 0", name="attempt_count_non_negative"),
        CheckConstraint("max_attempts > 0", name="max_attempts_positive"),
        # The dispatcher's claim query: due rows first.
        Index(
            "ix_outbox_pending_available_time",
            "available_time",
            postgresql_where=text("state = 'PENDING'"),
        ),
    )

    # What to do, e.g. "notification.email", "notification.sms", "notification.in_app",
    # "payment.refund"; the dispatcher routes on it.
    topic: Mapped[str]
    # The recipient, when there is one (preferences and self-exclusion are checked at delivery).
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    payload: Mapped[dict[str, Any]] = mapped_column(server_default=EMPTY_JSONB)
    # Makes enqueueing idempotent, e.g. "receipt:{order_id}": a retried fulfilment enqueues once.
    dedupe_key: Mapped[str | None] = mapped_column(unique=True)
    state: Mapped[OutboxState] = mapped_column(
        TextEnum(OutboxState), server_default=text("'PENDING'")
    )
    attempt_count: Mapped[int] = mapped_column(server_default=ZERO)
    max_attempts: Mapped[int] = mapped_column(server_default=text("8"))
    # Not before this time: the next attempt (backoff) or the end of a claim's lease.
    available_time: Mapped[datetime.datetime] = mapped_column(server_default=func.now())
    last_error: Mapped[str | None]
    deliver_time: Mapped[datetime.datetime | None]


class AuditLog(UUIDPrimaryKey, CreateTime, Base):
    """Append-only record of every admin action and every change to money, tickets, draws, KYC
    and roles. The application role may only INSERT and SELECT, and a trigger refuses UPDATE and
    DELETE from anyone (migration 0001), so history cannot be rewritten through the app."""

    __tablename__ = "audit_log"
    __table_args__ = (
        enum_check("actor_kind", AuditActorKind),
        Index("ix_audit_log_resource_name_create_time", "resource_name", "create_time"),
        Index("ix_audit_log_actor_user_id_create_time", "actor_user_id", "create_time"),
    )

    actor_kind: Mapped[AuditActorKind] = mapped_column(TextEnum(AuditActorKind))
    # No foreign key: the audit trail must not constrain (or be constrained by) the rows it
    # describes.
    actor_user_id: Mapped[uuid.UUID | None]
    # Dotted verb, e.g. "lottery.house.publish", "payment.order.refund", "user.roles.set".
    action: Mapped[str]
    # The AIP resource name acted on, e.g. "houses/{uuid}".
    resource_name: Mapped[str]
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    request_id: Mapped[str | None]
    ip_address: Mapped[IPAddress | None] = mapped_column(INET())


class ActivityLog(UUIDPrimaryKey, CreateTime, Base):
    """A user's own security and purchase history (ListActivity). Append-only by convention; it
    is user-owned, so row level security shows each user only their rows."""

    __tablename__ = "activity_log"
    __table_args__ = (
        enum_check("kind", ActivityKind),
        Index("ix_activity_log_user_id_create_time", "user_id", "create_time"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[ActivityKind] = mapped_column(TextEnum(ActivityKind))
    # Client address and user agent as seen by Envoy; NULL for the server's own actions.
    ip_address: Mapped[IPAddress | None] = mapped_column(INET())
    user_agent: Mapped[str | None]
    # Text key/value pairs (`session`, `order`, `amount`, `provider`, `by`…); never secrets.
    details: Mapped[dict[str, Any]] = mapped_column(server_default=EMPTY_JSONB)
    request_id: Mapped[str | None]


class JobLease(UUIDPrimaryKey, Timestamps, Base):
    """One row per background job. A replica runs a job only after taking its lease with
    `UPDATE … SET owner = me, lease_expire_time = now() + ttl WHERE name = … AND
    (lease_expire_time IS NULL OR lease_expire_time < now() OR owner = me)`: a crashed replica's
    lease simply expires. The row also shows when each job last ran and why it last failed."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(unique=True)
    owner: Mapped[str | None]
    lease_expire_time: Mapped[datetime.datetime | None]
    last_start_time: Mapped[datetime.datetime | None]
    last_success_time: Mapped[datetime.datetime | None]
    last_error: Mapped[str | None]
