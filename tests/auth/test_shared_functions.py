"""The functions UserService calls: revoke_all_sessions (DeleteUser, suspension,
self-exclusion) and issue_email_verification (email change)."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.auth.v1 import auth_service_pb2 as pb
from amesa.auth.v1 import auth_service_pb2_grpc
from server.app import App
from server.auth.models import SessionRevokeReason, UserSession
from server.auth.sessions import revoke_all_sessions
from server.auth.verification import issue_email_verification
from tests.auth.conftest import last_token, login, new_email, register
from tests.support import failure


async def test_revoke_all_sessions_revokes_every_live_session_and_counts_them(
    app: App, stub: auth_service_pb2_grpc.AuthServiceAsyncStub
) -> None:
    account = await register(stub)
    second = await login(stub, account)
    async with app.database.session(system=True) as session:
        count = await revoke_all_sessions(
            session, user_id=account.user_id, reason=SessionRevokeReason.ACCOUNT_SUSPENDED
        )
    assert count == 2
    for tokens in (account.tokens, second):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=tokens.refresh_token))
        assert failure(raised.value).reason == "SESSION_REVOKED"
    async with app.database.session(system=True) as session:
        reasons = set(
            await session.scalars(
                select(UserSession.revoke_reason).where(UserSession.user_id == account.user_id)
            )
        )
        again = await revoke_all_sessions(
            session, user_id=account.user_id, reason=SessionRevokeReason.ACCOUNT_DELETED
        )
    assert reasons == {SessionRevokeReason.ACCOUNT_SUSPENDED}
    assert again == 0


async def test_revoke_all_sessions_can_spare_one_session(
    app: App, stub: auth_service_pb2_grpc.AuthServiceAsyncStub
) -> None:
    account = await register(stub)
    other = await login(stub, account)
    async with app.database.session(system=True) as session:
        count = await revoke_all_sessions(
            session,
            user_id=account.user_id,
            reason=SessionRevokeReason.PASSWORD_CHANGED,
            except_session_id=account.session_id,
        )
    assert count == 1
    await stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=account.tokens.refresh_token))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=other.refresh_token))


async def test_email_change_verification_swaps_the_pending_email(
    app: App, stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    new_address = new_email()
    async with owner_engine.begin() as connection:
        await connection.execute(
            text("UPDATE users SET pending_email = :email WHERE id = :id"),
            {"email": new_address, "id": account.user_id},
        )
    async with app.database.session(system=True) as session:
        await issue_email_verification(
            session, user_id=account.user_id, email=new_address, language="fr"
        )
    token = await last_token(owner_engine, user_id=account.user_id, topic="email.verify_email")
    await stub.VerifyEmail(pb.VerifyEmailRequest(token=token))
    async with owner_engine.connect() as connection:
        row = (
            await connection.execute(
                text("SELECT email, pending_email, email_verify_time FROM users WHERE id = :id"),
                {"id": account.user_id},
            )
        ).one()
    assert row.email == new_address
    assert row.pending_email is None
    assert row.email_verify_time is not None


async def test_email_change_to_an_address_taken_meanwhile_is_email_taken(
    app: App, stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    wanted = new_email()
    async with owner_engine.begin() as connection:
        await connection.execute(
            text("UPDATE users SET pending_email = :email WHERE id = :id"),
            {"email": wanted, "id": account.user_id},
        )
    async with app.database.session(system=True) as session:
        await issue_email_verification(
            session, user_id=account.user_id, email=wanted, language="en"
        )
    token = await last_token(owner_engine, user_id=account.user_id, topic="email.verify_email")
    await register(stub, email=wanted.upper())
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.VerifyEmail(pb.VerifyEmailRequest(token=token))
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert failure(raised.value).reason == "EMAIL_TAKEN"
