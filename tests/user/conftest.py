"""Factories for UserService tests: accounts inserted as the table owner (one argon2 hash per
run), access tokens signed by the server's key, and raw reads of what the server stored."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import pytest_asyncio
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.user.v1 import user_service_pb2_grpc
from server.app import App
from server.auth.models import UserSession
from server.auth.passwords import hash_password
from server.user.models import User
from tests.support import RpcFailure, bearer, failure

PASSWORD = "correct horse battery staple"
BIRTH_DATE = datetime.date(1990, 5, 17)


@dataclass(frozen=True)
class Account:
    id: uuid.UUID
    email: str
    token: str
    session_id: uuid.UUID

    @property
    def name(self) -> str:
        return f"users/{self.id}"

    @property
    def metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return tuple(bearer(self.token))


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def password_hash() -> str:
    return await hash_password(PASSWORD)


class Accounts:
    """Creates accounts straight in the database, as Register would leave them."""

    def __init__(self, app: App, engine: AsyncEngine, password_hash: str) -> None:
        self._app = app
        self._engine = engine
        self._hash = password_hash

    async def create(
        self,
        *,
        admin: bool = False,
        email: str | None = None,
        birth_date: datetime.date = BIRTH_DATE,
        **columns: Any,
    ) -> Account:
        cipher = self._app.deps.cipher
        iso = birth_date.isoformat()
        sealed = cipher.encrypt(iso, context="users.birth_date")
        email = email or f"user-{uuid.uuid4().hex[:12]}@example.org"
        async with self._engine.begin() as connection:
            user_id = await connection.scalar(
                insert(User)
                .values(
                    email=email,
                    email_verify_time=datetime.datetime.now(datetime.UTC),
                    password_hash=self._hash,
                    given_name="Ada",
                    family_name="Lovelace",
                    birth_date_ciphertext=sealed.ciphertext,
                    birth_date_key_id=sealed.key_id,
                    birth_date_blind_index=cipher.blind_index(iso, context="users.birth_date"),
                    preferred_language="en",
                    roles=["USER", "ADMIN"] if admin else ["USER"],
                    **columns,
                )
                .returning(User.id)
            )
            assert user_id is not None
            session_id = await self.add_session(user_id, connection=connection)
        roles = ("user", "admin") if admin else ("user",)
        token = self._app.signer.issue(user_id=user_id, session_id=session_id, roles=roles).token
        return Account(id=user_id, email=email, token=token, session_id=session_id)

    async def add_session(self, user_id: uuid.UUID, *, connection: Any = None) -> uuid.UUID:
        now = datetime.datetime.now(datetime.UTC)
        values = {
            "user_id": user_id,
            "idle_expire_time": now + datetime.timedelta(days=7),
            "absolute_expire_time": now + datetime.timedelta(days=30),
        }
        if connection is not None:
            session_id = await connection.scalar(
                insert(UserSession).values(values).returning(UserSession.id)
            )
        else:
            async with self._engine.begin() as own:
                session_id = await own.scalar(
                    insert(UserSession).values(values).returning(UserSession.id)
                )
        assert isinstance(session_id, uuid.UUID)
        return session_id

    async def live_sessions(self, user_id: uuid.UUID) -> int:
        async with self._engine.connect() as connection:
            count = await connection.scalar(
                text("SELECT count(*) FROM sessions WHERE user_id = :u AND revoke_time IS NULL"),
                {"u": user_id},
            )
        return int(count or 0)

    async def revoke_reasons(self, user_id: uuid.UUID) -> set[str]:
        async with self._engine.connect() as connection:
            rows = await connection.execute(
                select(UserSession.revoke_reason).where(UserSession.user_id == user_id)
            )
        return {str(reason) for (reason,) in rows}

    async def fetch(self, sql: str, **params: Any) -> Any:
        """One value read as the table owner (what is really stored)."""
        async with self._engine.connect() as connection:
            return await connection.scalar(text(sql), params)

    async def fetch_committed(self, sql: str, **params: Any) -> Any:
        """One value returned by a statement that writes (committed)."""
        async with self._engine.begin() as connection:
            return await connection.scalar(text(sql), params)

    async def execute(self, sql: str, **params: Any) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(text(sql), params)


@pytest.fixture
def accounts(app: App, owner_engine: AsyncEngine, password_hash: str) -> Accounts:
    return Accounts(app, owner_engine, password_hash)


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> user_service_pb2_grpc.UserServiceAsyncStub:
    return user_service_pb2_grpc.UserServiceStub(channel)


@pytest_asyncio.fixture(loop_scope="session")
async def alice(accounts: Accounts) -> Account:
    return await accounts.create()


@pytest_asyncio.fixture(loop_scope="session")
async def bob(accounts: Accounts) -> Account:
    return await accounts.create()


@pytest_asyncio.fixture(loop_scope="session")
async def admin(accounts: Accounts) -> Account:
    return await accounts.create(admin=True)


async def rpc_failure(call: Awaitable[Any]) -> RpcFailure:
    """Awaits an RPC expected to fail and returns what the client sees of the failure."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return failure(raised.value)
