"""Tables of ContentService: content categories (a tree), contents with full-text search, the
media library, languages and UI translations, email template overrides and system settings.

Nothing here is user-owned; public reads filter on state (published, enabled) in the service.
"""

from __future__ import annotations

import datetime
import enum
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    ForeignKey,
    Index,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import Text

from server.core.orm import (
    EMPTY_JSONB,
    EMPTY_TEXT_ARRAY,
    FALSE,
    TRUE,
    ZERO,
    Base,
    SoftDelete,
    TextEnum,
    Timestamps,
    UUIDPrimaryKey,
    enum_check,
    non_negative,
)

_SLUG = "'^[a-z0-9]+(-[a-z0-9]+)*$'"

# 'simple' because contents exist in every supported language and a generated column needs one
# constant configuration; queries use `websearch_to_tsquery('simple', :q)`.
CONTENT_SEARCH_VECTOR = (
    "setweight(to_tsvector('simple'::regconfig, coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('simple'::regconfig, coalesce(summary, '')), 'B') || "
    "setweight(to_tsvector('simple'::regconfig, coalesce(body, '')), 'C')"
)


class ContentType(enum.StrEnum):
    PAGE = "PAGE"
    ARTICLE = "ARTICLE"
    HELP = "HELP"
    FAQ = "FAQ"


class ContentState(enum.StrEnum):
    DRAFT = "DRAFT"
    PUBLISHED = "PUBLISHED"
    ARCHIVED = "ARCHIVED"


class ContentCategory(UUIDPrimaryKey, Timestamps, Base):
    """`contentCategories/{id}`: a node of the category tree (`parent_id` NULL for a root).
    A category with children or contents cannot be deleted (RESTRICT); the service also refuses
    a parent that would create a cycle."""

    __tablename__ = "content_categories"
    __table_args__ = (
        CheckConstraint(f"slug ~ {_SLUG}", name="slug_format"),
        CheckConstraint("parent_id <> id", name="not_own_parent"),
        non_negative("position"),
    )

    # Unique among all categories.
    slug: Mapped[str] = mapped_column(unique=True)
    # Language code → display name, e.g. {"en": "Buying tickets", "he": "…"}.
    display_names: Mapped[dict[str, Any]] = mapped_column(server_default=EMPTY_JSONB)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("content_categories.id", ondelete="RESTRICT"), index=True
    )
    # Order among siblings (ties broken by slug).
    position: Mapped[int] = mapped_column(server_default=ZERO)

    parent: Mapped[ContentCategory | None] = relationship(
        lazy="raise", remote_side="ContentCategory.id"
    )


class Content(UUIDPrimaryKey, Timestamps, SoftDelete, Base):
    """`contents/{id}`: a page, article, help entry or FAQ in one language (markdown body)."""

    __tablename__ = "contents"
    __table_args__ = (
        enum_check("type", ContentType),
        enum_check("state", ContentState),
        CheckConstraint(f"slug ~ {_SLUG}", name="slug_format"),
        # A slug is unique per language among contents that are not deleted.
        Index(
            "ix_contents_language_code_slug_live",
            "language_code",
            "slug",
            unique=True,
            postgresql_where=text("delete_time IS NULL"),
        ),
        Index("ix_contents_search_vector", "search_vector", postgresql_using="gin"),
        Index("ix_contents_tags", "tags", postgresql_using="gin"),
        Index("ix_contents_state_type_language_code", "state", "type", "language_code"),
    )

    type: Mapped[ContentType] = mapped_column(TextEnum(ContentType))
    language_code: Mapped[str]
    slug: Mapped[str]
    title: Mapped[str]
    summary: Mapped[str] = mapped_column(server_default=text("''"))
    # CommonMark; raw HTML in it is escaped by renderers.
    body: Mapped[str] = mapped_column(server_default=text("''"))
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text()), server_default=EMPTY_TEXT_ARRAY)
    category_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("content_categories.id", ondelete="RESTRICT"), index=True
    )
    state: Mapped[ContentState] = mapped_column(
        TextEnum(ContentState), server_default=text("'DRAFT'")
    )
    # First publication; kept when republished.
    publish_time: Mapped[datetime.datetime | None]
    author_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    search_vector: Mapped[str] = mapped_column(
        TSVECTOR(), Computed(CONTENT_SEARCH_VECTOR, persisted=True)
    )


class ContentMedia(UUIDPrimaryKey, Timestamps, Base):
    """`media/{id}`: an uploaded file of the media library, linked from content bodies."""

    __tablename__ = "content_media"
    __table_args__ = (CheckConstraint("size_bytes > 0", name="size_bytes_positive"),)

    # The name given at upload, for display only.
    filename: Mapped[str]
    # Server-generated object name; the public URL is derived from it.
    storage_name: Mapped[str] = mapped_column(unique=True)
    # Detected from the bytes.
    content_type: Mapped[str]
    size_bytes: Mapped[int] = mapped_column(BigInteger())
    sha256: Mapped[bytes]
    alt_text: Mapped[str] = mapped_column(server_default=text("''"))
    uploader_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))


class Language(UUIDPrimaryKey, Timestamps, Base):
    """A supported language (ListLanguages) and the version of its UI translations."""

    __tablename__ = "languages"
    __table_args__ = (
        CheckConstraint(
            "language_code ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$'", name="language_code_bcp47"
        ),
        non_negative("translations_version"),
        # Exactly one default language is the service's rule; at most one is the database's.
        Index(
            "ix_languages_default", "is_default", unique=True, postgresql_where=text("is_default")
        ),
    )

    language_code: Mapped[str] = mapped_column(unique=True)
    native_name: Mapped[str]
    english_name: Mapped[str]
    is_default: Mapped[bool] = mapped_column(server_default=FALSE)
    right_to_left: Mapped[bool] = mapped_column(server_default=FALSE)
    enabled: Mapped[bool] = mapped_column(server_default=TRUE)
    # Incremented with every change to this language's translations: the clients' cache key.
    translations_version: Mapped[int] = mapped_column(BigInteger(), server_default=ZERO)


class Translation(UUIDPrimaryKey, Timestamps, Base):
    """One UI string: `translations/{language}` is the map of all keys of a language."""

    __tablename__ = "translations"
    __table_args__ = (
        CheckConstraint("key ~ '^[A-Za-z0-9_-]+([.][A-Za-z0-9_-]+)*$'", name="key_format"),
        # Also the index GetTranslations reads (every key of one language).
        UniqueConstraint("language_code", "key"),
    )

    language_code: Mapped[str] = mapped_column(
        ForeignKey("languages.language_code", ondelete="CASCADE", onupdate="CASCADE")
    )
    key: Mapped[str]
    value: Mapped[str]


class EmailTemplate(UUIDPrimaryKey, Timestamps, Base):
    """`emailTemplates/{key}.{language}`: an admin's override of a built-in template. The
    description and the allowed variables are defined by the server per key, not stored."""

    __tablename__ = "email_templates"
    __table_args__ = (
        CheckConstraint("key ~ '^[a-z][a-z0-9_]*$'", name="key_format"),
        UniqueConstraint("key", "language_code"),
    )

    key: Mapped[str]
    language_code: Mapped[str]
    subject: Mapped[str]
    html_body: Mapped[str]
    text_body: Mapped[str]


class SystemSetting(UUIDPrimaryKey, Timestamps, Base):
    """`settings/{key}`: a JSON value. Each key's JSON Schema is defined by the server; whether it
    is public (GetPublicSettings) and its description are stored with it so that public reads are
    one indexed query."""

    __tablename__ = "system_settings"
    __table_args__ = (CheckConstraint("key ~ '^[a-z][a-z0-9_]{0,63}$'", name="key_format"),)

    key: Mapped[str] = mapped_column(unique=True)
    # Any JSON value, including null.
    value: Mapped[Any] = mapped_column(JSONB(), nullable=False)
    is_public: Mapped[bool] = mapped_column(server_default=FALSE)
    description: Mapped[str] = mapped_column(server_default=text("''"))
