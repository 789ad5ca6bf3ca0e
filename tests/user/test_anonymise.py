"""Closed accounts are anonymised by the background job once the grace period is over."""

from __future__ import annotations

import datetime
import uuid

import grpc
import pytest

from amesa.auth.v1 import auth_service_pb2 as auth_pb
from amesa.auth.v1 import auth_service_pb2_grpc
from amesa.user.v1 import user_service_pb2 as pb
from amesa.user.v1 import user_service_pb2_grpc
from server.app import App
from server.user.anonymise import ANONYMISE_AFTER, anonymise_closed_accounts, anonymous_email
from tests.support import failure
from tests.user.conftest import Account, Accounts


async def _close(stub: user_service_pb2_grpc.UserServiceAsyncStub, account: Account) -> None:
    await stub.DeleteUser(pb.DeleteUserRequest(name="users/me"), metadata=account.metadata)


async def _run_job(app: App, now: datetime.datetime) -> list[str]:
    async with app.deps.database.session(system=True) as session:
        return await anonymise_closed_accounts(session, now=now)


async def test_account_closed_longer_than_the_grace_period_is_anonymised(
    app: App, stub: user_service_pb2_grpc.UserServiceAsyncStub, accounts: Accounts
) -> None:
    closed = await accounts.create()
    await stub.CreateAddress(
        pb.CreateAddressRequest(
            parent="users/me",
            address=pb.Address(line1="Rua Augusta 1", city="Lisboa", country_code="PT"),
        ),
        metadata=closed.metadata,
    )
    await _close(stub, closed)

    await _run_job(
        app, datetime.datetime.now(datetime.UTC) + ANONYMISE_AFTER + datetime.timedelta(hours=1)
    )

    row = await accounts.fetch(
        "SELECT json_build_array(email, given_name, family_name, password_hash, "
        "birth_date_ciphertext IS NULL, anonymize_time IS NOT NULL, status) "
        "FROM users WHERE id = :id",
        id=closed.id,
    )
    # The row stays (financial records point at it), with nothing left of the person.
    assert row == [anonymous_email(closed.id), "", "", None, True, True, "DELETED"]
    addresses = await accounts.fetch(
        "SELECT count(*) FROM user_addresses WHERE user_id = :id", id=closed.id
    )
    assert addresses == 0


async def test_account_inside_the_grace_period_keeps_its_data(
    app: App, stub: user_service_pb2_grpc.UserServiceAsyncStub, accounts: Accounts
) -> None:
    closed = await accounts.create()
    await _close(stub, closed)

    await _run_job(
        app, datetime.datetime.now(datetime.UTC) + ANONYMISE_AFTER - datetime.timedelta(hours=1)
    )

    row = await accounts.fetch(
        "SELECT json_build_array(email, anonymize_time) FROM users WHERE id = :id", id=closed.id
    )
    assert row == [closed.email, None]


async def test_open_accounts_are_never_touched(app: App, accounts: Accounts) -> None:
    active = await accounts.create()
    await _run_job(app, datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3650))
    assert await accounts.fetch("SELECT email FROM users WHERE id = :id", id=active.id) == (
        active.email
    )


async def test_anonymised_account_can_no_longer_sign_in(
    app: App,
    channel: grpc.aio.Channel,
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    accounts: Accounts,
) -> None:
    closed = await accounts.create()
    await _close(stub, closed)
    await _run_job(app, datetime.datetime.now(datetime.UTC) + ANONYMISE_AFTER * 2)
    auth = auth_service_pb2_grpc.AuthServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await auth.Login(
            auth_pb.LoginRequest(email=closed.email, password="whatever-it-was"),
            metadata=(("x-forwarded-for", f"198.51.100.{uuid.uuid4().int % 250 + 1}"),),
        )
    assert failure(raised.value).reason == "INVALID_CREDENTIALS"
