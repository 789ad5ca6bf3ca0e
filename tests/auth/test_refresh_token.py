"""AuthService.RefreshToken: rotation on every use, family revocation on reuse, lifetimes."""

from __future__ import annotations

import asyncio
import datetime

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.auth.v1 import auth_service_pb2 as pb
from amesa.auth.v1 import auth_service_pb2_grpc
from server.app import App
from tests.auth.conftest import Account, outbox_payloads, register
from tests.support import RpcFailure, failure


async def _refresh(stub: auth_service_pb2_grpc.AuthServiceAsyncStub, token: str) -> pb.AuthTokens:
    tokens: pb.AuthTokens = await stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=token))
    return tokens


async def _refresh_fails(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, token: str
) -> RpcFailure:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _refresh(stub, token)
    return failure(raised.value)


async def _update_session(owner_engine: AsyncEngine, account: Account, assignments: str) -> None:
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(f"UPDATE sessions SET {assignments} WHERE id = :id"),  # noqa: S608 - test literals
            {"id": account.session_id},
        )


async def test_refresh_rotates_the_token_and_keeps_the_session(
    app: App, stub: auth_service_pb2_grpc.AuthServiceAsyncStub
) -> None:
    account = await register(stub)
    first = await _refresh(stub, account.tokens.refresh_token)
    assert first.refresh_token != account.tokens.refresh_token
    assert first.session == account.tokens.session
    assert not first.account_created
    assert app.verifier.verify(first.access_token).session_id == account.session_id
    second = await _refresh(stub, first.refresh_token)
    assert second.refresh_token not in (first.refresh_token, account.tokens.refresh_token)


async def test_reusing_a_rotated_token_revokes_the_whole_family_and_alerts(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    rotated = await _refresh(stub, account.tokens.refresh_token)
    error = await _refresh_fails(stub, account.tokens.refresh_token)
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
    assert error.reason == "REFRESH_TOKEN_REUSED"
    # The thief's (or the owner's) newer token dies with the family.
    assert (await _refresh_fails(stub, rotated.refresh_token)).reason == "SESSION_REVOKED"
    async with owner_engine.connect() as connection:
        reason = await connection.scalar(
            text("SELECT revoke_reason FROM sessions WHERE id = :id"), {"id": account.session_id}
        )
        kinds = list(
            await connection.scalars(
                text("SELECT kind FROM activity_log WHERE user_id = :id"), {"id": account.user_id}
            )
        )
    assert reason == "REFRESH_TOKEN_REUSED"
    assert "REFRESH_TOKEN_REUSED" in kinds
    alerts = await outbox_payloads(
        owner_engine, user_id=account.user_id, topic="notify.security_alert"
    )
    assert [alert["alert"] for alert in alerts] == ["refresh_token_reused"]
    assert rotated.refresh_token not in str(alerts)


async def test_two_concurrent_refreshes_with_one_token_let_exactly_one_succeed(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    account = await register(stub)
    results = await asyncio.gather(
        *(_refresh(stub, account.tokens.refresh_token) for _ in range(2)), return_exceptions=True
    )
    succeeded = [result for result in results if isinstance(result, pb.AuthTokens)]
    refused = [result for result in results if isinstance(result, grpc.aio.AioRpcError)]
    assert len(succeeded) == 1
    assert len(refused) == 1
    assert failure(refused[0]).reason == "REFRESH_TOKEN_REUSED"


async def test_unknown_refresh_token_is_refresh_token_invalid(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    error = await _refresh_fails(stub, "A" * 43)
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
    assert error.reason == "REFRESH_TOKEN_INVALID"


async def test_malformed_refresh_token_is_invalid_argument(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    error = await _refresh_fails(stub, "not a token!")
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "assignments",
    [
        "idle_expire_time = now() - interval '1 second'",
        "idle_expire_time = now() - interval '2 days', "
        "absolute_expire_time = now() - interval '1 day'",
    ],
    ids=["idle", "absolute"],
)
async def test_refresh_after_the_session_lifetime_is_session_expired(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine, assignments: str
) -> None:
    account = await register(stub)
    await _update_session(owner_engine, account, assignments)
    error = await _refresh_fails(stub, account.tokens.refresh_token)
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
    assert error.reason == "SESSION_EXPIRED"


async def test_refresh_never_extends_past_the_absolute_lifetime(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    await _update_session(
        owner_engine,
        account,
        "absolute_expire_time = now() + interval '1 hour', "
        "idle_expire_time = now() + interval '1 hour'",
    )
    tokens = await _refresh(stub, account.tokens.refresh_token)
    expires = tokens.refresh_token_expire_time.ToDatetime(tzinfo=datetime.UTC)
    assert expires <= datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)


async def test_refresh_of_a_suspended_account_is_failed_precondition(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    async with owner_engine.begin() as connection:
        await connection.execute(
            text("UPDATE users SET status = 'SUSPENDED', status_reason = 'fraud' WHERE id = :id"),
            {"id": account.user_id},
        )
    error = await _refresh_fails(stub, account.tokens.refresh_token)
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "ACCOUNT_SUSPENDED"
