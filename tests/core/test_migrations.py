"""The migrations go up, all the way down, and up again on a fresh database."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import asyncpg
import pytest
from alembic import command
from alembic.script import ScriptDirectory

from server.core.models_registry import metadata
from server.manage import alembic_config
from tests.databases import SERVER_URL, migrate, throwaway_database


@pytest.fixture(scope="module")
async def empty_database() -> AsyncIterator[str]:
    """A throwaway database, dropped afterwards; yields its URL."""
    async with throwaway_database("amesa_mig", migrated=False) as url:
        yield url


async def our_tables(url: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await connection.close()
    return {row["tablename"] for row in rows} - {"spatial_ref_sys", "alembic_version"}


async def our_functions(url: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT proname FROM pg_proc WHERE proname LIKE 'amesa%'")
    finally:
        await connection.close()
    return {row["proname"] for row in rows}


def test_there_is_exactly_one_head() -> None:
    script = ScriptDirectory.from_config(alembic_config(SERVER_URL))
    assert len(script.get_heads()) == 1


async def test_upgrade_downgrade_upgrade_round_trips(empty_database: str) -> None:
    await migrate(empty_database, "head")
    assert await our_tables(empty_database) == set(metadata.tables)
    assert await our_functions(empty_database) == {"amesa_set_update_time", "amesa_refuse_change"}

    await migrate(empty_database, "base", down=True)
    assert await our_tables(empty_database) == set()
    assert await our_functions(empty_database) == set()

    # Extensions and the (cluster-wide) role stay, and a second upgrade must cope with both.
    await migrate(empty_database, "head")
    assert await our_tables(empty_database) == set(metadata.tables)


async def test_offline_mode_prints_the_sql() -> None:
    output = io.StringIO()
    config = alembic_config(SERVER_URL, output=output)

    await asyncio.to_thread(command.upgrade, config, "head", sql=True)

    sql = output.getvalue()
    assert "CREATE TABLE users" in sql
    assert "CREATE POLICY user_isolation ON orders" in sql
