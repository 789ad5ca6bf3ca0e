"""Initial schema.

Every table of SPEC §4, the extensions, the application role, row level security on user-owned
tables, and the triggers that maintain `update_time` and keep `audit_log` append-only.

Roles and ownership. The tables belong to the user running this migration. The server connects
as its own login user and runs `SET ROLE amesa_app` on every connection; `amesa_app` owns
nothing, so row level security applies to it, and it holds only the privileges granted below.
In production the server's login user must be a member of `amesa_app` (`GRANT amesa_app TO
<login user>`); a superuser needs nothing more.

Row level security. Each user-owned table has one policy, for every command: a row is visible
and writable when its `user_id` (`id` for `users`) equals the transaction's `amesa.user_id`
setting, or when `amesa.bypass_rls` is `on` (administrators and background jobs). The server sets
both with `set_config(…, true)` at the start of every transaction, so they end with it. Without
the setting a query sees no row at all.

Downgrade drops everything this revision created except the extensions and the `amesa_app`
role: both are cluster- or database-wide and may be shared with other databases on the server.

asyncpg runs one statement per execute, so every `op.execute` below holds exactly one statement.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geography
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "amesa_app"
EXTENSIONS = ("postgis", "pg_trgm", "citext", "pgcrypto")

# Every table, in creation order (dependencies first); downgrade drops them in reverse.
TABLES = (
    "audit_log",
    "content_categories",
    "email_templates",
    "houses",
    "job_leases",
    "languages",
    "promotions",
    "provider_events",
    "system_settings",
    "users",
    "activity_log",
    "content_media",
    "contents",
    "favorites",
    "house_images",
    "notification_preferences",
    "notifications",
    "outbox",
    "payment_customers",
    "payment_methods",
    "play_limits",
    "self_exclusions",
    "sessions",
    "signed_tree_heads",
    "totp_backup_codes",
    "totp_credentials",
    "translations",
    "user_addresses",
    "user_identities",
    "user_identity_documents",
    "user_phones",
    "verification_tokens",
    "draws",
    "orders",
    "phone_verifications",
    "refresh_tokens",
    "promotion_redemptions",
    "tickets",
    "transactions",
    "draw_entries",
)

# Rows owned by one user, keyed by `user_id` — `users` itself is keyed by `id`. The outbox has a
# `user_id` too but is system work, read only by the dispatcher, so it is not listed.
USER_OWNED_TABLES = (
    "users",
    "user_identities",
    "user_addresses",
    "user_phones",
    "user_identity_documents",
    "sessions",
    "refresh_tokens",
    "verification_tokens",
    "phone_verifications",
    "totp_credentials",
    "totp_backup_codes",
    "notifications",
    "notification_preferences",
    "play_limits",
    "self_exclusions",
    "activity_log",
    "favorites",
    "tickets",
    "orders",
    "transactions",
    "payment_methods",
    "payment_customers",
    "promotion_redemptions",
)

# Written once, never changed: the application role may only INSERT and SELECT. The audit log is
# also guarded by a trigger against everyone, the owner included: a retention job run by the
# owner has to disable that trigger explicitly. (TRUNCATE is not guarded; amesa_app lacks it.)
APPEND_ONLY_TABLES = ("audit_log", "draw_entries", "signed_tree_heads")

# Tables without `update_time` (their rows never change).
TABLES_WITHOUT_UPDATE_TIME = (*APPEND_ONLY_TABLES, "activity_log")

RLS_PREDICATE = (
    "{column} = nullif(current_setting('amesa.user_id', true), '')::uuid"
    " OR current_setting('amesa.bypass_rls', true) = 'on'"
)


def upgrade() -> None:
    for extension in EXTENSIONS:
        op.execute(f"CREATE EXTENSION IF NOT EXISTS {extension}")
    # Created only when missing; the exception handler covers two migrations racing to create it
    # (several test databases at once), which surfaces as unique_violation on pg_authid.
    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} NOLOGIN;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION amesa_set_update_time() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            NEW.update_time := now();
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION amesa_refuse_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END
        $$
        """
    )

    _create_tables()

    for table in TABLES:
        if table not in TABLES_WITHOUT_UPDATE_TIME:
            op.execute(
                f"CREATE TRIGGER trg_{table}_update_time BEFORE UPDATE ON {table}"
                " FOR EACH ROW EXECUTE FUNCTION amesa_set_update_time()"
            )
    # Statement level, so that even an UPDATE or DELETE matching no row is refused.
    op.execute(
        "CREATE TRIGGER trg_audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log"
        " FOR EACH STATEMENT EXECUTE FUNCTION amesa_refuse_change()"
    )

    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    read_write = ", ".join(t for t in TABLES if t not in APPEND_ONLY_TABLES)
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE {read_write} TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT ON TABLE {', '.join(APPEND_ONLY_TABLES)} TO {APP_ROLE}")
    # No table of ours uses a sequence (UUID keys); granted so future serial columns just work.
    op.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")

    for table in USER_OWNED_TABLES:
        predicate = RLS_PREDICATE.format(column="id" if table == "users" else "user_id")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY user_isolation ON {table} USING ({predicate}) WITH CHECK ({predicate})"
        )


def downgrade() -> None:
    # Dropping a table also drops its indexes, constraints, triggers, policies and grants.
    for table in reversed(TABLES):
        op.drop_table(table)
    op.execute("DROP FUNCTION amesa_refuse_change()")
    op.execute("DROP FUNCTION amesa_set_update_time()")
    op.execute(f"REVOKE USAGE ON ALL SEQUENCES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {APP_ROLE}")


# One flat list of DDL, in dependency order, as autogenerate wrote it and then checked by
# tests/core/test_schema.py against the models.
def _create_tables() -> None:  # noqa: PLR0915
    op.create_table(
        "audit_log",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("actor_kind", sa.Text(), nullable=False),
        sa.Column("actor_user_id", sa.UUID(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("resource_name", sa.Text(), nullable=False),
        sa.Column("before", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("after", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("ip_address", postgresql.INET(), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "actor_kind IN ('USER', 'ADMIN', 'SYSTEM')", name=op.f("ck_audit_log_actor_kind_valid")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(
        "ix_audit_log_actor_user_id_create_time",
        "audit_log",
        ["actor_user_id", "create_time"],
        unique=False,
    )
    op.create_index(
        "ix_audit_log_resource_name_create_time",
        "audit_log",
        ["resource_name", "create_time"],
        unique=False,
    )
    op.create_table(
        "content_categories",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column(
            "display_names",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("parent_id", sa.UUID(), nullable=True),
        sa.Column("position", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'", name=op.f("ck_content_categories_slug_format")
        ),
        sa.CheckConstraint("parent_id <> id", name=op.f("ck_content_categories_not_own_parent")),
        sa.CheckConstraint(
            "position >= 0", name=op.f("ck_content_categories_position_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["content_categories.id"],
            name=op.f("fk_content_categories_parent_id_content_categories"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_categories")),
        sa.UniqueConstraint("slug", name=op.f("uq_content_categories_slug")),
    )
    op.create_index(
        op.f("ix_content_categories_parent_id"), "content_categories", ["parent_id"], unique=False
    )
    op.create_table(
        "email_templates",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("language_code", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("key ~ '^[a-z][a-z0-9_]*$'", name=op.f("ck_email_templates_key_format")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_templates")),
        sa.UniqueConstraint(
            "key", "language_code", name=op.f("uq_email_templates_key_language_code")
        ),
    )
    op.create_table(
        "houses",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("country_code", sa.CHAR(length=2), nullable=True),
        sa.Column("city", sa.Text(), nullable=True),
        sa.Column("street", sa.Text(), nullable=True),
        sa.Column("postal_code", sa.Text(), nullable=True),
        sa.Column(
            "location",
            Geography(geometry_type="POINT", srid=4326, spatial_index=False),
            nullable=True,
        ),
        sa.Column("property_type", sa.Text(), nullable=True),
        sa.Column("bedrooms", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("bathrooms", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("area_m2", sa.Double(), server_default=sa.text("0"), nullable=False),
        sa.Column("property_value_minor", sa.BigInteger(), nullable=True),
        sa.Column("property_value_currency", sa.CHAR(length=3), nullable=True),
        sa.Column(
            "features",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("ticket_price_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.CHAR(length=3), nullable=True),
        sa.Column("total_tickets", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("min_participation", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "max_tickets_per_order", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column(
            "max_tickets_per_user", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column("sales_open_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("sales_close_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("draw_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("state", sa.Text(), server_default=sa.text("'DRAFT'"), nullable=False),
        sa.Column("tickets_sold", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("tickets_reserved", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("publish_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("cancel_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(
                "setweight(to_tsvector('simple'::regconfig, coalesce(title, '')), 'A') || setweight(to_tsvector('simple'::regconfig, coalesce(city, '')), 'B') || setweight(to_tsvector('simple'::regconfig, coalesce(description, '')), 'C')",
                persisted=True,
            ),
            nullable=False,
        ),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("delete_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(state = 'CANCELLED') = (cancel_time IS NOT NULL)",
            name=op.f("ck_houses_cancel_time_iff_cancelled"),
        ),
        sa.CheckConstraint(
            "country_code ~ '^[A-Z]{2}$'", name=op.f("ck_houses_country_code_iso3166")
        ),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_houses_currency_iso4217")),
        sa.CheckConstraint(
            "property_type IN ('HOUSE', 'APARTMENT', 'VILLA', 'TOWNHOUSE', 'PENTHOUSE', 'COTTAGE', 'OTHER')",
            name=op.f("ck_houses_property_type_valid"),
        ),
        sa.CheckConstraint(
            "property_value_currency ~ '^[A-Z]{3}$'",
            name=op.f("ck_houses_property_value_currency_iso4217"),
        ),
        sa.CheckConstraint(
            "state = 'DRAFT' OR (ticket_price_minor IS NOT NULL AND currency IS NOT NULL AND total_tickets > 0 AND sales_open_time IS NOT NULL AND sales_close_time IS NOT NULL AND draw_time IS NOT NULL)",
            name=op.f("ck_houses_terms_complete_unless_draft"),
        ),
        sa.CheckConstraint(
            "state IN ('DRAFT', 'UPCOMING', 'ACTIVE', 'SOLD_OUT', 'CLOSED', 'DRAWN', 'CANCELLED')",
            name=op.f("ck_houses_state_valid"),
        ),
        sa.CheckConstraint("area_m2 >= 0", name=op.f("ck_houses_area_m2_non_negative")),
        sa.CheckConstraint("bathrooms >= 0", name=op.f("ck_houses_bathrooms_non_negative")),
        sa.CheckConstraint("bedrooms >= 0", name=op.f("ck_houses_bedrooms_non_negative")),
        sa.CheckConstraint(
            "max_tickets_per_order >= 0", name=op.f("ck_houses_max_tickets_per_order_non_negative")
        ),
        sa.CheckConstraint(
            "max_tickets_per_user >= 0", name=op.f("ck_houses_max_tickets_per_user_non_negative")
        ),
        sa.CheckConstraint(
            "min_participation >= 0 AND min_participation <= total_tickets",
            name=op.f("ck_houses_min_participation_range"),
        ),
        sa.CheckConstraint(
            "property_value_minor >= 0", name=op.f("ck_houses_property_value_minor_non_negative")
        ),
        sa.CheckConstraint(
            "sales_close_time < draw_time", name=op.f("ck_houses_close_before_draw")
        ),
        sa.CheckConstraint(
            "sales_open_time < sales_close_time", name=op.f("ck_houses_open_before_close")
        ),
        sa.CheckConstraint("ticket_price_minor > 0", name=op.f("ck_houses_ticket_price_positive")),
        sa.CheckConstraint(
            "tickets_reserved >= 0", name=op.f("ck_houses_tickets_reserved_non_negative")
        ),
        sa.CheckConstraint(
            "tickets_sold + tickets_reserved <= total_tickets",
            name=op.f("ck_houses_tickets_within_total"),
        ),
        sa.CheckConstraint("tickets_sold >= 0", name=op.f("ck_houses_tickets_sold_non_negative")),
        sa.CheckConstraint("total_tickets >= 0", name=op.f("ck_houses_total_tickets_non_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_houses")),
    )
    op.create_index("ix_houses_create_time_id", "houses", ["create_time", "id"], unique=False)
    op.create_index(
        "ix_houses_location", "houses", ["location"], unique=False, postgresql_using="gist"
    )
    op.create_index(
        "ix_houses_lower_city", "houses", [sa.literal_column("lower(city)")], unique=False
    )
    op.create_index(
        "ix_houses_search_vector", "houses", ["search_vector"], unique=False, postgresql_using="gin"
    )
    op.create_index("ix_houses_state_draw_time", "houses", ["state", "draw_time"], unique=False)
    op.create_index(
        "ix_houses_state_sales_close_time", "houses", ["state", "sales_close_time"], unique=False
    )
    op.create_index(
        "ix_houses_state_sales_open_time", "houses", ["state", "sales_open_time"], unique=False
    )
    op.create_table(
        "job_leases",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("lease_expire_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("last_start_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("last_success_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_leases")),
        sa.UniqueConstraint("name", name=op.f("uq_job_leases_name")),
    )
    op.create_table(
        "languages",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("language_code", sa.Text(), nullable=False),
        sa.Column("native_name", sa.Text(), nullable=False),
        sa.Column("english_name", sa.Text(), nullable=False),
        sa.Column("is_default", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("right_to_left", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "translations_version", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "language_code ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$'",
            name=op.f("ck_languages_language_code_bcp47"),
        ),
        sa.CheckConstraint(
            "translations_version >= 0", name=op.f("ck_languages_translations_version_non_negative")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_languages")),
        sa.UniqueConstraint("language_code", name=op.f("uq_languages_language_code")),
    )
    op.create_index(
        "ix_languages_default",
        "languages",
        ["is_default"],
        unique=True,
        postgresql_where=sa.text("is_default"),
    )
    op.create_table(
        "promotions",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("percent_off_bps", sa.Integer(), nullable=True),
        sa.Column("amount_off_minor", sa.BigInteger(), nullable=True),
        sa.Column("amount_off_currency", sa.CHAR(length=3), nullable=True),
        sa.Column("free_tickets", sa.Integer(), nullable=True),
        sa.Column("valid_from", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("valid_until", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("max_total_uses", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_uses_per_user", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("min_quantity", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "house_ids",
            postgresql.ARRAY(sa.UUID()),
            server_default=sa.text("'{}'::uuid[]"),
            nullable=False,
        ),
        sa.Column("uses_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("delete_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.CheckConstraint(
            "amount_off_currency ~ '^[A-Z]{3}$'",
            name=op.f("ck_promotions_amount_off_currency_iso4217"),
        ),
        sa.CheckConstraint(
            "code ~ '^[A-Z0-9][A-Z0-9_-]{2,31}$'", name=op.f("ck_promotions_code_format")
        ),
        sa.CheckConstraint(
            "(amount_off_minor IS NULL) = (amount_off_currency IS NULL)",
            name=op.f("ck_promotions_amount_off_has_currency"),
        ),
        sa.CheckConstraint("amount_off_minor > 0", name=op.f("ck_promotions_amount_off_positive")),
        sa.CheckConstraint(
            "free_tickets BETWEEN 1 AND 100", name=op.f("ck_promotions_free_tickets_range")
        ),
        sa.CheckConstraint(
            "max_total_uses = 0 OR uses_count <= max_total_uses",
            name=op.f("ck_promotions_uses_within_max"),
        ),
        sa.CheckConstraint(
            "max_total_uses >= 0", name=op.f("ck_promotions_max_total_uses_non_negative")
        ),
        sa.CheckConstraint(
            "max_uses_per_user >= 0", name=op.f("ck_promotions_max_uses_per_user_non_negative")
        ),
        sa.CheckConstraint(
            "min_quantity >= 0", name=op.f("ck_promotions_min_quantity_non_negative")
        ),
        sa.CheckConstraint(
            "num_nonnulls(percent_off_bps, amount_off_minor, free_tickets) = 1",
            name=op.f("ck_promotions_one_discount"),
        ),
        sa.CheckConstraint(
            "percent_off_bps BETWEEN 1 AND 10000", name=op.f("ck_promotions_percent_off_bps_range")
        ),
        sa.CheckConstraint("uses_count >= 0", name=op.f("ck_promotions_uses_count_non_negative")),
        sa.CheckConstraint(
            "valid_from < valid_until", name=op.f("ck_promotions_valid_from_before_until")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promotions")),
    )
    op.create_index(
        "ix_promotions_code_live",
        "promotions",
        ["code"],
        unique=True,
        postgresql_where=sa.text("delete_time IS NULL"),
    )
    op.create_table(
        "provider_events",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("process_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("attempt_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "provider IN ('STRIPE', 'PAYPAL')", name=op.f("ck_provider_events_provider_valid")
        ),
        sa.CheckConstraint(
            "attempt_count >= 0", name=op.f("ck_provider_events_attempt_count_non_negative")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_events")),
        sa.UniqueConstraint(
            "provider", "event_id", name=op.f("uq_provider_events_provider_event_id")
        ),
    )
    op.create_index(
        "ix_provider_events_unprocessed_create_time",
        "provider_events",
        ["create_time"],
        unique=False,
        postgresql_where=sa.text("process_time IS NULL"),
    )
    op.create_table(
        "system_settings",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("is_public", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("description", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "key ~ '^[a-z][a-z0-9_]{0,63}$'", name=op.f("ck_system_settings_key_format")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_system_settings")),
        sa.UniqueConstraint("key", name=op.f("uq_system_settings_key")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("email", postgresql.CITEXT(), nullable=False),
        sa.Column("email_verify_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("pending_email", postgresql.CITEXT(), nullable=True),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("password_change_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("given_name", sa.Text(), nullable=False),
        sa.Column("family_name", sa.Text(), nullable=False),
        sa.Column("birth_date_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("birth_date_key_id", sa.Text(), nullable=True),
        sa.Column("birth_date_blind_index", sa.LargeBinary(), nullable=True),
        sa.Column("preferred_language", sa.Text(), server_default=sa.text("'en'"), nullable=False),
        sa.Column("accepted_terms_version", sa.Text(), nullable=True),
        sa.Column("terms_accept_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column(
            "marketing_opt_in", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("status", sa.Text(), server_default=sa.text("'ACTIVE'"), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("status_change_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("kyc_status", sa.Text(), server_default=sa.text("'NOT_STARTED'"), nullable=False),
        sa.Column(
            "roles",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("ARRAY['USER']::text[]"),
            nullable=False,
        ),
        sa.Column("last_login_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("anonymize_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("delete_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.CheckConstraint(
            "(status = 'DELETED') = (delete_time IS NOT NULL)",
            name=op.f("ck_users_deleted_iff_delete_time"),
        ),
        sa.CheckConstraint(
            "kyc_status IN ('NOT_STARTED', 'PENDING', 'APPROVED', 'REJECTED')",
            name=op.f("ck_users_kyc_status_valid"),
        ),
        sa.CheckConstraint(
            "roles <@ ARRAY['USER', 'ADMIN']::text[]", name=op.f("ck_users_roles_valid")
        ),
        sa.CheckConstraint(
            "status IN ('ACTIVE', 'SUSPENDED', 'DELETED')", name=op.f("ck_users_status_valid")
        ),
        sa.CheckConstraint(
            "(birth_date_ciphertext IS NULL) = (birth_date_key_id IS NULL)",
            name=op.f("ck_users_birth_date_key_id"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "activity_log",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("ip_address", postgresql.INET(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('LOGIN_SUCCEEDED', 'LOGIN_FAILED', 'LOGOUT', 'SESSION_REVOKED', 'REFRESH_TOKEN_REUSED', 'PASSWORD_CHANGED', 'EMAIL_CHANGED', 'PHONE_CHANGED', 'TOTP_CHANGED', 'OAUTH_IDENTITY_CHANGED', 'PROFILE_UPDATED', 'IDENTITY_DOCUMENT', 'PLAY_LIMITS_CHANGED', 'SELF_EXCLUDED', 'PURCHASE', 'REFUND', 'ACCOUNT_STATUS_CHANGED', 'ACCOUNT_DELETED')",
            name=op.f("ck_activity_log_kind_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_activity_log_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activity_log")),
    )
    op.create_index(
        "ix_activity_log_user_id_create_time",
        "activity_log",
        ["user_id", "create_time"],
        unique=False,
    )
    op.create_table(
        "content_media",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("storage_name", sa.Text(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.LargeBinary(), nullable=False),
        sa.Column("alt_text", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("uploader_id", sa.UUID(), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("size_bytes > 0", name=op.f("ck_content_media_size_bytes_positive")),
        sa.ForeignKeyConstraint(
            ["uploader_id"], ["users.id"], name=op.f("fk_content_media_uploader_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_media")),
        sa.UniqueConstraint("storage_name", name=op.f("uq_content_media_storage_name")),
    )
    op.create_table(
        "contents",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("language_code", sa.Text(), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("body", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column(
            "tags",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column("category_id", sa.UUID(), nullable=True),
        sa.Column("state", sa.Text(), server_default=sa.text("'DRAFT'"), nullable=False),
        sa.Column("publish_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("author_id", sa.UUID(), nullable=True),
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(
                "setweight(to_tsvector('simple'::regconfig, coalesce(title, '')), 'A') || setweight(to_tsvector('simple'::regconfig, coalesce(summary, '')), 'B') || setweight(to_tsvector('simple'::regconfig, coalesce(body, '')), 'C')",
                persisted=True,
            ),
            nullable=False,
        ),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("delete_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.CheckConstraint(
            "slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'", name=op.f("ck_contents_slug_format")
        ),
        sa.CheckConstraint(
            "state IN ('DRAFT', 'PUBLISHED', 'ARCHIVED')", name=op.f("ck_contents_state_valid")
        ),
        sa.CheckConstraint(
            "type IN ('PAGE', 'ARTICLE', 'HELP', 'FAQ')", name=op.f("ck_contents_type_valid")
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_contents_author_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["content_categories.id"],
            name=op.f("fk_contents_category_id_content_categories"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contents")),
    )
    op.create_index(op.f("ix_contents_category_id"), "contents", ["category_id"], unique=False)
    op.create_index(
        "ix_contents_language_code_slug_live",
        "contents",
        ["language_code", "slug"],
        unique=True,
        postgresql_where=sa.text("delete_time IS NULL"),
    )
    op.create_index(
        "ix_contents_search_vector",
        "contents",
        ["search_vector"],
        unique=False,
        postgresql_using="gin",
    )
    op.create_index(
        "ix_contents_state_type_language_code",
        "contents",
        ["state", "type", "language_code"],
        unique=False,
    )
    op.create_index("ix_contents_tags", "contents", ["tags"], unique=False, postgresql_using="gin")
    op.create_table(
        "favorites",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("house_id", sa.UUID(), nullable=False),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["house_id"],
            ["houses.id"],
            name=op.f("fk_favorites_house_id_houses"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_favorites_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_favorites")),
        sa.UniqueConstraint("user_id", "house_id", name=op.f("uq_favorites_user_id_house_id")),
    )
    op.create_index(op.f("ix_favorites_house_id"), "favorites", ["house_id"], unique=False)
    op.create_table(
        "house_images",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("house_id", sa.UUID(), nullable=False),
        sa.Column("storage_name", sa.Text(), nullable=True),
        sa.Column("source_uri", sa.Text(), nullable=True),
        sa.Column("alt_text", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=True),
        sa.Column("width_px", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("height_px", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("height_px >= 0", name=op.f("ck_house_images_height_px_non_negative")),
        sa.CheckConstraint(
            "num_nonnulls(storage_name, source_uri) = 1", name=op.f("ck_house_images_one_source")
        ),
        sa.CheckConstraint("position >= 0", name=op.f("ck_house_images_position_non_negative")),
        sa.CheckConstraint("size_bytes >= 0", name=op.f("ck_house_images_size_bytes_non_negative")),
        sa.CheckConstraint("width_px >= 0", name=op.f("ck_house_images_width_px_non_negative")),
        sa.ForeignKeyConstraint(
            ["house_id"],
            ["houses.id"],
            name=op.f("fk_house_images_house_id_houses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_house_images")),
        sa.UniqueConstraint(
            "house_id",
            "position",
            deferrable=True,
            initially="DEFERRED",
            name=op.f("uq_house_images_house_id_position"),
        ),
        sa.UniqueConstraint("storage_name", name=op.f("uq_house_images_storage_name")),
    )
    op.create_table(
        "notification_preferences",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("language", sa.Text(), nullable=True),
        sa.Column("account_email", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("account_sms", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("account_in_app", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("account_push", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("draws_email", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("draws_sms", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("draws_in_app", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("draws_push", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("marketing_email", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("marketing_sms", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "marketing_in_app", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("marketing_push", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("purchases_email", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("purchases_sms", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("purchases_in_app", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("purchases_push", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_notification_preferences_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_preferences")),
        sa.UniqueConstraint("user_id", name=op.f("uq_notification_preferences_user_id")),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("resource", sa.Text(), nullable=True),
        sa.Column("read_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("outbox_id", sa.UUID(), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "category IN ('ACCOUNT', 'DRAWS', 'MARKETING', 'PURCHASES')",
            name=op.f("ck_notifications_category_valid"),
        ),
        sa.CheckConstraint(
            "kind ~ '^[a-z][a-z0-9_]*([.][a-z0-9_]+)*$'", name=op.f("ck_notifications_kind_format")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_notifications_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("outbox_id", name=op.f("uq_notifications_outbox_id")),
    )
    op.create_index(
        "ix_notifications_user_id_create_time",
        "notifications",
        ["user_id", "create_time"],
        unique=False,
    )
    op.create_index(
        "ix_notifications_user_id_unread",
        "notifications",
        ["user_id"],
        unique=False,
        postgresql_where=sa.text("read_time IS NULL"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=True),
        sa.Column(
            "payload",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("dedupe_key", sa.Text(), nullable=True),
        sa.Column("state", sa.Text(), server_default=sa.text("'PENDING'"), nullable=False),
        sa.Column("attempt_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default=sa.text("8"), nullable=False),
        sa.Column(
            "available_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("deliver_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "state IN ('PENDING', 'DELIVERED', 'DEAD')", name=op.f("ck_outbox_state_valid")
        ),
        sa.CheckConstraint("topic ~ '^[a-z][a-z0-9_.]*$'", name=op.f("ck_outbox_topic_format")),
        sa.CheckConstraint("attempt_count >= 0", name=op.f("ck_outbox_attempt_count_non_negative")),
        sa.CheckConstraint("max_attempts > 0", name=op.f("ck_outbox_max_attempts_positive")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_outbox_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_outbox_dedupe_key")),
    )
    op.create_index(
        "ix_outbox_pending_available_time",
        "outbox",
        ["available_time"],
        unique=False,
        postgresql_where=sa.text("state = 'PENDING'"),
    )
    op.create_index(op.f("ix_outbox_user_id"), "outbox", ["user_id"], unique=False)
    op.create_table(
        "payment_customers",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("provider_customer_id", sa.Text(), nullable=False),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "provider IN ('STRIPE', 'PAYPAL')", name=op.f("ck_payment_customers_provider_valid")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_payment_customers_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_customers")),
        sa.UniqueConstraint(
            "provider",
            "provider_customer_id",
            name=op.f("uq_payment_customers_provider_provider_customer_id"),
        ),
        sa.UniqueConstraint(
            "user_id", "provider", name=op.f("uq_payment_customers_user_id_provider")
        ),
    )
    op.create_table(
        "payment_methods",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("provider_reference", sa.Text(), nullable=False),
        sa.Column("brand", sa.Text(), nullable=False),
        sa.Column("last4", sa.CHAR(length=4), nullable=False),
        sa.Column("exp_month", sa.SmallInteger(), nullable=False),
        sa.Column("exp_year", sa.SmallInteger(), nullable=False),
        sa.Column("is_default", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("last4 ~ '^[0-9]{4}$'", name=op.f("ck_payment_methods_last4_digits")),
        sa.CheckConstraint(
            "provider IN ('STRIPE', 'PAYPAL')", name=op.f("ck_payment_methods_provider_valid")
        ),
        sa.CheckConstraint(
            "exp_month BETWEEN 1 AND 12", name=op.f("ck_payment_methods_exp_month_range")
        ),
        sa.CheckConstraint(
            "exp_year BETWEEN 2000 AND 9999", name=op.f("ck_payment_methods_exp_year_range")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_payment_methods_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_methods")),
        sa.UniqueConstraint(
            "provider",
            "provider_reference",
            name=op.f("uq_payment_methods_provider_provider_reference"),
        ),
    )
    op.create_index(
        op.f("ix_payment_methods_user_id"), "payment_methods", ["user_id"], unique=False
    )
    op.create_index(
        "ix_payment_methods_user_id_default",
        "payment_methods",
        ["user_id"],
        unique=True,
        postgresql_where=sa.text("is_default"),
    )
    op.create_table(
        "play_limits",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("period", sa.Text(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("pending_amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("pending_effective_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_play_limits_currency_iso4217")),
        sa.CheckConstraint(
            "period IN ('DAILY', 'WEEKLY', 'MONTHLY')", name=op.f("ck_play_limits_period_valid")
        ),
        sa.CheckConstraint(
            "amount_minor >= 0", name=op.f("ck_play_limits_amount_minor_non_negative")
        ),
        sa.CheckConstraint(
            "pending_amount_minor >= 0",
            name=op.f("ck_play_limits_pending_amount_minor_non_negative"),
        ),
        sa.CheckConstraint(
            "pending_amount_minor IS NULL OR pending_effective_time IS NOT NULL",
            name=op.f("ck_play_limits_pending_amount_has_effective_time"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_play_limits_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_play_limits")),
        sa.UniqueConstraint("user_id", "period", name=op.f("uq_play_limits_user_id_period")),
    )
    op.create_table(
        "self_exclusions",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("start_time", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("end_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "end_time IS NULL OR end_time > start_time",
            name=op.f("ck_self_exclusions_end_after_start"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_self_exclusions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_self_exclusions")),
    )
    op.create_index(
        "ix_self_exclusions_user_id_end_time",
        "self_exclusions",
        ["user_id", "end_time"],
        unique=False,
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("device", sa.Text(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("ip_address", postgresql.INET(), nullable=True),
        sa.Column(
            "last_use_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("idle_expire_time", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("absolute_expire_time", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("revoke_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "revoke_reason IN ('LOGOUT', 'USER_REVOKED', 'PASSWORD_CHANGED', 'PASSWORD_RESET', 'REFRESH_TOKEN_REUSED', 'ACCOUNT_SUSPENDED', 'ACCOUNT_DELETED', 'SELF_EXCLUDED', 'ADMIN_REVOKED')",
            name=op.f("ck_sessions_revoke_reason_valid"),
        ),
        sa.CheckConstraint(
            "(revoke_time IS NULL) = (revoke_reason IS NULL)",
            name=op.f("ck_sessions_revoke_reason_iff_revoked"),
        ),
        sa.CheckConstraint(
            "idle_expire_time <= absolute_expire_time",
            name=op.f("ck_sessions_idle_within_absolute"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    op.create_index(
        "ix_sessions_user_id_last_use_time", "sessions", ["user_id", "last_use_time"], unique=False
    )
    op.create_table(
        "signed_tree_heads",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("house_id", sa.UUID(), nullable=False),
        sa.Column("tree_size", sa.Integer(), nullable=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("timestamp", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "date_trunc('milliseconds', timestamp) = timestamp",
            name=op.f("ck_signed_tree_heads_timestamp_whole_ms"),
        ),
        sa.CheckConstraint(
            "octet_length(public_key) = 32", name=op.f("ck_signed_tree_heads_public_key_32_bytes")
        ),
        sa.CheckConstraint(
            "octet_length(root) = 32", name=op.f("ck_signed_tree_heads_root_32_bytes")
        ),
        sa.CheckConstraint(
            "octet_length(signature) = 64", name=op.f("ck_signed_tree_heads_signature_64_bytes")
        ),
        sa.CheckConstraint(
            "tree_size >= 0", name=op.f("ck_signed_tree_heads_tree_size_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["house_id"], ["houses.id"], name=op.f("fk_signed_tree_heads_house_id_houses")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signed_tree_heads")),
        sa.UniqueConstraint(
            "house_id", "tree_size", name=op.f("uq_signed_tree_heads_house_id_tree_size")
        ),
    )
    op.create_table(
        "totp_backup_codes",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(), nullable=False),
        sa.Column("use_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_totp_backup_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_totp_backup_codes")),
        sa.UniqueConstraint(
            "user_id", "code_hash", name=op.f("uq_totp_backup_codes_user_id_code_hash")
        ),
    )
    op.create_table(
        "totp_credentials",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("secret_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("secret_key_id", sa.Text(), nullable=False),
        sa.Column("enroll_expire_time", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("confirm_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("last_used_step", sa.BigInteger(), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(secret_ciphertext IS NULL) = (secret_key_id IS NULL)",
            name=op.f("ck_totp_credentials_secret_key_id"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_totp_credentials_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_totp_credentials")),
        sa.UniqueConstraint("user_id", name=op.f("uq_totp_credentials_user_id")),
    )
    op.create_table(
        "translations",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("language_code", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "key ~ '^[A-Za-z0-9_-]+([.][A-Za-z0-9_-]+)*$'", name=op.f("ck_translations_key_format")
        ),
        sa.ForeignKeyConstraint(
            ["language_code"],
            ["languages.language_code"],
            name=op.f("fk_translations_language_code_languages"),
            onupdate="CASCADE",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_translations")),
        sa.UniqueConstraint("language_code", "key", name=op.f("uq_translations_language_code_key")),
    )
    op.create_table(
        "user_addresses",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("line1", sa.Text(), nullable=False),
        sa.Column("line2", sa.Text(), nullable=True),
        sa.Column("city", sa.Text(), nullable=False),
        sa.Column("region", sa.Text(), nullable=True),
        sa.Column("postal_code", sa.Text(), nullable=True),
        sa.Column("country_code", sa.CHAR(length=2), nullable=False),
        sa.Column("is_primary", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "country_code ~ '^[A-Z]{2}$'", name=op.f("ck_user_addresses_country_code_iso3166")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_addresses_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_addresses")),
    )
    op.create_index(op.f("ix_user_addresses_user_id"), "user_addresses", ["user_id"], unique=False)
    op.create_index(
        "ix_user_addresses_user_id_primary",
        "user_addresses",
        ["user_id"],
        unique=True,
        postgresql_where=sa.text("is_primary"),
    )
    op.create_table(
        "user_identities",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("email", postgresql.CITEXT(), nullable=True),
        sa.Column("email_verified", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("last_login_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "provider ~ '^[a-z][a-z0-9_-]{1,31}$'", name=op.f("ck_user_identities_provider_id")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_identities_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_identities")),
        sa.UniqueConstraint(
            "provider", "subject", name=op.f("uq_user_identities_provider_subject")
        ),
    )
    op.create_index(
        op.f("ix_user_identities_user_id"), "user_identities", ["user_id"], unique=False
    )
    op.create_table(
        "user_identity_documents",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("document_type", sa.Text(), nullable=False),
        sa.Column("issuing_country", sa.CHAR(length=2), nullable=False),
        sa.Column("document_number_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("document_number_key_id", sa.Text(), nullable=False),
        sa.Column("document_number_blind_index", sa.LargeBinary(), nullable=False),
        sa.Column("document_number_last4", sa.Text(), nullable=False),
        sa.Column("file_storage_name", sa.Text(), nullable=False),
        sa.Column("file_key_id", sa.Text(), nullable=False),
        sa.Column("file_sha256", sa.LargeBinary(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), server_default=sa.text("'PENDING'"), nullable=False),
        sa.Column("review_reason", sa.Text(), nullable=True),
        sa.Column("reviewer_id", sa.UUID(), nullable=True),
        sa.Column("review_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(state = 'PENDING') = (review_time IS NULL)",
            name=op.f("ck_user_identity_documents_review_time_iff_reviewed"),
        ),
        sa.CheckConstraint(
            "content_type IN ('image/jpeg', 'image/png', 'application/pdf')",
            name=op.f("ck_user_identity_documents_content_type_valid"),
        ),
        sa.CheckConstraint(
            "document_type IN ('PASSPORT', 'NATIONAL_ID', 'DRIVING_LICENCE')",
            name=op.f("ck_user_identity_documents_document_type_valid"),
        ),
        sa.CheckConstraint(
            "issuing_country ~ '^[A-Z]{2}$'",
            name=op.f("ck_user_identity_documents_issuing_country_iso3166"),
        ),
        sa.CheckConstraint(
            "state IN ('PENDING', 'APPROVED', 'REJECTED')",
            name=op.f("ck_user_identity_documents_state_valid"),
        ),
        sa.CheckConstraint(
            "(document_number_ciphertext IS NULL) = (document_number_key_id IS NULL)",
            name=op.f("ck_user_identity_documents_document_number_key_id"),
        ),
        sa.CheckConstraint(
            "size_bytes > 0 AND size_bytes <= 10485760",
            name=op.f("ck_user_identity_documents_size_bytes_range"),
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"], ["users.id"], name=op.f("fk_user_identity_documents_reviewer_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_identity_documents_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_identity_documents")),
        sa.UniqueConstraint(
            "file_storage_name", name=op.f("uq_user_identity_documents_file_storage_name")
        ),
    )
    op.create_index(
        op.f("ix_user_identity_documents_document_number_blind_index"),
        "user_identity_documents",
        ["document_number_blind_index"],
        unique=False,
    )
    op.create_index(
        "ix_user_identity_documents_pending_create_time",
        "user_identity_documents",
        ["create_time"],
        unique=False,
        postgresql_where=sa.text("state = 'PENDING'"),
    )
    op.create_index(
        "ix_user_identity_documents_user_id_create_time",
        "user_identity_documents",
        ["user_id", "create_time"],
        unique=False,
    )
    op.create_table(
        "user_phones",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("phone_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("phone_key_id", sa.Text(), nullable=False),
        sa.Column("phone_blind_index", sa.LargeBinary(), nullable=False),
        sa.Column("verify_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("is_primary", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(phone_ciphertext IS NULL) = (phone_key_id IS NULL)",
            name=op.f("ck_user_phones_phone_key_id"),
        ),
        sa.CheckConstraint(
            "NOT is_primary OR verify_time IS NOT NULL",
            name=op.f("ck_user_phones_primary_is_verified"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_phones_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_phones")),
        sa.UniqueConstraint(
            "user_id", "phone_blind_index", name=op.f("uq_user_phones_user_id_phone_blind_index")
        ),
    )
    op.create_index(
        op.f("ix_user_phones_phone_blind_index"), "user_phones", ["phone_blind_index"], unique=False
    )
    op.create_index(
        "ix_user_phones_user_id_primary",
        "user_phones",
        ["user_id"],
        unique=True,
        postgresql_where=sa.text("is_primary"),
    )
    op.create_table(
        "verification_tokens",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("email", postgresql.CITEXT(), nullable=False),
        sa.Column("expire_time", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("consume_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "purpose IN ('EMAIL_VERIFICATION', 'PASSWORD_RESET')",
            name=op.f("ck_verification_tokens_purpose_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_verification_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_verification_tokens_token_hash")),
    )
    op.create_index(
        "ix_verification_tokens_user_id_purpose",
        "verification_tokens",
        ["user_id", "purpose"],
        unique=False,
    )
    op.create_table(
        "draws",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("house_id", sa.UUID(), nullable=False),
        sa.Column("state", sa.Text(), server_default=sa.text("'SCHEDULED'"), nullable=False),
        sa.Column(
            "algorithm_version", sa.Text(), server_default=sa.text("'AMESA-DRAW-1'"), nullable=False
        ),
        sa.Column("manifest_json", sa.Text(), nullable=False),
        sa.Column("manifest_signature", sa.LargeBinary(), nullable=False),
        sa.Column("transparency_public_key", sa.LargeBinary(), nullable=False),
        sa.Column("beacon_chain_hash", sa.Text(), nullable=False),
        sa.Column("beacon_round", sa.BigInteger(), nullable=False),
        sa.Column("beacon_time", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("freeze_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("final_tree_head_id", sa.UUID(), nullable=True),
        sa.Column("beacon_signature", sa.LargeBinary(), nullable=True),
        sa.Column("beacon_randomness", sa.LargeBinary(), nullable=True),
        sa.Column(
            "fallback_applied", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("seed", sa.LargeBinary(), nullable=True),
        sa.Column("words", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("winners", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("reserves_requested", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("transcript_json", sa.Text(), nullable=True),
        sa.Column("transcript_sha256", sa.LargeBinary(), nullable=True),
        sa.Column("conduct_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("attempt_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "state <> 'COMPLETED' OR (seed IS NOT NULL AND winners IS NOT NULL AND transcript_json IS NOT NULL AND conduct_time IS NOT NULL)",
            name=op.f("ck_draws_completed_has_result"),
        ),
        sa.CheckConstraint(
            "state IN ('SCHEDULED', 'FROZEN', 'COMPLETED', 'CANCELLED')",
            name=op.f("ck_draws_state_valid"),
        ),
        sa.CheckConstraint(
            "state NOT IN ('FROZEN', 'COMPLETED') OR final_tree_head_id IS NOT NULL",
            name=op.f("ck_draws_frozen_has_final_tree_head"),
        ),
        sa.CheckConstraint("beacon_round > 0", name=op.f("ck_draws_beacon_round_positive")),
        sa.CheckConstraint(
            "octet_length(manifest_signature) = 64",
            name=op.f("ck_draws_manifest_signature_64_bytes"),
        ),
        sa.CheckConstraint(
            "octet_length(transparency_public_key) = 32",
            name=op.f("ck_draws_transparency_public_key_32_bytes"),
        ),
        sa.CheckConstraint(
            "reserves_requested >= 0", name=op.f("ck_draws_reserves_requested_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["final_tree_head_id"],
            ["signed_tree_heads.id"],
            name=op.f("fk_draws_final_tree_head_id_signed_tree_heads"),
        ),
        sa.ForeignKeyConstraint(["house_id"], ["houses.id"], name=op.f("fk_draws_house_id_houses")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_draws")),
        sa.UniqueConstraint("house_id", name=op.f("uq_draws_house_id")),
    )
    op.create_index("ix_draws_state_beacon_time", "draws", ["state", "beacon_time"], unique=False)
    op.create_table(
        "orders",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("house_id", sa.UUID(), nullable=False),
        sa.Column("request_id", sa.UUID(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("subtotal_minor", sa.BigInteger(), nullable=False),
        sa.Column("discount_minor", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("promotion_id", sa.UUID(), nullable=True),
        sa.Column("promotion_code", sa.Text(), nullable=True),
        sa.Column("state", sa.Text(), server_default=sa.text("'PENDING_PAYMENT'"), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("provider_payment_reference", sa.Text(), nullable=True),
        sa.Column("payment_method_id", sa.UUID(), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("refunded_minor", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("expire_time", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("paid_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column("reservation_release_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_orders_currency_iso4217")),
        sa.CheckConstraint(
            "provider IN ('STRIPE', 'PAYPAL')", name=op.f("ck_orders_provider_valid")
        ),
        sa.CheckConstraint(
            "state <> 'PENDING_PAYMENT' OR reservation_release_time IS NULL",
            name=op.f("ck_orders_pending_holds_reservation"),
        ),
        sa.CheckConstraint(
            "state IN ('PENDING_PAYMENT', 'PAID', 'EXPIRED', 'CANCELLED', 'FAILED', 'REFUNDED', 'PARTIALLY_REFUNDED')",
            name=op.f("ck_orders_state_valid"),
        ),
        sa.CheckConstraint(
            "state NOT IN ('PAID', 'REFUNDED', 'PARTIALLY_REFUNDED') OR paid_time IS NOT NULL",
            name=op.f("ck_orders_paid_states_have_paid_time"),
        ),
        sa.CheckConstraint(
            "discount_minor >= 0 AND discount_minor <= subtotal_minor - unit_price_minor",
            name=op.f("ck_orders_discount_range"),
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_orders_quantity_positive")),
        sa.CheckConstraint(
            "refunded_minor >= 0 AND refunded_minor <= total_minor",
            name=op.f("ck_orders_refunded_range"),
        ),
        sa.CheckConstraint(
            "subtotal_minor = unit_price_minor * quantity",
            name=op.f("ck_orders_subtotal_arithmetic"),
        ),
        sa.CheckConstraint(
            "total_minor = subtotal_minor - discount_minor", name=op.f("ck_orders_total_arithmetic")
        ),
        sa.CheckConstraint("unit_price_minor > 0", name=op.f("ck_orders_unit_price_positive")),
        sa.ForeignKeyConstraint(
            ["house_id"], ["houses.id"], name=op.f("fk_orders_house_id_houses")
        ),
        sa.ForeignKeyConstraint(
            ["payment_method_id"],
            ["payment_methods.id"],
            name=op.f("fk_orders_payment_method_id_payment_methods"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["promotion_id"], ["promotions.id"], name=op.f("fk_orders_promotion_id_promotions")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_orders_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint(
            "provider",
            "provider_payment_reference",
            name=op.f("uq_orders_provider_provider_payment_reference"),
        ),
        sa.UniqueConstraint("user_id", "request_id", name=op.f("uq_orders_user_id_request_id")),
    )
    op.create_index("ix_orders_house_id_state", "orders", ["house_id", "state"], unique=False)
    op.create_index(
        "ix_orders_pending_expire_time",
        "orders",
        ["expire_time"],
        unique=False,
        postgresql_where=sa.text("state = 'PENDING_PAYMENT'"),
    )
    op.create_index(
        "ix_orders_user_id_create_time", "orders", ["user_id", "create_time"], unique=False
    )
    op.create_table(
        "phone_verifications",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("phone_id", sa.UUID(), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(), nullable=False),
        sa.Column("attempt_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default=sa.text("5"), nullable=False),
        sa.Column("expire_time", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("verify_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "attempt_count <= max_attempts", name=op.f("ck_phone_verifications_attempts_within_max")
        ),
        sa.CheckConstraint(
            "attempt_count >= 0", name=op.f("ck_phone_verifications_attempt_count_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["phone_id"],
            ["user_phones.id"],
            name=op.f("fk_phone_verifications_phone_id_user_phones"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_phone_verifications_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phone_verifications")),
    )
    op.create_index(
        "ix_phone_verifications_phone_id_create_time",
        "phone_verifications",
        ["phone_id", "create_time"],
        unique=False,
    )
    op.create_index(
        op.f("ix_phone_verifications_user_id"), "phone_verifications", ["user_id"], unique=False
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("session_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("rotate_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_refresh_tokens_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_refresh_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_refresh_tokens_token_hash")),
    )
    op.create_index(
        op.f("ix_refresh_tokens_session_id"), "refresh_tokens", ["session_id"], unique=False
    )
    op.create_index(
        "ix_refresh_tokens_session_id_live",
        "refresh_tokens",
        ["session_id"],
        unique=True,
        postgresql_where=sa.text("rotate_time IS NULL"),
    )
    op.create_index(op.f("ix_refresh_tokens_user_id"), "refresh_tokens", ["user_id"], unique=False)
    op.create_table(
        "promotion_redemptions",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("promotion_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("discount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("release_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "currency ~ '^[A-Z]{3}$'", name=op.f("ck_promotion_redemptions_currency_iso4217")
        ),
        sa.CheckConstraint(
            "discount_minor >= 0", name=op.f("ck_promotion_redemptions_discount_minor_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_promotion_redemptions_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["promotion_id"],
            ["promotions.id"],
            name=op.f("fk_promotion_redemptions_promotion_id_promotions"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_promotion_redemptions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promotion_redemptions")),
        sa.UniqueConstraint("order_id", name=op.f("uq_promotion_redemptions_order_id")),
    )
    op.create_index(
        "ix_promotion_redemptions_promotion_id_user_id",
        "promotion_redemptions",
        ["promotion_id", "user_id"],
        unique=False,
    )
    op.create_table(
        "tickets",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("house_id", sa.UUID(), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column(
            "leaf_index", sa.Integer(), sa.Computed("number - 1", persisted=True), nullable=False
        ),
        sa.Column("secret_id", sa.LargeBinary(), nullable=False),
        sa.Column("purchase_time", postgresql.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("state", sa.Text(), server_default=sa.text("'ACTIVE'"), nullable=False),
        sa.Column("void_time", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(state = 'VOIDED') = (void_time IS NOT NULL)",
            name=op.f("ck_tickets_void_time_iff_voided"),
        ),
        sa.CheckConstraint(
            "date_trunc('milliseconds', purchase_time) = purchase_time",
            name=op.f("ck_tickets_purchase_time_whole_ms"),
        ),
        sa.CheckConstraint(
            "state IN ('ACTIVE', 'WON', 'RESERVE', 'NOT_WON', 'VOIDED')",
            name=op.f("ck_tickets_state_valid"),
        ),
        sa.CheckConstraint("number >= 1", name=op.f("ck_tickets_number_positive")),
        sa.CheckConstraint(
            "octet_length(secret_id) = 16", name=op.f("ck_tickets_secret_id_16_bytes")
        ),
        sa.ForeignKeyConstraint(
            ["house_id"], ["houses.id"], name=op.f("fk_tickets_house_id_houses")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_tickets_order_id_orders")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_tickets_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tickets")),
        sa.UniqueConstraint("house_id", "number", name=op.f("uq_tickets_house_id_number")),
    )
    op.create_index(op.f("ix_tickets_order_id"), "tickets", ["order_id"], unique=False)
    op.create_index("ix_tickets_user_id_house_id", "tickets", ["user_id", "house_id"], unique=False)
    op.create_table(
        "transactions",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), server_default=sa.text("'PENDING'"), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(length=3), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("provider_reference", sa.Text(), nullable=True),
        sa.Column("provider_payment_reference", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("request_id", sa.UUID(), nullable=True),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "update_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "currency ~ '^[A-Z]{3}$'", name=op.f("ck_transactions_currency_iso4217")
        ),
        sa.CheckConstraint("kind IN ('CHARGE', 'REFUND')", name=op.f("ck_transactions_kind_valid")),
        sa.CheckConstraint(
            "provider IN ('STRIPE', 'PAYPAL')", name=op.f("ck_transactions_provider_valid")
        ),
        sa.CheckConstraint(
            "state IN ('PENDING', 'SUCCEEDED', 'FAILED')", name=op.f("ck_transactions_state_valid")
        ),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_transactions_amount_positive")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_transactions_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_transactions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_transactions_idempotency_key")),
        sa.UniqueConstraint(
            "provider",
            "provider_reference",
            name=op.f("uq_transactions_provider_provider_reference"),
        ),
    )
    op.create_index(op.f("ix_transactions_order_id"), "transactions", ["order_id"], unique=False)
    op.create_index(
        "ix_transactions_user_id_create_time",
        "transactions",
        ["user_id", "create_time"],
        unique=False,
    )
    op.create_table(
        "draw_entries",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("house_id", sa.UUID(), nullable=False),
        sa.Column("leaf_index", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.UUID(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
        sa.Column(
            "create_time",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("leaf_index >= 0", name=op.f("ck_draw_entries_leaf_index_non_negative")),
        sa.CheckConstraint(
            "octet_length(leaf_hash) = 32", name=op.f("ck_draw_entries_leaf_hash_32_bytes")
        ),
        sa.ForeignKeyConstraint(
            ["house_id"], ["houses.id"], name=op.f("fk_draw_entries_house_id_houses")
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_draw_entries_ticket_id_tickets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_draw_entries")),
        sa.UniqueConstraint(
            "house_id", "leaf_index", name=op.f("uq_draw_entries_house_id_leaf_index")
        ),
        sa.UniqueConstraint("ticket_id", name=op.f("uq_draw_entries_ticket_id")),
    )
