"""AuthService.Login: password sign-in, no account enumeration, account states, throttling."""

from __future__ import annotations

import uuid

import bcrypt
import grpc
import pytest
from google.rpc import error_details_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.auth.v1 import auth_service_pb2 as pb
from amesa.auth.v1 import auth_service_pb2_grpc
from server.app import App
from server.auth.accounts import TIMING_DUMMY_HASH
from server.auth.passwords import needs_rehash
from tests.auth.conftest import Account, from_ip, login, new_email, new_ip, register
from tests.support import RpcFailure, failure


async def _login_fails(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
    email: str,
    password: str,
    *,
    ip: str | None = None,
) -> RpcFailure:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Login(
            pb.LoginRequest(email=email, password=password), metadata=from_ip(ip or new_ip())
        )
    return failure(raised.value)


async def _activity(owner_engine: AsyncEngine, user_id: uuid.UUID) -> list[str]:
    async with owner_engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT kind FROM activity_log WHERE user_id = :id ORDER BY create_time, id"),
            {"id": user_id},
        )
        return [row.kind for row in rows]


async def _set(
    owner_engine: AsyncEngine, account: Account, assignments: str, **values: object
) -> None:
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(f"UPDATE users SET {assignments} WHERE id = :id"),  # noqa: S608 - test literals
            {"id": account.user_id, **values},
        )


async def test_login_starts_a_new_session(
    app: App, stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    tokens = await stub.Login(
        pb.LoginRequest(email=account.email.upper(), password=account.password),
        metadata=from_ip(new_ip()),
    )
    assert not tokens.account_created
    assert tokens.user == f"users/{account.user_id}"
    assert tokens.session != account.tokens.session
    principal = app.verifier.verify(tokens.access_token)
    assert principal.user_id == account.user_id
    assert (
        tokens.refresh_token_expire_time.ToDatetime() > tokens.access_token_expire_time.ToDatetime()
    )
    assert (await _activity(owner_engine, account.user_id))[-1] == "LOGIN_SUCCEEDED"


async def test_login_with_wrong_password_is_unauthenticated_and_logged(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    error = await _login_fails(stub, account.email, "not the password at all")
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
    assert error.reason == "INVALID_CREDENTIALS"
    assert (await _activity(owner_engine, account.user_id))[-1] == "LOGIN_FAILED"


async def test_login_with_unknown_email_is_the_same_error_as_a_wrong_password(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    account = await register(stub)
    wrong_password = await _login_fails(stub, account.email, "not the password at all")
    unknown = await _login_fails(stub, new_email(), "not the password at all")
    assert (unknown.code, unknown.reason, unknown.message) == (
        wrong_password.code,
        wrong_password.reason,
        wrong_password.message,
    )


def test_unknown_emails_cost_one_argon2id_verification_like_real_accounts() -> None:
    """Timing parity, stated without a clock: the hash verified for an unknown email has the
    parameters of the hashes we store (timed tests are flaky; the argon2 work is the cost)."""
    assert TIMING_DUMMY_HASH.startswith("$argon2id$")
    assert not needs_rehash(TIMING_DUMMY_HASH)


async def test_login_of_an_oauth_only_account_is_invalid_credentials(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    await _set(owner_engine, account, "password_hash = NULL")
    error = await _login_fails(stub, account.email, account.password)
    assert error.reason == "INVALID_CREDENTIALS"


async def test_login_with_a_legacy_bcrypt_hash_works_once_then_rehashes(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    legacy = bcrypt.hashpw(account.password.encode(), bcrypt.gensalt(rounds=4)).decode()
    await _set(owner_engine, account, "password_hash = :hash", hash=legacy)
    await login(stub, account)
    async with owner_engine.connect() as connection:
        stored = await connection.scalar(
            text("SELECT password_hash FROM users WHERE id = :id"), {"id": account.user_id}
        )
    assert str(stored).startswith("$argon2id$")
    await login(stub, account)


async def test_login_of_a_suspended_account_is_failed_precondition_with_reason(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    await _set(
        owner_engine,
        account,
        "status = 'SUSPENDED', status_reason = :reason, status_change_time = now()",
        reason="chargebacks",
    )
    assert (await _login_fails(stub, account.email, "wrong password!")).reason == (
        "INVALID_CREDENTIALS"
    )
    error = await _login_fails(stub, account.email, account.password)
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "ACCOUNT_SUSPENDED"
    assert error.error_info.metadata["reason"] == "chargebacks"


async def test_login_of_a_deleted_account_is_account_deleted(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    await _set(owner_engine, account, "status = 'DELETED', delete_time = now()")
    error = await _login_fails(stub, account.email, account.password)
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "ACCOUNT_DELETED"


@pytest.mark.parametrize("permanent", [False, True])
async def test_login_of_a_self_excluded_account_is_failed_precondition_with_until(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine, permanent: bool
) -> None:
    account = await register(stub)
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO self_exclusions (user_id, start_time, end_time) VALUES "
                "(:id, now() - interval '1 day', "
                "CASE WHEN :permanent THEN NULL ELSE now() + interval '30 days' END)"
            ),
            {"id": account.user_id, "permanent": permanent},
        )
    error = await _login_fails(stub, account.email, account.password)
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "ACCOUNT_SELF_EXCLUDED"
    assert ("until" in error.error_info.metadata) is not permanent


def _retry_seconds(error: RpcFailure) -> float:
    for detail in error.status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToTimedelta().total_seconds()
    raise AssertionError("no RetryInfo")


async def test_failed_logins_are_throttled_per_account_for_minutes_only(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    account = await register(stub)
    for _ in range(5):
        assert (await _login_fails(stub, account.email, "wrong password!")).reason == (
            "INVALID_CREDENTIALS"
        )
    # Even the right password now waits: guessing cannot go on, and the wait is short.
    error = await _login_fails(stub, account.email, account.password)
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "RATE_LIMITED"
    assert 0 < _retry_seconds(error) <= 60


async def test_a_successful_login_clears_the_account_failures(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    account = await register(stub)
    for _ in range(4):
        await _login_fails(stub, account.email, "wrong password!")
    await login(stub, account)
    for _ in range(4):
        assert (await _login_fails(stub, account.email, "wrong password!")).reason == (
            "INVALID_CREDENTIALS"
        )


async def test_logins_are_throttled_per_ip_across_accounts(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    ip = new_ip()
    for _ in range(30):
        error = await _login_fails(stub, new_email(), "spraying passwords", ip=ip)
        assert error.reason == "INVALID_CREDENTIALS"
    error = await _login_fails(stub, new_email(), "spraying passwords", ip=ip)
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "RATE_LIMITED"
    assert _retry_seconds(error) > 0
    # Another address is not affected.
    assert (await _login_fails(stub, new_email(), "spraying passwords")).reason == (
        "INVALID_CREDENTIALS"
    )
