"""PostgreSQL access: one async engine, one session per unit of work, RLS bound per transaction.

Every connection switches to the application role (`SET ROLE`), which owns no table, so row level
security applies. Each transaction then states whose rows it may see with `amesa.user_id`, or
`amesa.bypass_rls = on` for administrators and background jobs — set with `set_config(…, true)`
so the setting dies with the transaction and never leaks to the next user of the connection.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from server.core.context import Principal

_BIND = text(
    "SELECT set_config('amesa.user_id', :user_id, true), "
    "set_config('amesa.bypass_rls', :bypass, true)"
)


def async_url(url: str) -> str:
    """Accepts `postgresql://` or `postgres://` URLs and selects the asyncpg driver."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("AMESA_DATABASE_URL must be a postgresql:// URL")


class Database:
    def __init__(self, url: str, *, role: str, pool_size: int) -> None:
        self.engine: AsyncEngine = create_async_engine(
            async_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
        )
        if role:
            _set_role_on_connect(self.engine, role)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(
        self, principal: Principal | None = None, *, system: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """A transaction that commits when the block succeeds and rolls back when it raises.

        `principal` limits row visibility to that user (administrators see every row);
        `system=True` is for background jobs and public catalogue reads that need no user.
        """
        async with self._sessions.begin() as session:
            await bind_rls(session, principal, system=system)
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


async def bind_rls(session: AsyncSession, principal: Principal | None, *, system: bool) -> None:
    user_id: uuid.UUID | None = principal.user_id if principal else None
    bypass = system or (principal is not None and principal.is_admin)
    await session.execute(
        _BIND, {"user_id": str(user_id) if user_id else "", "bypass": "on" if bypass else "off"}
    )


def _set_role_on_connect(engine: AsyncEngine, role: str) -> None:
    quoted = '"' + role.replace('"', '""') + '"'

    @event.listens_for(engine.sync_engine, "connect")
    def set_role(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET ROLE {quoted}")
        cursor.close()
