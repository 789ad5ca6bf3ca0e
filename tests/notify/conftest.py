"""Fixtures for the dispatcher tests: accounts (as UserService's tests make them), stubs, and the
dispatch job's lease held by the test so that only the test's dispatcher delivers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.auth.v1 import auth_service_pb2_grpc
from amesa.user.v1 import user_service_pb2_grpc
from tests.notify.support import dispatch_lease
from tests.user.conftest import accounts, alice, bob, password_hash

__all__ = ["accounts", "alice", "bob", "password_hash"]


@pytest_asyncio.fixture(loop_scope="session", autouse=True)
async def lease(owner_engine: AsyncEngine) -> AsyncIterator[None]:
    async with dispatch_lease(owner_engine):
        yield


@pytest.fixture
def users(channel: grpc.aio.Channel) -> user_service_pb2_grpc.UserServiceAsyncStub:
    return user_service_pb2_grpc.UserServiceStub(channel)


@pytest.fixture
def auth(channel: grpc.aio.Channel, languages: None) -> auth_service_pb2_grpc.AuthServiceAsyncStub:
    return auth_service_pb2_grpc.AuthServiceStub(channel)
