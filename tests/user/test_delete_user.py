"""UserService.DeleteUser: soft delete, sessions revoked at once, idempotent."""

from __future__ import annotations

import uuid

import grpc

from amesa.user.v1 import user_service_pb2 as pb
from amesa.user.v1 import user_service_pb2_grpc
from tests.user.conftest import Account, Accounts, rpc_failure


async def test_closing_an_account_marks_it_deleted_and_revokes_every_session(
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    alice: Account,
    admin: Account,
    accounts: Accounts,
) -> None:
    await accounts.add_session(alice.id)
    await stub.DeleteUser(pb.DeleteUserRequest(name="users/me"), metadata=alice.metadata)
    assert await accounts.live_sessions(alice.id) == 0
    assert await accounts.revoke_reasons(alice.id) == {"ACCOUNT_DELETED"}
    user = await stub.GetUser(pb.GetUserRequest(name=alice.name), metadata=admin.metadata)
    assert user.status == pb.USER_STATUS_DELETED
    assert user.HasField("delete_time")
    # The row stays (financial records point at it); PII is anonymised later.
    assert await accounts.fetch("SELECT email FROM users WHERE id = :u", u=alice.id) == alice.email


async def test_closing_again_succeeds_and_changes_nothing(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, admin: Account
) -> None:
    await stub.DeleteUser(pb.DeleteUserRequest(name="users/me"), metadata=alice.metadata)
    first = await stub.GetUser(pb.GetUserRequest(name=alice.name), metadata=admin.metadata)
    await stub.DeleteUser(pb.DeleteUserRequest(name=alice.name), metadata=alice.metadata)
    again = await stub.GetUser(pb.GetUserRequest(name=alice.name), metadata=admin.metadata)
    assert again.delete_time == first.delete_time


async def test_admin_closes_anyone_audited_and_unknown_is_user_not_found(
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    admin: Account,
    bob: Account,
    accounts: Accounts,
) -> None:
    await stub.DeleteUser(pb.DeleteUserRequest(name=bob.name), metadata=admin.metadata)
    audited = await accounts.fetch(
        "SELECT actor_kind FROM audit_log WHERE resource_name = :n AND action = 'user.delete'",
        n=bob.name,
    )
    assert audited == "ADMIN"
    failed = await rpc_failure(
        stub.DeleteUser(pb.DeleteUserRequest(name=f"users/{uuid.uuid4()}"), metadata=admin.metadata)
    )
    assert (failed.code, failed.reason) == (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")


async def test_another_user_cannot_close_an_account(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, bob: Account
) -> None:
    for name in (bob.name, f"users/{uuid.uuid4()}"):
        failed = await rpc_failure(
            stub.DeleteUser(pb.DeleteUserRequest(name=name), metadata=alice.metadata)
        )
        assert (failed.code, failed.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")
    user = await stub.GetUser(pb.GetUserRequest(name="users/me"), metadata=bob.metadata)
    assert user.status == pb.USER_STATUS_ACTIVE
