"""AuthService.VerifyEmail and ResendEmailVerification."""

from __future__ import annotations

import uuid

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.auth.v1 import auth_service_pb2 as pb
from amesa.auth.v1 import auth_service_pb2_grpc
from tests.auth.conftest import Account, last_token, new_email, outbox_payloads, register
from tests.support import failure

TOPIC = "email.verify_email"


async def _verified(owner_engine: AsyncEngine, account: Account) -> bool:
    async with owner_engine.connect() as connection:
        value = await connection.scalar(
            text("SELECT email_verify_time FROM users WHERE id = :id"), {"id": account.user_id}
        )
    return value is not None


async def _resend(stub: auth_service_pb2_grpc.AuthServiceAsyncStub, account: Account) -> None:
    await stub.ResendEmailVerification(
        pb.ResendEmailVerificationRequest(name="users/me"), metadata=account.metadata()
    )


async def test_verify_email_with_the_registration_link_verifies_the_address(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    token = await last_token(owner_engine, user_id=account.user_id, topic=TOPIC)
    await stub.VerifyEmail(pb.VerifyEmailRequest(token=token))
    assert await _verified(owner_engine, account)
    with pytest.raises(grpc.aio.AioRpcError) as raised:  # single use
        await stub.VerifyEmail(pb.VerifyEmailRequest(token=token))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failure(raised.value).reason == "EMAIL_TOKEN_INVALID"


async def test_verify_email_with_an_unknown_token_is_email_token_invalid(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.VerifyEmail(pb.VerifyEmailRequest(token=uuid.uuid4().hex))
    assert failure(raised.value).reason == "EMAIL_TOKEN_INVALID"


async def test_verify_email_after_expiry_is_email_token_expired(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    token = await last_token(owner_engine, user_id=account.user_id, topic=TOPIC)
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE verification_tokens SET expire_time = now() - interval '1 second' "
                "WHERE user_id = :id"
            ),
            {"id": account.user_id},
        )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.VerifyEmail(pb.VerifyEmailRequest(token=token))
    assert failure(raised.value).reason == "EMAIL_TOKEN_EXPIRED"
    assert not await _verified(owner_engine, account)


async def test_resend_sends_a_new_link_and_voids_the_old_one(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    old = await last_token(owner_engine, user_id=account.user_id, topic=TOPIC)
    await _resend(stub, account)
    emails = await outbox_payloads(owner_engine, user_id=account.user_id, topic=TOPIC)
    assert len(emails) == 2
    new = str(emails[-1]["token"])
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.VerifyEmail(pb.VerifyEmailRequest(token=old))
    assert failure(raised.value).reason == "EMAIL_TOKEN_INVALID"
    await stub.VerifyEmail(pb.VerifyEmailRequest(token=new))
    assert await _verified(owner_engine, account)


async def test_resend_for_a_verified_email_is_email_already_verified(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    await stub.VerifyEmail(
        pb.VerifyEmailRequest(
            token=await last_token(owner_engine, user_id=account.user_id, topic=TOPIC)
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _resend(stub, account)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert failure(raised.value).reason == "EMAIL_ALREADY_VERIFIED"


async def test_resend_goes_to_the_pending_new_email(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    pending = new_email()
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE users SET email_verify_time = now(), pending_email = :email WHERE id = :id"
            ),
            {"email": pending, "id": account.user_id},
        )
    await _resend(stub, account)
    emails = await outbox_payloads(owner_engine, user_id=account.user_id, topic=TOPIC)
    assert emails[-1]["to"] == pending


async def test_resend_is_throttled(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    account = await register(stub)
    for _ in range(3):
        await _resend(stub, account)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _resend(stub, account)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure(raised.value).reason == "RATE_LIMITED"


async def test_resend_for_another_user_is_not_owner(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    alice = await register(stub)
    bob = await register(stub)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ResendEmailVerification(
            pb.ResendEmailVerificationRequest(name=f"users/{bob.user_id}"),
            metadata=alice.metadata(),
        )
    assert failure(raised.value).reason == "NOT_OWNER"
