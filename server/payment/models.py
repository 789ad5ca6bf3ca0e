"""Tables of PaymentService: orders and the transaction ledger, saved payment methods and
provider customers, the webhook inbox, promotions and their redemptions.

Money is integer minor units next to an ISO 4217 `currency`; CHECK constraints pin the order
arithmetic so that no code path can charge an amount that does not follow from the tickets.
User-owned tables (row level security): orders, transactions, payment_methods,
payment_customers, promotion_redemptions.
"""

from __future__ import annotations

import datetime
import enum
import uuid
from typing import Any

from sqlalchemy import (
    CHAR,
    CheckConstraint,
    ForeignKey,
    Index,
    SmallInteger,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Mapped, mapped_column

from server.core.orm import (
    FALSE,
    ZERO,
    Base,
    MinorUnits,
    SoftDelete,
    TextEnum,
    Timestamps,
    UUIDPrimaryKey,
    currency_check,
    enum_check,
    non_negative,
)


class PaymentProvider(enum.StrEnum):
    STRIPE = "STRIPE"
    PAYPAL = "PAYPAL"


class OrderState(enum.StrEnum):
    PENDING_PAYMENT = "PENDING_PAYMENT"
    PAID = "PAID"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"


class TransactionKind(enum.StrEnum):
    CHARGE = "CHARGE"
    REFUND = "REFUND"


class TransactionState(enum.StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class Order(UUIDPrimaryKey, Timestamps, Base):
    """`users/{user}/orders/{id}`: tickets reserved for a user, then paid (or released).

    `UNIQUE (user_id, request_id)` makes PurchaseTickets idempotent: a retry finds the first
    order. `reservation_release_time` makes releasing the reservation idempotent: only the
    UPDATE that sets it may give the tickets back to the house.
    """

    __tablename__ = "orders"
    __table_args__ = (
        enum_check("state", OrderState),
        enum_check("provider", PaymentProvider),
        currency_check(),
        UniqueConstraint("user_id", "request_id"),
        UniqueConstraint("provider", "provider_payment_reference"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price_minor > 0", name="unit_price_positive"),
        CheckConstraint("subtotal_minor = unit_price_minor * quantity", name="subtotal_arithmetic"),
        # A promotion never makes an order free: at least one ticket is paid for.
        CheckConstraint(
            "discount_minor >= 0 AND discount_minor <= subtotal_minor - unit_price_minor",
            name="discount_range",
        ),
        CheckConstraint("total_minor = subtotal_minor - discount_minor", name="total_arithmetic"),
        CheckConstraint(
            "refunded_minor >= 0 AND refunded_minor <= total_minor", name="refunded_range"
        ),
        CheckConstraint(
            "state NOT IN ('PAID', 'REFUNDED', 'PARTIALLY_REFUNDED') OR paid_time IS NOT NULL",
            name="paid_states_have_paid_time",
        ),
        CheckConstraint(
            "state <> 'PENDING_PAYMENT' OR reservation_release_time IS NULL",
            name="pending_holds_reservation",
        ),
        Index("ix_orders_user_id_create_time", "user_id", "create_time"),
        Index("ix_orders_house_id_state", "house_id", "state"),
        # The expiry job's scan.
        Index(
            "ix_orders_pending_expire_time",
            "expire_time",
            postgresql_where=text("state = 'PENDING_PAYMENT'"),
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    house_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("houses.id"))
    # The client's idempotency key of PurchaseTickets.
    request_id: Mapped[uuid.UUID]
    # Tickets in the order, free tickets of a promotion included.
    quantity: Mapped[int]
    unit_price_minor: Mapped[MinorUnits]
    subtotal_minor: Mapped[MinorUnits]
    discount_minor: Mapped[MinorUnits] = mapped_column(server_default=ZERO)
    total_minor: Mapped[MinorUnits]
    currency: Mapped[str] = mapped_column(CHAR(3))
    promotion_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("promotions.id"))
    # The code as applied (upper case).
    promotion_code: Mapped[str | None]
    state: Mapped[OrderState] = mapped_column(
        TextEnum(OrderState), server_default=text("'PENDING_PAYMENT'")
    )
    provider: Mapped[PaymentProvider] = mapped_column(TextEnum(PaymentProvider))
    # Stripe PaymentIntent "pi_…" or PayPal order id, once created (idempotency key = order id).
    provider_payment_reference: Mapped[str | None]
    payment_method_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("payment_methods.id", ondelete="SET NULL")
    )
    # The provider's failure code when FAILED, e.g. "card_declined".
    failure_reason: Mapped[str | None]
    refunded_minor: Mapped[MinorUnits] = mapped_column(server_default=ZERO)
    expire_time: Mapped[datetime.datetime]
    paid_time: Mapped[datetime.datetime | None]
    # When the reserved tickets went back to the house (expiry, failure, cancel).
    reservation_release_time: Mapped[datetime.datetime | None]


class Transaction(UUIDPrimaryKey, Timestamps, Base):
    """`users/{user}/transactions/{id}`: the ledger — one row per movement of money at a
    provider (a charge or a refund), recorded PENDING before the provider is called.

    `idempotency_key` is the key sent to the provider for that call; being unique, it makes "one
    ledger row per provider call" a database guarantee.
    """

    __tablename__ = "transactions"
    __table_args__ = (
        enum_check("kind", TransactionKind),
        enum_check("state", TransactionState),
        enum_check("provider", PaymentProvider),
        currency_check(),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        UniqueConstraint("provider", "provider_reference"),
        Index("ix_transactions_user_id_create_time", "user_id", "create_time"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), index=True)
    kind: Mapped[TransactionKind] = mapped_column(TextEnum(TransactionKind))
    state: Mapped[TransactionState] = mapped_column(
        TextEnum(TransactionState), server_default=text("'PENDING'")
    )
    amount_minor: Mapped[MinorUnits]
    currency: Mapped[str] = mapped_column(CHAR(3))
    provider: Mapped[PaymentProvider] = mapped_column(TextEnum(PaymentProvider))
    idempotency_key: Mapped[str] = mapped_column(unique=True)
    # The provider's id of this movement ("pi_…", "re_…", a PayPal capture or refund id).
    provider_reference: Mapped[str | None]
    # The provider's id of the payment it belongs to (for a refund, the refunded payment).
    provider_payment_reference: Mapped[str | None]
    # For refunds: the admin's reason or the automatic cause.
    reason: Mapped[str | None]
    failure_reason: Mapped[str | None]
    # The caller's request id (PurchaseTickets, RefundOrder); NULL for automatic refunds.
    request_id: Mapped[uuid.UUID | None]


class PaymentMethod(UUIDPrimaryKey, Timestamps, Base):
    """`users/{user}/paymentMethods/{id}`: a card saved at the provider. Only the provider's
    reference and display data are stored — never a card number."""

    __tablename__ = "payment_methods"
    __table_args__ = (
        enum_check("provider", PaymentProvider),
        UniqueConstraint("provider", "provider_reference"),
        CheckConstraint("last4 ~ '^[0-9]{4}$'", name="last4_digits"),
        CheckConstraint("exp_month BETWEEN 1 AND 12", name="exp_month_range"),
        CheckConstraint("exp_year BETWEEN 2000 AND 9999", name="exp_year_range"),
        # At most one default method per user.
        Index(
            "ix_payment_methods_user_id_default",
            "user_id",
            unique=True,
            postgresql_where=text("is_default"),
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[PaymentProvider] = mapped_column(TextEnum(PaymentProvider))
    # The provider's id of the method, e.g. Stripe "pm_…".
    provider_reference: Mapped[str]
    # Lower case as the provider reports it, e.g. "visa".
    brand: Mapped[str]
    last4: Mapped[str] = mapped_column(CHAR(4))
    exp_month: Mapped[int] = mapped_column(SmallInteger())
    exp_year: Mapped[int] = mapped_column(SmallInteger())
    is_default: Mapped[bool] = mapped_column(server_default=FALSE)


class PaymentCustomer(UUIDPrimaryKey, Timestamps, Base):
    """The user's customer object at a provider (Stripe "cus_…"), created on first need."""

    __tablename__ = "payment_customers"
    __table_args__ = (
        enum_check("provider", PaymentProvider),
        UniqueConstraint("user_id", "provider"),
        UniqueConstraint("provider", "provider_customer_id"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    provider: Mapped[PaymentProvider] = mapped_column(TextEnum(PaymentProvider))
    provider_customer_id: Mapped[str]


class ProviderEvent(UUIDPrimaryKey, Timestamps, Base):
    """The webhook inbox. `UNIQUE (provider, event_id)` applies each provider event once: a
    duplicate delivery finds the row already there. Events may arrive in any order, so handlers
    re-read the provider state rather than trusting the event's."""

    __tablename__ = "provider_events"
    __table_args__ = (
        enum_check("provider", PaymentProvider),
        UniqueConstraint("provider", "event_id"),
        CheckConstraint("attempt_count >= 0", name="attempt_count_non_negative"),
        Index(
            "ix_provider_events_unprocessed_create_time",
            "create_time",
            postgresql_where=text("process_time IS NULL"),
        ),
    )

    provider: Mapped[PaymentProvider] = mapped_column(TextEnum(PaymentProvider))
    # Stripe "evt_…", PayPal webhook event id.
    event_id: Mapped[str]
    # E.g. "payment_intent.succeeded", "PAYMENT.CAPTURE.COMPLETED".
    event_type: Mapped[str]
    # The verified event body.
    payload: Mapped[dict[str, Any]]
    process_time: Mapped[datetime.datetime | None]
    attempt_count: Mapped[int] = mapped_column(server_default=ZERO)
    last_error: Mapped[str | None]


class Promotion(UUIDPrimaryKey, Timestamps, SoftDelete, Base):
    """`promotions/{id}`: a code giving a percentage, a fixed amount or free tickets off.

    `uses_count` is moved by a conditional UPDATE in the purchase transaction and the CHECK
    `uses_within_max` stops it from passing `max_total_uses` under any concurrency.
    """

    __tablename__ = "promotions"
    __table_args__ = (
        # Stored upper case so that a plain unique index makes codes case-insensitively unique.
        CheckConstraint("code ~ '^[A-Z0-9][A-Z0-9_-]{2,31}$'", name="code_format"),
        CheckConstraint(
            "num_nonnulls(percent_off_bps, amount_off_minor, free_tickets) = 1",
            name="one_discount",
        ),
        CheckConstraint("percent_off_bps BETWEEN 1 AND 10000", name="percent_off_bps_range"),
        CheckConstraint("amount_off_minor > 0", name="amount_off_positive"),
        CheckConstraint(
            "(amount_off_minor IS NULL) = (amount_off_currency IS NULL)",
            name="amount_off_has_currency",
        ),
        currency_check("amount_off_currency"),
        CheckConstraint("free_tickets BETWEEN 1 AND 100", name="free_tickets_range"),
        CheckConstraint("valid_from < valid_until", name="valid_from_before_until"),
        non_negative("max_total_uses"),
        non_negative("max_uses_per_user"),
        non_negative("min_quantity"),
        non_negative("uses_count"),
        CheckConstraint(
            "max_total_uses = 0 OR uses_count <= max_total_uses", name="uses_within_max"
        ),
        # Unique among promotions that are not deleted: a deleted code can be reused.
        Index(
            "ix_promotions_code_live",
            "code",
            unique=True,
            postgresql_where=text("delete_time IS NULL"),
        ),
    )

    code: Mapped[str]
    description: Mapped[str] = mapped_column(server_default=text("''"))
    # Exactly one discount: basis points (1000 = 10 %), a fixed amount, or free tickets.
    percent_off_bps: Mapped[int | None]
    amount_off_minor: Mapped[MinorUnits | None]
    amount_off_currency: Mapped[str | None] = mapped_column(CHAR(3))
    free_tickets: Mapped[int | None]
    valid_from: Mapped[datetime.datetime | None]
    # Exclusive.
    valid_until: Mapped[datetime.datetime | None]
    # 0 = unlimited, as on the wire.
    max_total_uses: Mapped[int] = mapped_column(server_default=ZERO)
    max_uses_per_user: Mapped[int] = mapped_column(server_default=ZERO)
    min_quantity: Mapped[int] = mapped_column(server_default=ZERO)
    # Houses it applies to; empty for every house. (An array, not a join table: the list is
    # small, read whole, and validated by the service when written.)
    house_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(PG_UUID(as_uuid=True)), server_default=text("'{}'::uuid[]")
    )
    # Orders currently holding a redemption (released ones are subtracted).
    uses_count: Mapped[int] = mapped_column(server_default=ZERO)


class PromotionRedemption(UUIDPrimaryKey, Timestamps, Base):
    """A promotion used by an order, created in the order's transaction. Released (not deleted)
    when the order expires, is cancelled, fails or is fully refunded."""

    __tablename__ = "promotion_redemptions"
    __table_args__ = (
        currency_check(),
        non_negative("discount_minor"),
        Index("ix_promotion_redemptions_promotion_id_user_id", "promotion_id", "user_id"),
    )

    promotion_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("promotions.id"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), unique=True)
    discount_minor: Mapped[MinorUnits]
    currency: Mapped[str] = mapped_column(CHAR(3))
    release_time: Mapped[datetime.datetime | None]
