"""AuthService.Logout, ListSessions, RevokeSession and RevokeAllSessions: a user sees and ends
only their own sessions."""

from __future__ import annotations

import uuid

import grpc
import pytest

from amesa.auth.v1 import auth_service_pb2 as pb
from amesa.auth.v1 import auth_service_pb2_grpc
from server.app import App
from tests.auth.conftest import Account, login, register, with_bearer
from tests.support import failure, token_for


async def _refresh_reason(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, token: str
) -> str | None:
    try:
        await stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=token))
    except grpc.aio.AioRpcError as error:
        return failure(error).reason
    return None


async def _list(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, account: Account, **fields: object
) -> pb.ListSessionsResponse:
    response: pb.ListSessionsResponse = await stub.ListSessions(
        pb.ListSessionsRequest(parent="users/me", **fields),  # type: ignore[arg-type]
        metadata=account.metadata(),
    )
    return response


async def test_logout_revokes_the_callers_session_and_is_idempotent(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    account = await register(stub)
    other = await login(stub, account)
    await stub.Logout(pb.LogoutRequest(), metadata=account.metadata())
    await stub.Logout(pb.LogoutRequest(), metadata=account.metadata())
    assert await _refresh_reason(stub, account.tokens.refresh_token) == "SESSION_REVOKED"
    assert await _refresh_reason(stub, other.refresh_token) is None


async def test_logout_without_a_token_is_unauthenticated(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Logout(pb.LogoutRequest())
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_list_sessions_shows_live_sessions_newest_first_with_current_flag(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    account = await register(stub)
    second = await login(stub, account)
    third = await login(stub, account)
    await stub.Logout(pb.LogoutRequest(), metadata=with_bearer(third.access_token))
    response = await _list(stub, account)
    assert [session.name for session in response.sessions] == [
        second.session,
        account.tokens.session,
    ]
    assert response.total_size == 2
    assert [session.current for session in response.sessions] == [False, True]
    assert response.sessions[0].ip_address
    assert response.sessions[0].user_agent
    assert response.sessions[0].expire_time.seconds > response.sessions[0].last_use_time.seconds


async def test_list_sessions_pages_with_a_token(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    account = await register(stub)
    for _ in range(2):
        await login(stub, account)
    first = await _list(stub, account, page_size=2)
    assert len(first.sessions) == 2
    assert first.next_page_token
    second = await _list(stub, account, page_size=2, page_token=first.next_page_token)
    assert [s.name for s in second.sessions] == [account.tokens.session]
    assert not second.next_page_token
    assert first.total_size == second.total_size == 3


async def test_list_sessions_with_a_tampered_page_token_is_page_token_invalid(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    account = await register(stub)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _list(stub, account, page_token="bm90LWEtdG9rZW4tYXQtYWxs")
    assert failure(raised.value).reason == "PAGE_TOKEN_INVALID"


async def test_listing_another_users_sessions_is_not_owner(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    alice = await register(stub)
    bob = await register(stub)
    for parent in (f"users/{bob.user_id}", f"users/{uuid.uuid4()}"):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ListSessions(
                pb.ListSessionsRequest(parent=parent), metadata=alice.metadata()
            )
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert failure(raised.value).reason == "NOT_OWNER"


async def test_admin_lists_another_users_sessions(
    app: App, stub: auth_service_pb2_grpc.AuthServiceAsyncStub
) -> None:
    bob = await register(stub)
    response = await stub.ListSessions(
        pb.ListSessionsRequest(parent=f"users/{bob.user_id}"),
        metadata=with_bearer(token_for(app, roles=("user", "admin"))),
    )
    assert [s.name for s in response.sessions] == [bob.tokens.session]
    assert not response.sessions[0].current


async def test_revoke_session_ends_that_session_only(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    account = await register(stub)
    other = await login(stub, account)
    for _ in range(2):  # idempotent
        await stub.RevokeSession(
            pb.RevokeSessionRequest(
                name=other.session.replace(f"users/{account.user_id}", "users/me")
            ),
            metadata=account.metadata(),
        )
    assert await _refresh_reason(stub, other.refresh_token) == "SESSION_REVOKED"
    assert await _refresh_reason(stub, account.tokens.refresh_token) is None


async def test_revoking_another_users_session_is_not_owner_or_not_found(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    alice = await register(stub)
    bob = await register(stub)
    bob_session = bob.tokens.session.rsplit("/", 1)[1]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.RevokeSession(
            pb.RevokeSessionRequest(name=bob.tokens.session), metadata=alice.metadata()
        )
    assert failure(raised.value).reason == "NOT_OWNER"
    for session_id in (bob_session, str(uuid.uuid4())):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.RevokeSession(
                pb.RevokeSessionRequest(name=f"users/me/sessions/{session_id}"),
                metadata=alice.metadata(),
            )
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        assert failure(raised.value).reason == "SESSION_NOT_FOUND"
    assert await _refresh_reason(stub, bob.tokens.refresh_token) is None


async def test_revoke_all_sessions_keeps_the_caller_signed_in_by_default(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    account = await register(stub)
    others = [await login(stub, account) for _ in range(2)]
    response = await stub.RevokeAllSessions(
        pb.RevokeAllSessionsRequest(parent="users/me"), metadata=account.metadata()
    )
    assert response.revoked_count == 2
    assert await _refresh_reason(stub, account.tokens.refresh_token) is None
    for other in others:
        assert await _refresh_reason(stub, other.refresh_token) == "SESSION_REVOKED"
    again = await stub.RevokeAllSessions(
        pb.RevokeAllSessionsRequest(parent="users/me"), metadata=account.metadata()
    )
    assert again.revoked_count == 0


async def test_revoke_all_sessions_with_include_current_signs_out_everywhere(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    account = await register(stub)
    response = await stub.RevokeAllSessions(
        pb.RevokeAllSessionsRequest(parent=f"users/{account.user_id}", include_current=True),
        metadata=account.metadata(),
    )
    assert response.revoked_count == 1
    assert await _refresh_reason(stub, account.tokens.refresh_token) == "SESSION_REVOKED"


async def test_revoke_all_sessions_of_another_user_is_not_owner(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    alice = await register(stub)
    bob = await register(stub)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.RevokeAllSessions(
            pb.RevokeAllSessionsRequest(parent=f"users/{bob.user_id}"), metadata=alice.metadata()
        )
    assert failure(raised.value).reason == "NOT_OWNER"
    assert await _refresh_reason(stub, bob.tokens.refresh_token) is None


async def test_revoking_the_callers_own_session_is_a_logout(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    account = await register(stub)
    await stub.RevokeSession(
        pb.RevokeSessionRequest(name=account.tokens.session), metadata=account.metadata()
    )
    assert await _refresh_reason(stub, account.tokens.refresh_token) == "SESSION_REVOKED"
    listed = await _list(stub, account)
    assert list(listed.sessions) == []
