"""AuthService.Register: creates an account, signs it in, sends a verification link."""

from __future__ import annotations

import datetime
import uuid

import grpc
import pytest
from google.type import date_pb2  # type: ignore[import-untyped]
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.auth.v1 import auth_service_pb2_grpc
from server.app import App
from server.auth.accounts import BIRTH_DATE_CONTEXT
from server.core.crypto import Encrypted
from tests.auth.conftest import (
    PASSWORD,
    from_ip,
    new_email,
    new_ip,
    outbox_payloads,
    register_request,
)
from tests.support import failure


async def test_register_creates_the_account_and_signs_it_in(
    app: App, stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    email = new_email()
    tokens = await stub.Register(
        register_request(email, marketing_opt_in=True, language_code="fr"),
        metadata=from_ip(new_ip()),
    )
    user_id = uuid.UUID(tokens.user.removeprefix("users/"))
    assert tokens.account_created
    assert tokens.token_type == "Bearer"
    assert tokens.session.startswith(f"users/{user_id}/sessions/")
    principal = app.verifier.verify(tokens.access_token)
    assert principal.user_id == user_id
    assert str(principal.session_id) == tokens.session.rsplit("/", 1)[1]
    assert principal.roles == frozenset({"user"})
    assert len(tokens.refresh_token) >= 43
    async with owner_engine.connect() as connection:
        row = (
            await connection.execute(text("SELECT * FROM users WHERE id = :id"), {"id": user_id})
        ).one()
    assert row.email == email
    assert row.password_hash.startswith("$argon2id$")
    assert row.email_verify_time is None
    assert row.preferred_language == "fr"
    assert row.marketing_opt_in is True
    assert row.roles == ["USER"]
    birth_date = app.deps.cipher.decrypt(
        Encrypted(row.birth_date_ciphertext, row.birth_date_key_id), context=BIRTH_DATE_CONTEXT
    )
    assert birth_date == "1990-05-17"
    assert row.birth_date_blind_index == app.deps.cipher.blind_index(
        "1990-05-17", context=BIRTH_DATE_CONTEXT
    )
    emails = await outbox_payloads(owner_engine, user_id=user_id, topic="email.verify_email")
    assert len(emails) == 1
    assert emails[0]["to"] == email
    assert emails[0]["language"] == "fr"
    assert PASSWORD not in str(emails)


async def test_register_with_a_taken_email_in_other_case_is_already_exists(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    email = new_email()
    await stub.Register(register_request(email), metadata=from_ip(new_ip()))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Register(register_request(email.upper()), metadata=from_ip(new_ip()))
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert failure(raised.value).reason == "EMAIL_TAKEN"


async def test_register_with_a_common_password_is_invalid_argument(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Register(register_request(password="Password123"), metadata=from_ip(new_ip()))
    error = failure(raised.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "PASSWORD_TOO_COMMON"
    assert [v.field for v in error.field_violations] == ["password"]


async def test_register_with_a_short_password_is_invalid_argument(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Register(register_request(password="short1!"), metadata=from_ip(new_ip()))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "password" in [v.field for v in failure(raised.value).field_violations]


async def test_register_younger_than_18_is_underage(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    today = datetime.datetime.now(datetime.UTC).date()
    almost = date_pb2.Date(year=today.year - 18, month=12, day=31)
    if (today.month, today.day) == (12, 31):
        almost = date_pb2.Date(year=today.year - 17, month=1, day=1)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Register(register_request(birth_date=almost), metadata=from_ip(new_ip()))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failure(raised.value).reason == "UNDERAGE"


async def test_register_exactly_18_today_is_accepted(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    today = datetime.datetime.now(datetime.UTC).date()
    if (today.month, today.day) == (2, 29):
        pytest.skip("no 18th birthday on 29 February")
    birthday = date_pb2.Date(year=today.year - 18, month=today.month, day=today.day)
    tokens = await stub.Register(register_request(birth_date=birthday), metadata=from_ip(new_ip()))
    assert tokens.account_created


@pytest.mark.parametrize(
    "birth_date",
    [date_pb2.Date(year=1990, month=2, day=30), date_pb2.Date(year=2999, month=1, day=1)],
)
async def test_register_with_an_impossible_birth_date_is_birth_date_invalid(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, birth_date: date_pb2.Date
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Register(register_request(birth_date=birth_date), metadata=from_ip(new_ip()))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failure(raised.value).reason == "BIRTH_DATE_INVALID"


async def test_register_in_an_unsupported_language_is_invalid_argument(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Register(register_request(language_code="xh"), metadata=from_ip(new_ip()))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failure(raised.value).reason == "LANGUAGE_NOT_SUPPORTED"


async def test_register_with_old_terms_is_failed_precondition_with_current_version(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Register(
            register_request(accepted_terms_version="2019-01"), metadata=from_ip(new_ip())
        )
    error = failure(raised.value)
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "TERMS_VERSION_OUTDATED"
    assert error.error_info.metadata["current_version"] == "2026-01"


async def test_register_is_throttled_per_ip(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    ip = new_ip()
    for _ in range(10):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Register(register_request(language_code="xh"), metadata=from_ip(ip))
        assert failure(raised.value).reason == "LANGUAGE_NOT_SUPPORTED"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Register(register_request(), metadata=from_ip(ip))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure(raised.value).reason == "RATE_LIMITED"
