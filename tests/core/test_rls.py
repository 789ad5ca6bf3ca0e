"""Row level security, as the server uses it: `SET ROLE amesa_app` on the connection, then
`amesa.user_id` or `amesa.bypass_rls` set per transaction with `set_config(…, true)`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import pytest

from tests.databases import throwaway_database


@pytest.fixture(scope="module")
async def migrated_url() -> AsyncIterator[str]:
    """A throwaway database at the latest revision, dropped afterwards."""
    async with throwaway_database("amesa_rls", migrated=True) as url:
        yield url


@dataclass(frozen=True)
class TwoUsers:
    alice: uuid.UUID
    bob: uuid.UUID


@pytest.fixture(scope="module")
async def two_users(migrated_url: str) -> TwoUsers:
    """Alice and Bob, each with one notification, written by the table owner (no RLS)."""
    owner = await asyncpg.connect(migrated_url)
    try:
        ids = []
        for name in ("alice", "bob"):
            user_id = await owner.fetchval(
                "INSERT INTO users (email, given_name, family_name) VALUES ($1, $2, 'Test')"
                " RETURNING id",
                f"{name}-{uuid.uuid4().hex[:8]}@example.org",
                name,
            )
            await owner.execute(
                "INSERT INTO notifications (user_id, category, kind, title, body)"
                " VALUES ($1, 'ACCOUNT', 'test.hello', 'Hello', $2)",
                user_id,
                f"for {name}",
            )
            ids.append(user_id)
    finally:
        await owner.close()
    return TwoUsers(alice=ids[0], bob=ids[1])


@pytest.fixture
async def app_connection(migrated_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the server holds it: switched to the application role."""
    connection = await asyncpg.connect(migrated_url)
    await connection.execute("SET ROLE amesa_app")
    try:
        yield connection
    finally:
        await connection.close()


@asynccontextmanager
async def transaction(
    connection: asyncpg.Connection, *, user: uuid.UUID | None = None, system: bool = False
) -> AsyncIterator[None]:
    """A transaction bound like the server binds it, rolled back at the end (tests keep nothing)."""
    tx = connection.transaction()
    await tx.start()
    try:
        if user is not None:
            await connection.execute("SELECT set_config('amesa.user_id', $1, true)", str(user))
        if system:
            await connection.execute("SELECT set_config('amesa.bypass_rls', 'on', true)")
        yield
    finally:
        await tx.rollback()


async def visible_user_ids(connection: asyncpg.Connection, table: str) -> set[uuid.UUID]:
    column = "id" if table == "users" else "user_id"
    rows = await connection.fetch(f"SELECT {column} FROM {table}")  # noqa: S608 - fixed names
    return {row[0] for row in rows}


@pytest.mark.parametrize("table", ["users", "notifications"])
async def test_without_the_setting_no_row_is_visible(
    app_connection: asyncpg.Connection, two_users: TwoUsers, table: str
) -> None:
    async with transaction(app_connection):
        assert await visible_user_ids(app_connection, table) == set()


@pytest.mark.parametrize("table", ["users", "notifications"])
async def test_a_user_sees_only_their_own_rows(
    app_connection: asyncpg.Connection, two_users: TwoUsers, table: str
) -> None:
    async with transaction(app_connection, user=two_users.alice):
        assert await visible_user_ids(app_connection, table) == {two_users.alice}


async def test_a_user_cannot_insert_a_row_for_another_user(
    app_connection: asyncpg.Connection, two_users: TwoUsers
) -> None:
    async with transaction(app_connection, user=two_users.alice):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await app_connection.execute(
                "INSERT INTO notifications (user_id, category, kind, title, body)"
                " VALUES ($1, 'ACCOUNT', 'test.forged', 'Forged', 'from alice')",
                two_users.bob,
            )


async def test_a_user_cannot_change_another_users_rows(
    app_connection: asyncpg.Connection, two_users: TwoUsers
) -> None:
    async with transaction(app_connection, user=two_users.alice):
        # Bob's rows are invisible: the statements match nothing.
        updated = await app_connection.execute(
            "UPDATE notifications SET title = 'changed' WHERE user_id = $1", two_users.bob
        )
        deleted = await app_connection.execute(
            "DELETE FROM notifications WHERE user_id = $1", two_users.bob
        )
    assert (updated, deleted) == ("UPDATE 0", "DELETE 0")


async def test_a_user_cannot_give_their_rows_to_another_user(
    app_connection: asyncpg.Connection, two_users: TwoUsers
) -> None:
    async with transaction(app_connection, user=two_users.alice):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await app_connection.execute(
                "UPDATE notifications SET user_id = $1 WHERE user_id = $2",
                two_users.bob,
                two_users.alice,
            )


@pytest.mark.parametrize("table", ["users", "notifications"])
async def test_bypass_sees_every_row(
    app_connection: asyncpg.Connection, two_users: TwoUsers, table: str
) -> None:
    async with transaction(app_connection, system=True):
        assert await visible_user_ids(app_connection, table) >= {two_users.alice, two_users.bob}


async def test_the_setting_ends_with_its_transaction(
    app_connection: asyncpg.Connection, two_users: TwoUsers
) -> None:
    # A pooled connection must not carry one user's visibility into its next transaction.
    async with app_connection.transaction():
        await app_connection.execute("SELECT set_config('amesa.bypass_rls', 'on', true)")
        assert await visible_user_ids(app_connection, "users") >= {two_users.alice, two_users.bob}
    async with app_connection.transaction():
        assert await visible_user_ids(app_connection, "users") == set()


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_log SET action = 'rewritten'", "DELETE FROM audit_log"]
)
async def test_the_application_role_cannot_rewrite_the_audit_log(
    app_connection: asyncpg.Connection, statement: str
) -> None:
    async with transaction(app_connection, system=True):
        await app_connection.execute(
            "INSERT INTO audit_log (actor_kind, action, resource_name)"
            " VALUES ('SYSTEM', 'test.append', 'tests/rls')"
        )
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await app_connection.execute(statement)
