"""The migrations and the ORM models describe the same schema, and the schema keeps its promises
(naming convention, row level security, triggers, privileges, ticket counters).

Two comparisons, because each sees what the other cannot:
- Alembic's autogenerate (`compare_metadata`) against the migrated database: what a future
  `alembic revision --autogenerate` would write. It must be empty.
- PostgreSQL's own catalog of the migrated database against a database built from the models
  with `metadata.create_all`: column types, defaults, generated expressions, every constraint's
  definition (CHECKs included, which autogenerate ignores) and every index's definition (partial
  predicates and methods included, which autogenerate does not compare).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from geoalchemy2 import WKTElement
from sqlalchemy import Connection, func, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from server.auth.models import UserSession
from server.core.models_registry import include_object, metadata
from server.core.orm import NAMING_CONVENTION
from server.lottery.models import House, HouseState, PropertyType
from server.user.models import Role, User, UserStatus
from tests.databases import engine_url, throwaway_database

EXTENSIONS = ("postgis", "pg_trgm", "citext", "pgcrypto")


@dataclass(frozen=True)
class Databases:
    migrated: str  # built by `alembic upgrade head`
    from_models: str  # built by `metadata.create_all`


@pytest.fixture(scope="module")
async def databases() -> AsyncIterator[Databases]:
    async with (
        throwaway_database("amesa_schema", migrated=True) as migrated,
        throwaway_database("amesa_models", migrated=False) as from_models,
    ):
        models = await asyncpg.connect(from_models)
        try:
            for extension in EXTENSIONS:
                await models.execute(f"CREATE EXTENSION IF NOT EXISTS {extension}")
        finally:
            await models.close()
        engine = create_async_engine(engine_url(from_models))
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        await engine.dispose()
        yield Databases(migrated, from_models)


async def fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetch(sql, *args)
    finally:
        await connection.close()


# --- the two descriptions agree ------------------------------------------------------------------


async def test_autogenerate_finds_no_difference(databases: Databases) -> None:
    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_object": include_object,
                "compare_type": True,
                "compare_server_default": True,
            },
        )
        return list(compare_metadata(context, metadata))

    engine = create_async_engine(engine_url(databases.migrated))
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(compare)
    finally:
        await engine.dispose()

    # No expected differences today: the generated tsvector columns compare equal (Alembic skips
    # computed expressions, the catalog test below checks them) and the GiST index on
    # houses.location is declared in the model rather than created by geoalchemy2, so it has a
    # conventional name on both sides. Any entry here is drift between models and migrations.
    assert differences == []


COLUMNS = """
    SELECT c.relname AS table_name, a.attname AS column_name,
           format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
           a.attgenerated AS generated, pg_get_expr(d.adbin, d.adrelid) AS default
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
      AND a.attnum > 0 AND NOT a.attisdropped AND c.relname = ANY($1::text[])
"""
CONSTRAINTS = """
    SELECT conrelid::regclass::text AS table_name, conname AS name,
           pg_get_constraintdef(oid) AS definition
    FROM pg_constraint
    WHERE connamespace = 'public'::regnamespace AND conrelid::regclass::text = ANY($1::text[])
"""
INDEXES = """
    SELECT tablename AS table_name, indexname AS name, indexdef AS definition
    FROM pg_indexes WHERE schemaname = 'public' AND tablename = ANY($1::text[])
"""


@pytest.mark.parametrize(
    "query", [COLUMNS, CONSTRAINTS, INDEXES], ids=["columns", "constraints", "indexes"]
)
async def test_catalog_of_migrations_equals_catalog_of_models(
    databases: Databases, query: str
) -> None:
    tables = sorted(metadata.tables)
    migrated = {tuple(row) for row in await fetch(databases.migrated, query, tables)}
    from_models = {tuple(row) for row in await fetch(databases.from_models, query, tables)}

    assert sorted(migrated - from_models) == [], "only in the migrations"
    assert sorted(from_models - migrated) == [], "only in the models"


# --- conventions ---------------------------------------------------------------------------------

PREFIXES = tuple(f"{kind}_" for kind in NAMING_CONVENTION)


async def test_every_constraint_and_index_follows_the_naming_convention(
    databases: Databases,
) -> None:
    tables = sorted(metadata.tables)
    names = [row["name"] for row in await fetch(databases.migrated, CONSTRAINTS, tables)]
    names += [row["name"] for row in await fetch(databases.migrated, INDEXES, tables)]

    assert [name for name in names if not name.startswith(PREFIXES)] == []
    # PostgreSQL silently truncates longer identifiers, which would break name-based handling.
    assert [name for name in names if len(name) > 63] == []


# --- migration-only objects: triggers, row level security, privileges ----------------------------

# Tables with a `user_id` that are deliberately not user-owned: the outbox is system work.
NOT_USER_OWNED = {"outbox"}


def user_owned_tables() -> set[str]:
    owned = {name for name, table in metadata.tables.items() if "user_id" in table.c}
    return (owned - NOT_USER_OWNED) | {"users"}


async def test_row_level_security_covers_every_user_owned_table(databases: Databases) -> None:
    rows = await fetch(
        databases.migrated,
        """
        SELECT c.relname, p.polname, pg_get_expr(p.polqual, p.polrelid) AS using_clause,
               pg_get_expr(p.polwithcheck, p.polrelid) AS check_clause, p.polcmd::text AS polcmd
        FROM pg_class c JOIN pg_policy p ON p.polrelid = c.oid
        WHERE c.relnamespace = 'public'::regnamespace AND c.relrowsecurity
        """,
    )

    assert {row["relname"] for row in rows} == user_owned_tables()
    for row in rows:
        column = "id" if row["relname"] == "users" else "user_id"
        assert row["polname"] == "user_isolation"
        assert row["polcmd"] == "*"  # every command
        assert row["using_clause"] == row["check_clause"]
        assert row["using_clause"].startswith(
            f"(({column} = (NULLIF(current_setting('amesa.user_id'"
        )
        assert "current_setting('amesa.bypass_rls'::text, true) = 'on'::text" in row["using_clause"]


async def test_every_table_with_update_time_has_its_trigger(databases: Databases) -> None:
    rows = await fetch(
        databases.migrated,
        "SELECT tgrelid::regclass::text AS table_name, tgname FROM pg_trigger"
        " WHERE NOT tgisinternal AND tgfoid = 'amesa_set_update_time'::regproc",
    )

    expected = {name for name, table in metadata.tables.items() if "update_time" in table.c}
    assert {row["table_name"] for row in rows} == expected
    assert all(row["tgname"] == f"trg_{row['table_name']}_update_time" for row in rows)


async def test_update_time_moves_on_update(databases: Databases) -> None:
    connection = await asyncpg.connect(databases.migrated)
    try:
        row_id = await connection.fetchval(
            "INSERT INTO job_leases (name, update_time) VALUES ($1, now() - interval '1 day')"
            " RETURNING id",
            f"job-{uuid.uuid4()}",
        )
        before = await connection.fetchval(
            "SELECT update_time FROM job_leases WHERE id = $1", row_id
        )
        await connection.execute("UPDATE job_leases SET owner = 'me' WHERE id = $1", row_id)
        after = await connection.fetchval(
            "SELECT update_time FROM job_leases WHERE id = $1", row_id
        )
    finally:
        await connection.close()

    assert after > before


async def test_application_role_owns_nothing_and_cannot_rewrite_logs(
    databases: Databases,
) -> None:
    owned = await fetch(
        databases.migrated,
        "SELECT relname FROM pg_class WHERE relowner = 'amesa_app'::regrole",
    )
    assert owned == []

    rows = await fetch(
        databases.migrated,
        """
        SELECT t.table_name,
               has_table_privilege('amesa_app', t.table_name, 'SELECT') AS can_select,
               has_table_privilege('amesa_app', t.table_name, 'INSERT') AS can_insert,
               has_table_privilege('amesa_app', t.table_name, 'UPDATE') AS can_update,
               has_table_privilege('amesa_app', t.table_name, 'DELETE') AS can_delete
        FROM unnest($1::text[]) AS t(table_name)
        """,
        sorted(metadata.tables),
    )
    append_only = {"audit_log", "draw_entries", "signed_tree_heads"}
    for row in rows:
        writable = row["table_name"] not in append_only
        assert (row["can_select"], row["can_insert"]) == (True, True), row["table_name"]
        assert (row["can_update"], row["can_delete"]) == (writable, writable), row["table_name"]


async def test_audit_log_refuses_update_and_delete_even_from_the_owner(
    databases: Databases,
) -> None:
    connection = await asyncpg.connect(databases.migrated)  # the owner (a superuser here)
    try:
        await connection.execute(
            "INSERT INTO audit_log (actor_kind, action, resource_name) VALUES"
            " ('SYSTEM', 'test.append', 'tests/1')"
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await connection.execute("UPDATE audit_log SET action = 'rewritten'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await connection.execute("DELETE FROM audit_log")
    finally:
        await connection.close()


# --- the constraints the money path relies on ----------------------------------------------


async def test_ticket_counters_cannot_exceed_total_tickets(databases: Databases) -> None:
    connection = await asyncpg.connect(databases.migrated)
    try:
        house_id = await connection.fetchval(
            "INSERT INTO houses (title, total_tickets) VALUES ('Counter test', 10) RETURNING id"
        )
        # The reservation statement of SPEC §5, once without and once with the guard.
        await connection.execute(
            "UPDATE houses SET tickets_sold = 6, tickets_reserved = 4 WHERE id = $1", house_id
        )
        with pytest.raises(asyncpg.CheckViolationError, match="ck_houses_tickets_within_total"):
            await connection.execute(
                "UPDATE houses SET tickets_reserved = tickets_reserved + 1 WHERE id = $1", house_id
            )
        reserved = await connection.fetchval(
            "UPDATE houses SET tickets_reserved = tickets_reserved + 1 WHERE id = $1"
            " AND tickets_sold + tickets_reserved + 1 <= total_tickets RETURNING tickets_reserved",
            house_id,
        )
    finally:
        await connection.close()

    assert reserved is None  # sold out: no row, no error


# --- the models work at runtime --------------------------------------------------------------


async def test_models_round_trip_through_the_orm(databases: Databases) -> None:
    engine = create_async_engine(engine_url(databases.migrated))
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
            user = User(
                email=f"Round.Trip-{uuid.uuid4().hex[:8]}@Example.org",
                given_name="R",
                family_name="T",
            )
            house = House(
                title="Round trip villa",
                city="Lisbon",
                location=WKTElement("POINT(-9.13 38.71)", srid=4326),
                property_type=PropertyType.VILLA,
                features=["pool", "garden"],
                metadata_={"energy": "A"},
            )
            session.add_all([user, house])
            await session.flush()
            session.add(
                UserSession(
                    user_id=user.id,
                    ip_address="192.0.2.1",
                    idle_expire_time=func.now(),
                    absolute_expire_time=func.now(),
                )
            )
        async with AsyncSession(engine) as session:
            loaded_user = await session.get_one(User, user.id)
            loaded_house = await session.get_one(House, house.id)
            ip_address = await session.scalar(
                select(UserSession.ip_address).where(UserSession.user_id == user.id)
            )
            # The geography column answers PostGIS distance queries (metres on the spheroid).
            nearby = await session.scalar(
                select(House.id).where(
                    House.id == house.id,
                    func.ST_DWithin(
                        House.location, WKTElement("POINT(-9.14 38.71)", srid=4326), 2_000
                    ),
                )
            )
            # And the generated search vector answers full-text queries.
            found = await session.scalar(
                select(House.id).where(
                    House.id == house.id,
                    House.search_vector.bool_op("@@")(func.websearch_to_tsquery("simple", "villa")),
                )
            )
    finally:
        await engine.dispose()

    assert loaded_user.status is UserStatus.ACTIVE
    assert loaded_user.roles == [Role.USER]
    assert loaded_house.state is HouseState.DRAFT
    assert loaded_house.property_type is PropertyType.VILLA
    assert (loaded_house.features, loaded_house.metadata_) == (["pool", "garden"], {"energy": "A"})
    assert ip_address == IPv4Address("192.0.2.1")
    assert nearby == house.id
    assert found == house.id
