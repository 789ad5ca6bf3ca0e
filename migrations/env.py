"""Alembic environment: async (asyncpg), schema from `Base.metadata`.

The URL is `config.attributes["url"]` when a program drives Alembic (tests migrate throwaway
databases that way), else the AMESA_DATABASE_URL environment variable. A caller may instead pass
an open synchronous connection as `config.attributes["connection"]` (e.g. from
`AsyncConnection.run_sync`) to migrate inside its own transaction.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from server.core.models_registry import include_object, metadata
from server.core.orm import TextEnum

config = context.config
target_metadata = metadata

# The command line logs per alembic.ini; a program driving Alembic (a test) keeps its own logging
# by passing config.attributes["configure_logger"] = False.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def asyncpg_url(url: str) -> str:
    """Accepts `postgresql://`, `postgres://` and `postgresql+asyncpg://` URLs."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    raise ValueError("the database URL must start with postgresql://")


def database_url() -> str:
    url = config.attributes.get("url") or os.environ.get("AMESA_DATABASE_URL")
    if not url:
        raise RuntimeError("set AMESA_DATABASE_URL (or pass config.attributes['url'])")
    return asyncpg_url(str(url))


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Autogenerate writes our enum columns as plain `sa.Text()`: a migration must not import
    application code, whose enums will have moved on by the time it runs again. Their allowed
    values are the CHECK constraints, which autogenerate does not write: add them by hand."""
    if type_ == "type" and isinstance(obj, TextEnum):
        return "sa.Text()"
    return False


def configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        include_object=include_object,
        render_item=render_item,
        compare_type=True,
        compare_server_default=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """`alembic upgrade --sql`: prints the SQL instead of running it."""
    configure(url=database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_async_engine(database_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
    else:
        # A caller inside a running event loop (a test) runs Alembic in a worker thread.
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
