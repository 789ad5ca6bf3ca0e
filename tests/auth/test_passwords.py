"""AuthService.ChangePassword, RequestPasswordReset and ResetPassword."""

from __future__ import annotations

import uuid

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.auth.v1 import auth_service_pb2 as pb
from amesa.auth.v1 import auth_service_pb2_grpc
from tests.auth.conftest import (
    Account,
    from_ip,
    last_token,
    login,
    new_email,
    new_ip,
    outbox_payloads,
    register,
)
from tests.support import failure

NEW_PASSWORD = "a brand new passphrase"


async def _refresh_works(stub: auth_service_pb2_grpc.AuthServiceAsyncStub, token: str) -> bool:
    try:
        await stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=token))
    except grpc.aio.AioRpcError:
        return False
    return True


async def _change(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
    account: Account,
    current: str,
    new: str = NEW_PASSWORD,
) -> None:
    await stub.ChangePassword(
        pb.ChangePasswordRequest(name="users/me", current_password=current, new_password=new),
        metadata=account.metadata(),
    )


async def _reset_emails(owner_engine: AsyncEngine, account: Account) -> list[dict[str, object]]:
    return await outbox_payloads(
        owner_engine, user_id=account.user_id, topic="email.password_reset"
    )


async def test_change_password_revokes_other_sessions_only(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    account = await register(stub)
    other = await login(stub, account)
    await _change(stub, account, account.password)
    assert await _refresh_works(stub, account.tokens.refresh_token)
    assert not await _refresh_works(stub, other.refresh_token)
    await login(stub, Account(account.email, NEW_PASSWORD, account.user_id, account.tokens))


async def test_changed_password_alerts_the_owner(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    await _change(stub, account, account.password)
    alerts = await outbox_payloads(
        owner_engine, user_id=account.user_id, topic="notify.security_alert"
    )
    assert [alert["alert"] for alert in alerts] == ["password_changed"]
    assert all("password" not in key for alert in alerts for key in alert if key != "alert")


async def test_change_password_with_wrong_current_password_is_permission_denied(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    account = await register(stub)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _change(stub, account, "not my password")
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert failure(raised.value).reason == "CURRENT_PASSWORD_INCORRECT"


async def test_change_password_guesses_are_throttled(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    account = await register(stub)
    for _ in range(5):
        with pytest.raises(grpc.aio.AioRpcError):
            await _change(stub, account, "not my password")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _change(stub, account, account.password)
    assert failure(raised.value).reason == "RATE_LIMITED"


async def test_change_password_to_a_common_one_is_password_too_common(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    account = await register(stub)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _change(stub, account, account.password, "qwertyuiop")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failure(raised.value).reason == "PASSWORD_TOO_COMMON"


async def test_change_password_of_an_oauth_only_account_is_password_not_set(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    async with owner_engine.begin() as connection:
        await connection.execute(
            text("UPDATE users SET password_hash = NULL WHERE id = :id"), {"id": account.user_id}
        )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _change(stub, account, "anything at all")
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert failure(raised.value).reason == "PASSWORD_NOT_SET"


async def test_change_password_of_another_user_is_not_owner(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    alice = await register(stub)
    bob = await register(stub)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ChangePassword(
            pb.ChangePasswordRequest(
                name=f"users/{bob.user_id}",
                current_password=bob.password,
                new_password=NEW_PASSWORD,
            ),
            metadata=alice.metadata(),
        )
    assert failure(raised.value).reason == "NOT_OWNER"


async def test_password_reset_sets_a_new_password_and_revokes_every_session(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    await stub.RequestPasswordReset(
        pb.RequestPasswordResetRequest(email=account.email.lower()), metadata=from_ip(new_ip())
    )
    emails = await _reset_emails(owner_engine, account)
    assert len(emails) == 1
    assert emails[0]["to"] == account.email
    token = str(emails[0]["token"])
    await stub.ResetPassword(
        pb.ResetPasswordRequest(token=token, new_password=NEW_PASSWORD), metadata=from_ip(new_ip())
    )
    assert not await _refresh_works(stub, account.tokens.refresh_token)
    await login(stub, Account(account.email, NEW_PASSWORD, account.user_id, account.tokens))
    with pytest.raises(grpc.aio.AioRpcError) as raised:  # single use
        await stub.ResetPassword(
            pb.ResetPasswordRequest(token=token, new_password="yet another passphrase"),
            metadata=from_ip(new_ip()),
        )
    assert failure(raised.value).reason == "RESET_TOKEN_INVALID"


async def test_request_password_reset_for_an_unknown_email_is_ok_and_sends_nothing(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    email = new_email()
    await stub.RequestPasswordReset(
        pb.RequestPasswordResetRequest(email=email), metadata=from_ip(new_ip())
    )
    async with owner_engine.connect() as connection:
        count = await connection.scalar(
            text("SELECT count(*) FROM outbox WHERE payload->>'to' = :email"), {"email": email}
        )
    assert count == 0


async def test_extra_reset_requests_for_one_account_are_dropped_silently(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    for _ in range(5):
        await stub.RequestPasswordReset(
            pb.RequestPasswordResetRequest(email=account.email), metadata=from_ip(new_ip())
        )
    assert len(await _reset_emails(owner_engine, account)) == 3


async def test_reset_requests_are_throttled_per_ip(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    ip = new_ip()
    for _ in range(10):
        await stub.RequestPasswordReset(
            pb.RequestPasswordResetRequest(email=new_email()), metadata=from_ip(ip)
        )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.RequestPasswordReset(
            pb.RequestPasswordResetRequest(email=new_email()), metadata=from_ip(ip)
        )
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure(raised.value).reason == "RATE_LIMITED"


async def test_a_newer_reset_link_supersedes_the_older_one(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    for _ in range(2):
        await stub.RequestPasswordReset(
            pb.RequestPasswordResetRequest(email=account.email), metadata=from_ip(new_ip())
        )
    first, second = (str(email["token"]) for email in await _reset_emails(owner_engine, account))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ResetPassword(
            pb.ResetPasswordRequest(token=first, new_password=NEW_PASSWORD),
            metadata=from_ip(new_ip()),
        )
    assert failure(raised.value).reason == "RESET_TOKEN_INVALID"
    await stub.ResetPassword(
        pb.ResetPasswordRequest(token=second, new_password=NEW_PASSWORD), metadata=from_ip(new_ip())
    )


async def test_an_expired_reset_link_is_reset_token_expired(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    await stub.RequestPasswordReset(
        pb.RequestPasswordResetRequest(email=account.email), metadata=from_ip(new_ip())
    )
    token = await last_token(owner_engine, user_id=account.user_id, topic="email.password_reset")
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE verification_tokens SET expire_time = now() - interval '1 minute' "
                "WHERE user_id = :id AND purpose = 'PASSWORD_RESET'"
            ),
            {"id": account.user_id},
        )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ResetPassword(
            pb.ResetPasswordRequest(token=token, new_password=NEW_PASSWORD),
            metadata=from_ip(new_ip()),
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failure(raised.value).reason == "RESET_TOKEN_EXPIRED"


async def test_reset_to_a_common_password_is_password_too_common_and_keeps_the_token(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    await stub.RequestPasswordReset(
        pb.RequestPasswordResetRequest(email=account.email), metadata=from_ip(new_ip())
    )
    token = await last_token(owner_engine, user_id=account.user_id, topic="email.password_reset")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ResetPassword(
            pb.ResetPasswordRequest(token=token, new_password="1234567890"),
            metadata=from_ip(new_ip()),
        )
    assert failure(raised.value).reason == "PASSWORD_TOO_COMMON"
    await stub.ResetPassword(
        pb.ResetPasswordRequest(token=token, new_password=NEW_PASSWORD), metadata=from_ip(new_ip())
    )


async def test_unknown_reset_token_is_reset_token_invalid(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ResetPassword(
            pb.ResetPasswordRequest(token=uuid.uuid4().hex, new_password=NEW_PASSWORD),
            metadata=from_ip(new_ip()),
        )
    assert failure(raised.value).reason == "RESET_TOKEN_INVALID"
