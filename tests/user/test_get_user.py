"""UserService.GetUser: the caller's own account (`users/me` or their id); admins, anyone."""

from __future__ import annotations

import uuid

import grpc

from amesa.user.v1 import user_service_pb2 as pb
from amesa.user.v1 import user_service_pb2_grpc
from tests.user.conftest import Account, Accounts, rpc_failure


async def test_get_me_returns_the_profile_with_the_decrypted_birth_date(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    user = await stub.GetUser(pb.GetUserRequest(name="users/me"), metadata=alice.metadata)
    assert user.name == alice.name
    assert user.email == alice.email
    assert user.email_verified
    assert (user.given_name, user.family_name) == ("Ada", "Lovelace")
    assert (user.birth_date.year, user.birth_date.month, user.birth_date.day) == (1990, 5, 17)
    assert user.status == pb.USER_STATUS_ACTIVE
    assert user.kyc_status == pb.KYC_STATUS_NOT_STARTED
    assert list(user.roles) == [pb.ROLE_USER]
    assert not user.totp_enabled
    assert user.HasField("create_time")
    assert not user.HasField("delete_time")


async def test_get_own_id_equals_get_me(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    by_me = await stub.GetUser(pb.GetUserRequest(name="users/me"), metadata=alice.metadata)
    by_id = await stub.GetUser(pb.GetUserRequest(name=alice.name), metadata=alice.metadata)
    assert by_me == by_id


async def test_another_users_profile_is_not_owner(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, bob: Account
) -> None:
    for name in (bob.name, f"users/{uuid.uuid4()}"):
        failed = await rpc_failure(
            stub.GetUser(pb.GetUserRequest(name=name), metadata=alice.metadata)
        )
        assert failed.code is grpc.StatusCode.PERMISSION_DENIED
        assert failed.reason == "NOT_OWNER"


async def test_admin_gets_anyone_and_unknown_is_user_not_found(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, admin: Account, bob: Account
) -> None:
    user = await stub.GetUser(pb.GetUserRequest(name=bob.name), metadata=admin.metadata)
    assert user.email == bob.email
    failed = await rpc_failure(
        stub.GetUser(pb.GetUserRequest(name=f"users/{uuid.uuid4()}"), metadata=admin.metadata)
    )
    assert failed.code is grpc.StatusCode.NOT_FOUND
    assert failed.reason == "USER_NOT_FOUND"


async def test_birth_date_is_not_readable_in_plain_sql(alice: Account, accounts: Accounts) -> None:
    stored = await accounts.fetch(
        "SELECT birth_date_ciphertext FROM users WHERE id = :u", u=alice.id
    )
    assert isinstance(stored, bytes)
    assert b"1990" not in stored
    assert b"1990-05-17" not in stored
