"""Throwaway databases for the tests that need a database of their own (migrations, the schema
comparison, row level security), next to the one the whole run shares (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from alembic import command
from sqlalchemy.engine import make_url

from server.manage import alembic_config

SERVER_URL = os.environ.get("AMESA_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def url_of(database: str) -> str:
    """SERVER_URL pointing at `database`, as a plain libpq-style URL asyncpg accepts."""
    url = make_url(SERVER_URL).set(drivername="postgresql", database=database)
    return url.render_as_string(hide_password=False)


def engine_url(url: str) -> str:
    """The same database through SQLAlchemy's asyncpg dialect."""
    return make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


async def admin_execute(sql: str) -> None:
    # The maintenance database: the one AMESA_DATABASE_URL names may not exist yet.
    connection = await asyncpg.connect(url_of("postgres"))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def migrate(url: str, revision: str = "head", *, down: bool = False) -> None:
    # Alembic's env.py runs its own event loop (asyncio.run), hence the worker thread.
    step = command.downgrade if down else command.upgrade
    await asyncio.to_thread(step, alembic_config(url), revision)


@asynccontextmanager
async def throwaway_database(prefix: str, *, migrated: bool) -> AsyncIterator[str]:
    """A new database (at the latest revision when `migrated`), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await admin_execute(f'CREATE DATABASE "{name}"')
    try:
        if migrated:
            await migrate(url_of(name))
        yield url_of(name)
    finally:
        await admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
