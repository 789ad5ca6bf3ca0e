"""AuthService.StartPhoneVerification and VerifyPhone: a 6-digit SMS code, hashed, 10 minutes,
5 attempts."""

from __future__ import annotations

import datetime
import uuid

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.auth.v1 import auth_service_pb2 as pb
from amesa.auth.v1 import auth_service_pb2_grpc
from server.app import App
from tests.auth.conftest import Account, outbox_payloads, register
from tests.support import RpcFailure, failure


async def _add_phone(app: App, owner_engine: AsyncEngine, account: Account) -> str:
    """A phone row as UserService stores it; returns its resource name under users/me."""
    number = f"+4477009{uuid.uuid4().int % 100000:05d}"
    encrypted = app.deps.cipher.encrypt(number, context="user_phones.phone")
    phone_id = uuid.uuid4()
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO user_phones (id, user_id, phone_ciphertext, phone_key_id, "
                "phone_blind_index) VALUES (:id, :user_id, :ciphertext, :key_id, :index)"
            ),
            {
                "id": phone_id,
                "user_id": account.user_id,
                "ciphertext": encrypted.ciphertext,
                "key_id": encrypted.key_id,
                "index": app.deps.cipher.blind_index(number, context="user_phones.phone"),
            },
        )
    return f"users/me/phones/{phone_id}"


async def _start(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, account: Account, phone: str
) -> pb.StartPhoneVerificationResponse:
    response: pb.StartPhoneVerificationResponse = await stub.StartPhoneVerification(
        pb.StartPhoneVerificationRequest(name="users/me", phone=phone), metadata=account.metadata()
    )
    return response


async def _sent_code(owner_engine: AsyncEngine, account: Account) -> str:
    messages = await outbox_payloads(owner_engine, user_id=account.user_id, topic="sms.phone_code")
    return str(messages[-1]["code"])


async def _verify(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, account: Account, phone: str, code: str
) -> None:
    await stub.VerifyPhone(
        pb.VerifyPhoneRequest(name="users/me", phone=phone, code=code), metadata=account.metadata()
    )


async def _verify_fails(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, account: Account, phone: str, code: str
) -> RpcFailure:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _verify(stub, account, phone, code)
    return failure(raised.value)


def _wrong(code: str) -> str:
    return str((int(code) + 1) % 1_000_000).zfill(6)


async def test_the_sms_code_verifies_the_phone(
    app: App, stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    phone = await _add_phone(app, owner_engine, account)
    started = await _start(stub, account, phone)
    assert started.max_attempts == 5
    remaining = started.expire_time.ToDatetime(tzinfo=datetime.UTC) - datetime.datetime.now(
        datetime.UTC
    )
    assert datetime.timedelta(minutes=9) < remaining <= datetime.timedelta(minutes=10)
    code = await _sent_code(owner_engine, account)
    assert len(code) == 6
    async with owner_engine.connect() as connection:
        stored = await connection.scalar(
            text("SELECT code_hash FROM phone_verifications WHERE user_id = :id"),
            {"id": account.user_id},
        )
    assert code.encode() not in bytes(stored)
    await _verify(stub, account, phone, code)
    async with owner_engine.connect() as connection:
        verified = await connection.scalar(
            text("SELECT verify_time FROM user_phones WHERE user_id = :id"),
            {"id": account.user_id},
        )
    assert verified is not None
    error = await _verify_fails(stub, account, phone, code)
    assert (error.code, error.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "PHONE_ALREADY_VERIFIED",
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _start(stub, account, phone)
    assert failure(raised.value).reason == "PHONE_ALREADY_VERIFIED"


async def test_wrong_codes_count_down_then_exhaust_the_code(
    app: App, stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    phone = await _add_phone(app, owner_engine, account)
    await _start(stub, account, phone)
    code = await _sent_code(owner_engine, account)
    for remaining in (4, 3, 2, 1, 0):
        error = await _verify_fails(stub, account, phone, _wrong(code))
        assert (error.code, error.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "PHONE_CODE_INVALID",
        )
        assert error.error_info.metadata["attempts_remaining"] == str(remaining)
    error = await _verify_fails(stub, account, phone, code)
    assert (error.code, error.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "PHONE_CODE_ATTEMPTS_EXHAUSTED",
    )
    # Starting again gives a fresh code with fresh attempts.
    await _start(stub, account, phone)
    await _verify(stub, account, phone, await _sent_code(owner_engine, account))


async def test_an_expired_code_is_phone_code_expired(
    app: App, stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    phone = await _add_phone(app, owner_engine, account)
    await _start(stub, account, phone)
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE phone_verifications SET expire_time = now() - interval '1 second' "
                "WHERE user_id = :id"
            ),
            {"id": account.user_id},
        )
    error = await _verify_fails(stub, account, phone, await _sent_code(owner_engine, account))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PHONE_CODE_EXPIRED")


async def test_verify_before_start_is_phone_verification_not_started(
    app: App, stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    phone = await _add_phone(app, owner_engine, account)
    error = await _verify_fails(stub, account, phone, "123456")
    assert error.reason == "PHONE_VERIFICATION_NOT_STARTED"


async def test_another_users_phone_or_a_random_one_is_phone_not_found(
    app: App, stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    alice = await register(stub)
    bob = await register(stub)
    bobs_phone = await _add_phone(app, owner_engine, bob)
    bobs_id = bobs_phone.rsplit("/", 1)[1]
    for phone in (
        f"users/me/phones/{bobs_id}",
        f"users/{bob.user_id}/phones/{bobs_id}",
        f"users/me/phones/{uuid.uuid4()}",
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await _start(stub, alice, phone)
        assert (raised.value.code(), failure(raised.value).reason) == (
            grpc.StatusCode.NOT_FOUND,
            "PHONE_NOT_FOUND",
        )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.StartPhoneVerification(
            pb.StartPhoneVerificationRequest(name=f"users/{bob.user_id}", phone=bobs_phone),
            metadata=alice.metadata(),
        )
    assert failure(raised.value).reason == "NOT_OWNER"


async def test_codes_sent_are_throttled_per_user(
    app: App, stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    phone = await _add_phone(app, owner_engine, account)
    for _ in range(5):
        await _start(stub, account, phone)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _start(stub, account, phone)
    assert failure(raised.value).reason == "RATE_LIMITED"
