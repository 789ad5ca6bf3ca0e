"""The migrations go up, all the way down, and up again on a fresh database."""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from server.core.models_registry import metadata

# Shared database fixtures (the same in each tests/core module until they move to conftest.py).
SERVER_URL = os.environ.get("AMESA_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ALEMBIC_INI = Path(__file__).resolve().parents[2] / "migrations" / "alembic.ini"


def url_of(database: str) -> str:
    """SERVER_URL pointing at `database`, as a plain libpq-style URL asyncpg accepts."""
    url = make_url(SERVER_URL).set(drivername="postgresql", database=database)
    return url.render_as_string(hide_password=False)


async def admin_execute(sql: str) -> None:
    # The maintenance database: the one AMESA_DATABASE_URL names may not exist yet.
    connection = await asyncpg.connect(url_of("postgres"))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def alembic_config(url: str, *, output: io.StringIO | None = None) -> Config:
    config = Config(str(ALEMBIC_INI), output_buffer=output)
    config.attributes["url"] = url
    config.attributes["configure_logger"] = False
    return config


async def migrate(config: Config, revision: str, *, down: bool = False) -> None:
    # env.py runs its own event loop (asyncio.run), so Alembic runs in a worker thread.
    if down:
        await asyncio.to_thread(command.downgrade, config, revision)
    else:
        await asyncio.to_thread(command.upgrade, config, revision)


@pytest.fixture(scope="module")
async def empty_database() -> AsyncIterator[str]:
    """A throwaway database, dropped afterwards; yields its URL."""
    name = f"amesa_mig_{uuid.uuid4().hex[:12]}"
    await admin_execute(f'CREATE DATABASE "{name}"')
    try:
        yield url_of(name)
    finally:
        await admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
    config = alembic_config(empty_database)

    await migrate(config, "head")
    assert await our_tables(empty_database) == set(metadata.tables)
    assert await our_functions(empty_database) == {"amesa_set_update_time", "amesa_refuse_change"}

    await migrate(config, "base", down=True)
    assert await our_tables(empty_database) == set()
    assert await our_functions(empty_database) == set()

    # Extensions and the (cluster-wide) role stay, and a second upgrade must cope with both.
    await migrate(config, "head")
    assert await our_tables(empty_database) == set(metadata.tables)


async def test_offline_mode_prints_the_sql() -> None:
    output = io.StringIO()
    config = alembic_config(SERVER_URL, output=output)

    await asyncio.to_thread(command.upgrade, config, "head", sql=True)

    sql = output.getvalue()
    assert "CREATE TABLE users" in sql
    assert "CREATE POLICY user_isolation ON orders" in sql
