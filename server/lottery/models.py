"""Tables of LotteryService: houses with their lottery terms and ticket counters, images,
favorites, tickets, and the DRAW-1 records (entry log, signed tree heads, draws).

Only `favorites` and `tickets` are user-owned (row level security); the catalogue and the draw
records are public by design.
"""

from __future__ import annotations

import datetime
import enum
import uuid
from typing import Any

from geoalchemy2 import Geography, WKBElement
from sqlalchemy import (
    CHAR,
    BigInteger,
    CheckConstraint,
    Computed,
    Double,
    ForeignKey,
    Index,
    UniqueConstraint,
    column,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import Text

from server.core.orm import (
    EMPTY_JSONB,
    EMPTY_TEXT_ARRAY,
    FALSE,
    ZERO,
    Base,
    CreateTime,
    MinorUnits,
    SoftDelete,
    TextEnum,
    Timestamps,
    UUIDPrimaryKey,
    currency_check,
    enum_check,
    non_negative,
)

DRAW_ALGORITHM_VERSION = "AMESA-DRAW-1"

# The house search document. 'simple' (no stemming, no stop words) because listings are written
# in many languages; queries must use the same configuration, e.g.
# `search_vector @@ websearch_to_tsquery('simple', :q)` ranked with `ts_rank`. The two-argument
# to_tsvector with a constant configuration is immutable, as a generated column requires.
HOUSE_SEARCH_VECTOR = (
    "setweight(to_tsvector('simple'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('simple'::regconfig, coalesce(city, '')), 'B') || "
    "setweight(to_tsvector('simple'::regconfig, coalesce(description, '')), 'C')"
)

# DRAW-1 hashes timestamps as whole milliseconds: a stored time with microseconds would make the
# leaf or tree-head signature impossible to recompute from what the API shows.
_WHOLE_MILLISECONDS = "date_trunc('milliseconds', {0}) = {0}"


class HouseState(enum.StrEnum):
    DRAFT = "DRAFT"
    UPCOMING = "UPCOMING"
    ACTIVE = "ACTIVE"
    SOLD_OUT = "SOLD_OUT"
    CLOSED = "CLOSED"
    DRAWN = "DRAWN"
    CANCELLED = "CANCELLED"


class PropertyType(enum.StrEnum):
    HOUSE = "HOUSE"
    APARTMENT = "APARTMENT"
    VILLA = "VILLA"
    TOWNHOUSE = "TOWNHOUSE"
    PENTHOUSE = "PENTHOUSE"
    COTTAGE = "COTTAGE"
    OTHER = "OTHER"


class TicketState(enum.StrEnum):
    ACTIVE = "ACTIVE"
    WON = "WON"
    RESERVE = "RESERVE"
    NOT_WON = "NOT_WON"
    VOIDED = "VOIDED"


class DrawState(enum.StrEnum):
    SCHEDULED = "SCHEDULED"
    FROZEN = "FROZEN"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


class House(UUIDPrimaryKey, Timestamps, SoftDelete, Base):
    """`houses/{id}`: a listing and its lottery.

    Terms may be incomplete while DRAFT; from publication on they are complete and frozen. The
    counters are moved only by conditional updates (reserve, sell, release), and the CHECK
    `tickets_within_total` makes overselling impossible even for a buggy caller.
    """

    __tablename__ = "houses"
    __table_args__ = (
        enum_check("state", HouseState),
        enum_check("property_type", PropertyType),
        currency_check(),
        currency_check("property_value_currency"),
        CheckConstraint("country_code ~ '^[A-Z]{2}$'", name="country_code_iso3166"),
        non_negative("bedrooms"),
        non_negative("bathrooms"),
        non_negative("area_m2"),
        non_negative("property_value_minor"),
        CheckConstraint("ticket_price_minor > 0", name="ticket_price_positive"),
        non_negative("total_tickets"),
        non_negative("tickets_sold"),
        non_negative("tickets_reserved"),
        CheckConstraint(
            "tickets_sold + tickets_reserved <= total_tickets", name="tickets_within_total"
        ),
        CheckConstraint(
            "min_participation >= 0 AND min_participation <= total_tickets",
            name="min_participation_range",
        ),
        non_negative("max_tickets_per_order"),
        non_negative("max_tickets_per_user"),
        CheckConstraint("sales_open_time < sales_close_time", name="open_before_close"),
        CheckConstraint("sales_close_time < draw_time", name="close_before_draw"),
        CheckConstraint(
            "state = 'DRAFT' OR (ticket_price_minor IS NOT NULL AND currency IS NOT NULL"
            " AND total_tickets > 0 AND sales_open_time IS NOT NULL"
            " AND sales_close_time IS NOT NULL AND draw_time IS NOT NULL)",
            name="terms_complete_unless_draft",
        ),
        CheckConstraint(
            "(state = 'CANCELLED') = (cancel_time IS NOT NULL)", name="cancel_time_iff_cancelled"
        ),
        Index("ix_houses_search_vector", "search_vector", postgresql_using="gin"),
        Index("ix_houses_location", "location", postgresql_using="gist"),
        Index("ix_houses_state_draw_time", "state", "draw_time"),
        # The city filter is a case-insensitive exact match: `lower(city) = lower(:city)`.
        Index("ix_houses_lower_city", func.lower(column("city"))),
        # The scheduler's "open sales now" and "close sales now" scans.
        Index("ix_houses_state_sales_open_time", "state", "sales_open_time"),
        Index("ix_houses_state_sales_close_time", "state", "sales_close_time"),
        # Keyset pagination by creation.
        Index("ix_houses_create_time_id", "create_time", "id"),
    )

    title: Mapped[str]
    # Markdown.
    description: Mapped[str] = mapped_column(server_default=text("''"))
    # ISO 3166-1 alpha-2.
    country_code: Mapped[str | None] = mapped_column(CHAR(2))
    city: Mapped[str | None]
    street: Mapped[str | None]
    postal_code: Mapped[str | None]
    # WGS 84 point for `near` filters and distance ordering (ST_DWithin / `<->` on geography).
    # The GiST index is declared above rather than by geoalchemy2, so that it is named by the
    # naming convention and created by the migration like every other index.
    location: Mapped[WKBElement | None] = mapped_column(
        Geography(geometry_type="POINT", srid=4326, spatial_index=False)
    )
    property_type: Mapped[PropertyType | None] = mapped_column(TextEnum(PropertyType))
    bedrooms: Mapped[int] = mapped_column(server_default=ZERO)
    bathrooms: Mapped[int] = mapped_column(server_default=ZERO)
    # Living area; a measurement, not money, so a float is fine (0 = not stated).
    area_m2: Mapped[float] = mapped_column(Double(), server_default=ZERO)
    # Appraised value (informative, filterable); may be in another currency than the tickets.
    property_value_minor: Mapped[MinorUnits | None]
    property_value_currency: Mapped[str | None] = mapped_column(CHAR(3))
    features: Mapped[list[str]] = mapped_column(ARRAY(Text()), server_default=EMPTY_TEXT_ARRAY)
    # Free-form display attributes. The column is `metadata`; the attribute needs the underscore
    # because declarative classes reserve `metadata` for the MetaData.
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", server_default=EMPTY_JSONB)

    # Lottery terms. `currency` is the ticket currency, hence of every order of this house.
    ticket_price_minor: Mapped[MinorUnits | None]
    currency: Mapped[str | None] = mapped_column(CHAR(3))
    total_tickets: Mapped[int] = mapped_column(server_default=ZERO)
    # Tickets that must be sold by sales close, else the lottery is cancelled (0 = no minimum).
    min_participation: Mapped[int] = mapped_column(server_default=ZERO)
    # 0 = the system cap per order / no cap per user.
    max_tickets_per_order: Mapped[int] = mapped_column(server_default=ZERO)
    max_tickets_per_user: Mapped[int] = mapped_column(server_default=ZERO)
    sales_open_time: Mapped[datetime.datetime | None]
    sales_close_time: Mapped[datetime.datetime | None]
    draw_time: Mapped[datetime.datetime | None]

    state: Mapped[HouseState] = mapped_column(TextEnum(HouseState), server_default=text("'DRAFT'"))
    # Paid tickets, and tickets held by PENDING_PAYMENT orders.
    tickets_sold: Mapped[int] = mapped_column(server_default=ZERO)
    tickets_reserved: Mapped[int] = mapped_column(server_default=ZERO)
    publish_time: Mapped[datetime.datetime | None]
    cancel_time: Mapped[datetime.datetime | None]
    cancel_reason: Mapped[str | None]
    search_vector: Mapped[str] = mapped_column(
        TSVECTOR(), Computed(HOUSE_SEARCH_VECTOR, persisted=True)
    )
    # CreateHouse's optional idempotency key, and the SHA-256 of the parameters it came with
    # (a reuse with other parameters is REQUEST_ID_REUSED).
    create_request_id: Mapped[uuid.UUID | None] = mapped_column(unique=True)
    create_request_digest: Mapped[bytes | None]

    images: Mapped[list[HouseImage]] = relationship(
        lazy="raise", order_by="HouseImage.position", passive_deletes=True
    )


class HouseImage(UUIDPrimaryKey, Timestamps, Base):
    """`houses/{house}/images/{id}`: either an uploaded file (`storage_name`, served from the
    media URL) or an external https URL (`source_uri`, not fetched)."""

    __tablename__ = "house_images"
    __table_args__ = (
        CheckConstraint("num_nonnulls(storage_name, source_uri) = 1", name="one_source"),
        non_negative("position"),
        non_negative("width_px"),
        non_negative("height_px"),
        non_negative("size_bytes"),
        # Deferred so that ReorderHouseImages can permute positions in one transaction.
        UniqueConstraint("house_id", "position", deferrable=True, initially="DEFERRED"),
    )

    house_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("houses.id", ondelete="CASCADE"))
    storage_name: Mapped[str | None] = mapped_column(unique=True)
    source_uri: Mapped[str | None]
    alt_text: Mapped[str]
    # 0-based; 0 is the cover.
    position: Mapped[int]
    # Detected from the bytes of an upload; NULL and zeros for URL images.
    content_type: Mapped[str | None]
    width_px: Mapped[int] = mapped_column(server_default=ZERO)
    height_px: Mapped[int] = mapped_column(server_default=ZERO)
    size_bytes: Mapped[int] = mapped_column(BigInteger(), server_default=ZERO)


class Favorite(UUIDPrimaryKey, Timestamps, Base):
    """`users/{user}/favoriteHouses/{house}`."""

    __tablename__ = "favorites"
    __table_args__ = (UniqueConstraint("user_id", "house_id"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    house_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("houses.id", ondelete="CASCADE"), index=True
    )


class Ticket(UUIDPrimaryKey, Timestamps, Base):
    """`users/{user}/tickets/{id}`: one numbered entry in a house's lottery, issued by the
    fulfilment of a PAID order. `UNIQUE (house_id, number)` means a number is sold once, whatever
    the concurrency; numbers come from the counter range the fulfilment's UPDATE returned.
    """

    __tablename__ = "tickets"
    __table_args__ = (
        enum_check("state", TicketState),
        UniqueConstraint("house_id", "number"),
        CheckConstraint("number >= 1", name="number_positive"),
        CheckConstraint("octet_length(secret_id) = 16", name="secret_id_16_bytes"),
        CheckConstraint(_WHOLE_MILLISECONDS.format("purchase_time"), name="purchase_time_whole_ms"),
        CheckConstraint(
            "(state = 'VOIDED') = (void_time IS NOT NULL)", name="void_time_iff_voided"
        ),
        Index("ix_tickets_user_id_house_id", "user_id", "house_id"),
    )

    house_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("houses.id"))
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    # 1..total_tickets within the house.
    number: Mapped[int]
    # DRAW-1: leaves are ordered by ticket number, so the leaf index is derived, never stored
    # inconsistently.
    leaf_index: Mapped[int] = mapped_column(Computed("number - 1", persisted=True))
    # 16 random bytes in the leaf preimage; shown only to the owner, never published.
    secret_id: Mapped[bytes]
    # Whole milliseconds (hashed into the leaf as u64 milliseconds).
    purchase_time: Mapped[datetime.datetime]
    state: Mapped[TicketState] = mapped_column(
        TextEnum(TicketState), server_default=text("'ACTIVE'")
    )
    void_time: Mapped[datetime.datetime | None]


class SignedTreeHead(UUIDPrimaryKey, CreateTime, Base):
    """A signed head of a house's entry log (RFC 9162 tree hash). Append-only: the application
    role may only insert and read, so a signed head can never be rewritten."""

    __tablename__ = "signed_tree_heads"
    __table_args__ = (
        UniqueConstraint("house_id", "tree_size"),
        non_negative("tree_size"),
        CheckConstraint("octet_length(root) = 32", name="root_32_bytes"),
        CheckConstraint("octet_length(signature) = 64", name="signature_64_bytes"),
        CheckConstraint("octet_length(public_key) = 32", name="public_key_32_bytes"),
        CheckConstraint(_WHOLE_MILLISECONDS.format("timestamp"), name="timestamp_whole_ms"),
    )

    house_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("houses.id"))
    tree_size: Mapped[int]
    root: Mapped[bytes]
    # The signed timestamp (whole milliseconds).
    timestamp: Mapped[datetime.datetime]
    # Ed25519 over "AMESA-TREE-HEAD-1" ‖ house_id ‖ u64(tree_size) ‖ root ‖ u64(timestamp_ms),
    # and the transparency public key that verifies it (kept per head so keys can rotate).
    signature: Mapped[bytes]
    public_key: Mapped[bytes]


class DrawEntry(UUIDPrimaryKey, CreateTime, Base):
    """One leaf of a house's Merkle entry log, appended when a ticket is issued. Append-only like
    the tree heads: a refund voids the ticket but its leaf stays, as the signed heads require."""

    __tablename__ = "draw_entries"
    __table_args__ = (
        UniqueConstraint("house_id", "leaf_index"),
        non_negative("leaf_index"),
        CheckConstraint("octet_length(leaf_hash) = 32", name="leaf_hash_32_bytes"),
    )

    house_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("houses.id"))
    leaf_index: Mapped[int]
    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id"), unique=True)
    # SHA-256(0x00 ‖ house_id ‖ u64(number) ‖ secret_id ‖ u64(purchase_time_ms)).
    leaf_hash: Mapped[bytes]


class Draw(UUIDPrimaryKey, Timestamps, Base):
    """`houses/{house}/draw`: one per house (`UNIQUE (house_id)`, so a draw cannot run twice),
    created with the signed manifest at publication and completed with its transcript.

    An interrupted draw resumes from the stored inputs: the manifest fixes the beacon round, the
    final tree head fixes the entries, and the beacon round is stored once verified.
    """

    __tablename__ = "draws"
    __table_args__ = (
        enum_check("state", DrawState),
        CheckConstraint(
            "octet_length(manifest_signature) = 64", name="manifest_signature_64_bytes"
        ),
        CheckConstraint(
            "octet_length(transparency_public_key) = 32", name="transparency_public_key_32_bytes"
        ),
        CheckConstraint("beacon_round > 0", name="beacon_round_positive"),
        non_negative("reserves_requested"),
        CheckConstraint(
            "state NOT IN ('FROZEN', 'COMPLETED') OR final_tree_head_id IS NOT NULL",
            name="frozen_has_final_tree_head",
        ),
        CheckConstraint(
            "state <> 'COMPLETED' OR (seed IS NOT NULL AND winners IS NOT NULL"
            " AND transcript_json IS NOT NULL AND conduct_time IS NOT NULL)",
            name="completed_has_result",
        ),
        # The scheduler's "draws due" scan.
        Index("ix_draws_state_beacon_time", "state", "beacon_time"),
    )

    house_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("houses.id"), unique=True)
    state: Mapped[DrawState] = mapped_column(
        TextEnum(DrawState), server_default=text("'SCHEDULED'")
    )
    algorithm_version: Mapped[str] = mapped_column(
        server_default=text(f"'{DRAW_ALGORITHM_VERSION}'")
    )
    # The canonical manifest JSON exactly as signed (text, not jsonb: jsonb would re-serialise it
    # and the signature would no longer match the bytes).
    manifest_json: Mapped[str]
    manifest_signature: Mapped[bytes]
    transparency_public_key: Mapped[bytes]
    # Copied from the manifest for the scheduler: the target drand round R and its time.
    beacon_chain_hash: Mapped[str]
    beacon_round: Mapped[int] = mapped_column(BigInteger())
    beacon_time: Mapped[datetime.datetime]
    freeze_time: Mapped[datetime.datetime | None]
    final_tree_head_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("signed_tree_heads.id"))
    # Round R once fetched and its BLS signature verified; randomness r = SHA-256(signature).
    beacon_signature: Mapped[bytes | None]
    beacon_randomness: Mapped[bytes | None]
    # The manifest's declared fallback was used because the beacon stayed unavailable.
    fallback_applied: Mapped[bool] = mapped_column(server_default=FALSE)
    seed: Mapped[bytes | None]
    # [{k, word, accepted}] and [{rank, index, ticket_number}] as in the transcript.
    words: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB())
    winners: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB())
    reserves_requested: Mapped[int] = mapped_column(server_default=ZERO)
    # The transcript exactly as served by GetDrawTranscript, and the SHA-256 of its UTF-8 bytes.
    transcript_json: Mapped[str | None]
    transcript_sha256: Mapped[bytes | None]
    conduct_time: Mapped[datetime.datetime | None]
    # Failed attempts so far and the last failure, for retries and operators.
    attempt_count: Mapped[int] = mapped_column(server_default=ZERO)
    last_error: Mapped[str | None]

    final_tree_head: Mapped[SignedTreeHead | None] = relationship(lazy="raise")
