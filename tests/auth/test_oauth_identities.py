"""AuthService.ListOAuthIdentities and UnlinkOAuthIdentity (identities arranged as
LoginWithOAuth / LinkOAuthIdentity would leave them)."""

from __future__ import annotations

import uuid

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.auth.v1 import auth_service_pb2 as pb
from amesa.auth.v1 import auth_service_pb2_grpc
from tests.auth.conftest import Account, register
from tests.support import failure


async def _link(
    owner_engine: AsyncEngine, account: Account, provider: str, *, seconds_ago: int = 0
) -> uuid.UUID:
    identity_id = uuid.uuid4()
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO user_identities (id, user_id, provider, subject, email, "
                "email_verified, create_time) VALUES (:id, :user_id, :provider, :subject, "
                ":email, true, now() - make_interval(secs => :ago))"
            ),
            {
                "id": identity_id,
                "user_id": account.user_id,
                "provider": provider,
                "subject": uuid.uuid4().hex,
                "email": account.email,
                "ago": seconds_ago,
            },
        )
    return identity_id


async def _no_password(owner_engine: AsyncEngine, account: Account) -> None:
    async with owner_engine.begin() as connection:
        await connection.execute(
            text("UPDATE users SET password_hash = NULL WHERE id = :id"), {"id": account.user_id}
        )


async def _unlink(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, account: Account, name: str
) -> None:
    await stub.UnlinkOAuthIdentity(
        pb.UnlinkOAuthIdentityRequest(name=name), metadata=account.metadata()
    )


async def test_list_identities_oldest_first_in_pages(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    google = await _link(owner_engine, account, "google", seconds_ago=60)
    apple = await _link(owner_engine, account, "apple", seconds_ago=30)
    first = await stub.ListOAuthIdentities(
        pb.ListOAuthIdentitiesRequest(parent="users/me", page_size=1), metadata=account.metadata()
    )
    assert [i.name for i in first.oauth_identities] == [
        f"users/{account.user_id}/oauthIdentities/{google}"
    ]
    assert first.oauth_identities[0].provider == "google"
    assert first.oauth_identities[0].email_verified
    assert not first.oauth_identities[0].HasField("last_login_time")
    assert first.total_size == 2
    second = await stub.ListOAuthIdentities(
        pb.ListOAuthIdentitiesRequest(
            parent="users/me", page_size=1, page_token=first.next_page_token
        ),
        metadata=account.metadata(),
    )
    assert [i.name for i in second.oauth_identities] == [
        f"users/{account.user_id}/oauthIdentities/{apple}"
    ]
    assert not second.next_page_token


async def test_list_identities_of_another_user_is_not_owner(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
) -> None:
    alice = await register(stub)
    bob = await register(stub)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListOAuthIdentities(
            pb.ListOAuthIdentitiesRequest(parent=f"users/{bob.user_id}"),
            metadata=alice.metadata(),
        )
    assert failure(raised.value).reason == "NOT_OWNER"


async def test_unlink_removes_the_identity(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    identity = await _link(owner_engine, account, "google")
    await _unlink(stub, account, f"users/me/oauthIdentities/{identity}")
    listed = await stub.ListOAuthIdentities(
        pb.ListOAuthIdentitiesRequest(parent="users/me"), metadata=account.metadata()
    )
    assert list(listed.oauth_identities) == []


async def test_unlink_of_the_last_sign_in_method_is_failed_precondition(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    account = await register(stub)
    google = await _link(owner_engine, account, "google")
    apple = await _link(owner_engine, account, "apple")
    await _no_password(owner_engine, account)
    await _unlink(stub, account, f"users/me/oauthIdentities/{google}")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _unlink(stub, account, f"users/me/oauthIdentities/{apple}")
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert failure(raised.value).reason == "LAST_SIGN_IN_METHOD"


async def test_unlink_of_another_users_identity_is_not_owner_or_not_found(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, owner_engine: AsyncEngine
) -> None:
    alice = await register(stub)
    bob = await register(stub)
    bobs = await _link(owner_engine, bob, "google")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _unlink(stub, alice, f"users/{bob.user_id}/oauthIdentities/{bobs}")
    assert failure(raised.value).reason == "NOT_OWNER"
    for identity in (bobs, uuid.uuid4()):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await _unlink(stub, alice, f"users/me/oauthIdentities/{identity}")
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        assert failure(raised.value).reason == "OAUTH_IDENTITY_NOT_FOUND"
