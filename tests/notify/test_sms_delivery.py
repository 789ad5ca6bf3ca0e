"""SMS: the HTTP provider speaks Twilio's Messages API; the log provider is for development."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.auth.v1 import auth_service_pb2 as auth_pb
from amesa.auth.v1 import auth_service_pb2_grpc
from amesa.user.v1 import user_service_pb2 as pb
from amesa.user.v1 import user_service_pb2_grpc
from server.app import App
from tests.notify.support import dispatcher, enqueue, outbox_row, twilio_stand_in
from tests.user.conftest import Account

TWILIO: dict[str, Any] = {
    "sms_provider": "twilio",
    "twilio_account_sid": "AC0123456789abcdef0123456789abcdef",
    "twilio_auth_token": "auth-token-for-tests",
    "twilio_from": "+15005550006",
}


async def _start_verification(
    users: user_service_pb2_grpc.UserServiceAsyncStub,
    auth: auth_service_pb2_grpc.AuthServiceAsyncStub,
    account: Account,
    number: str,
) -> pb.Phone:
    phone = await users.CreatePhone(
        pb.CreatePhoneRequest(parent="users/me", phone=pb.Phone(phone_number=number)),
        metadata=account.metadata,
    )
    await auth.StartPhoneVerification(
        auth_pb.StartPhoneVerificationRequest(name="users/me", phone=phone.name),
        metadata=account.metadata,
    )
    return phone


def _number() -> str:
    return "+4915" + str(uuid.uuid4().int)[:9]


async def test_phone_code_goes_through_the_http_provider_and_verifies_the_phone(
    app: App,
    users: user_service_pb2_grpc.UserServiceAsyncStub,
    auth: auth_service_pb2_grpc.AuthServiceAsyncStub,
    alice: Account,
) -> None:
    number = _number()
    phone = await _start_verification(users, auth, alice, number)

    async with twilio_stand_in() as twilio:
        await dispatcher(app, twilio_base_url=twilio.base_url, **TWILIO).run()

    (request,) = [r for r in twilio.requests if r.form.get("To") == number]
    assert request.path == f"/2010-04-01/Accounts/{TWILIO['twilio_account_sid']}/Messages.json"
    assert request.basic_auth == (TWILIO["twilio_account_sid"], TWILIO["twilio_auth_token"])
    assert request.form["From"] == TWILIO["twilio_from"]
    code = re.search(r"\b(\d{6})\b", request.form["Body"])
    assert code is not None
    await auth.VerifyPhone(
        auth_pb.VerifyPhoneRequest(name="users/me", phone=phone.name, code=code.group(1)),
        metadata=alice.metadata,
    )
    listed = await users.ListPhones(
        pb.ListPhonesRequest(parent="users/me"), metadata=alice.metadata
    )
    assert [p.verified for p in listed.phones] == [True]


async def test_sms_to_an_unknown_phone_is_dead_lettered(
    app: App, owner_engine: AsyncEngine, alice: Account
) -> None:
    message_id = await enqueue(
        app,
        topic="sms.phone_code",
        payload={"phone_id": str(uuid.uuid4()), "code": "123456"},
        user_id=alice.id,
    )

    await dispatcher(app, sms_provider="log").run()

    row = await outbox_row(owner_engine, message_id)
    assert (row["state"], row["attempt_count"]) == ("DEAD", 1)


async def test_http_provider_client_error_is_dead_lettered(
    app: App,
    owner_engine: AsyncEngine,
    users: user_service_pb2_grpc.UserServiceAsyncStub,
    auth: auth_service_pb2_grpc.AuthServiceAsyncStub,
    bob: Account,
) -> None:
    await _start_verification(users, auth, bob, _number())

    async with twilio_stand_in() as twilio:
        twilio.status = 400
        await dispatcher(app, twilio_base_url=twilio.base_url, **TWILIO).run()

    async with owner_engine.connect() as connection:
        row = (
            await connection.execute(
                text(
                    "SELECT state, last_error FROM outbox "
                    "WHERE user_id = :u AND topic = 'sms.phone_code'"
                ),
                {"u": bob.id},
            )
        ).one()
    assert row.state == "DEAD"
    assert "HTTP 400" in row.last_error


async def test_log_provider_writes_the_message_to_the_log(
    app: App,
    users: user_service_pb2_grpc.UserServiceAsyncStub,
    auth: auth_service_pb2_grpc.AuthServiceAsyncStub,
    alice: Account,
    caplog: pytest.LogCaptureFixture,
) -> None:
    number = _number()
    await _start_verification(users, auth, alice, number)

    with caplog.at_level(logging.INFO, logger="amesa.notify"):
        await dispatcher(app, sms_provider="log").run()

    lines = [r.getMessage() for r in caplog.records if number in r.getMessage()]
    assert len(lines) == 1
    assert re.search(r"verification code is \d{6}", lines[0])
