"""UserService admin methods: ListUsers, UpdateUserStatus, SetUserRoles (all audited)."""

from __future__ import annotations

import uuid

import grpc

from amesa.user.v1 import user_service_pb2 as pb
from amesa.user.v1 import user_service_pb2_grpc
from tests.user.conftest import Account, Accounts, rpc_failure


async def make_family(accounts: Accounts) -> tuple[str, list[Account]]:
    tag = uuid.uuid4().hex[:10]
    members = [await accounts.create(email=f"lu-{tag}-{index}@example.org") for index in range(5)]
    return f"lu-{tag}", members


async def test_list_users_filters_by_email_prefix_and_pages(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, admin: Account, accounts: Accounts
) -> None:
    prefix, members = await make_family(accounts)
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListUsers(
            pb.ListUsersRequest(email=prefix.upper(), page_size=2, page_token=token),
            metadata=admin.metadata,
        )
        assert page.total_size == 5
        seen += [user.email for user in page.users]
        token = page.next_page_token
        if not token:
            break
    assert seen == [m.email for m in reversed(members)]  # newest first
    by_email = await stub.ListUsers(
        pb.ListUsersRequest(email=prefix, order_by="email asc"), metadata=admin.metadata
    )
    assert [u.email for u in by_email.users] == sorted(m.email for m in members)


async def test_list_users_filters_by_status_kyc_and_role(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, admin: Account, accounts: Accounts
) -> None:
    prefix, members = await make_family(accounts)
    await accounts.execute("UPDATE users SET status = 'SUSPENDED' WHERE id = :u", u=members[0].id)
    await accounts.execute(
        "UPDATE users SET kyc_status = 'APPROVED' WHERE id = :u", u=members[1].id
    )
    await accounts.execute(
        "UPDATE users SET roles = ARRAY['USER','ADMIN'] WHERE id = :u", u=members[2].id
    )
    await accounts.execute(
        "INSERT INTO self_exclusions (user_id, start_time, end_time) VALUES (:u, now(), NULL)",
        u=members[3].id,
    )

    async def emails(request: pb.ListUsersRequest) -> set[str]:
        request.email = prefix
        response = await stub.ListUsers(request, metadata=admin.metadata)
        return {user.email for user in response.users}

    assert await emails(pb.ListUsersRequest(statuses=[pb.USER_STATUS_SUSPENDED])) == {
        members[0].email
    }
    assert await emails(pb.ListUsersRequest(statuses=[pb.USER_STATUS_SELF_EXCLUDED])) == {
        members[3].email
    }
    assert await emails(pb.ListUsersRequest(statuses=[pb.USER_STATUS_ACTIVE])) == {
        members[1].email,
        members[2].email,
        members[4].email,
    }
    assert await emails(pb.ListUsersRequest(kyc_statuses=[pb.KYC_STATUS_APPROVED])) == {
        members[1].email
    }
    assert await emails(pb.ListUsersRequest(roles=[pb.ROLE_ADMIN])) == {members[2].email}


async def test_list_users_page_token_bound_to_filters(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, admin: Account, accounts: Accounts
) -> None:
    prefix, _ = await make_family(accounts)
    first = await stub.ListUsers(
        pb.ListUsersRequest(email=prefix, page_size=1), metadata=admin.metadata
    )
    failed = await rpc_failure(
        stub.ListUsers(
            pb.ListUsersRequest(
                email=prefix, page_size=1, page_token=first.next_page_token, order_by="email"
            ),
            metadata=admin.metadata,
        )
    )
    assert (failed.code, failed.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "PAGE_TOKEN_INVALID")


async def test_list_users_is_for_admins_only(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    failed = await rpc_failure(stub.ListUsers(pb.ListUsersRequest(), metadata=alice.metadata))
    assert failed.code is grpc.StatusCode.PERMISSION_DENIED


async def test_suspending_revokes_sessions_and_is_audited(
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    admin: Account,
    bob: Account,
    accounts: Accounts,
) -> None:
    await accounts.add_session(bob.id)
    assert await accounts.live_sessions(bob.id) == 2
    user = await stub.UpdateUserStatus(
        pb.UpdateUserStatusRequest(
            name=bob.name, status=pb.USER_STATUS_SUSPENDED, reason="chargebacks"
        ),
        metadata=admin.metadata,
    )
    assert user.status == pb.USER_STATUS_SUSPENDED
    assert user.status_reason == "chargebacks"
    assert await accounts.live_sessions(bob.id) == 0
    assert await accounts.revoke_reasons(bob.id) == {"ACCOUNT_SUSPENDED"}
    audited = await accounts.fetch(
        "SELECT before->>'status' || '>' || (after->>'status') FROM audit_log "
        "WHERE resource_name = :n AND action = 'user.status.update' AND actor_user_id = :a",
        n=bob.name,
        a=admin.id,
    )
    assert audited == "ACTIVE>SUSPENDED"
    active = await stub.UpdateUserStatus(
        pb.UpdateUserStatusRequest(name=bob.name, status=pb.USER_STATUS_ACTIVE, reason="resolved"),
        metadata=admin.metadata,
    )
    assert active.status == pb.USER_STATUS_ACTIVE


async def test_update_status_errors(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, admin: Account, accounts: Accounts
) -> None:
    def request(name: str) -> pb.UpdateUserStatusRequest:
        return pb.UpdateUserStatusRequest(name=name, status=pb.USER_STATUS_SUSPENDED, reason="x")

    for own in ("users/me", admin.name):
        failed = await rpc_failure(stub.UpdateUserStatus(request(own), metadata=admin.metadata))
        assert (failed.code, failed.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "CANNOT_CHANGE_OWN_STATUS",
        )
    failed = await rpc_failure(
        stub.UpdateUserStatus(request(f"users/{uuid.uuid4()}"), metadata=admin.metadata)
    )
    assert (failed.code, failed.reason) == (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")
    closed = await accounts.create()
    await stub.DeleteUser(pb.DeleteUserRequest(name="users/me"), metadata=closed.metadata)
    failed = await rpc_failure(stub.UpdateUserStatus(request(closed.name), metadata=admin.metadata))
    assert failed.reason == "ACCOUNT_DELETED"
    excluded = await accounts.create()
    await stub.SelfExclude(
        pb.SelfExcludeRequest(name="users/me", months=6), metadata=excluded.metadata
    )
    failed = await rpc_failure(
        stub.UpdateUserStatus(request(excluded.name), metadata=admin.metadata)
    )
    assert failed.reason == "SELF_EXCLUSION_ACTIVE"
    assert "until" in failed.error_info.metadata


async def test_update_status_is_admin_only(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, bob: Account
) -> None:
    failed = await rpc_failure(
        stub.UpdateUserStatus(
            pb.UpdateUserStatusRequest(name=bob.name, status=pb.USER_STATUS_SUSPENDED, reason="x"),
            metadata=alice.metadata,
        )
    )
    assert failed.code is grpc.StatusCode.PERMISSION_DENIED


async def test_set_roles_grants_and_removing_admin_revokes_sessions(
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    admin: Account,
    bob: Account,
    accounts: Accounts,
) -> None:
    granted = await stub.SetUserRoles(
        pb.SetUserRolesRequest(name=bob.name, roles=[pb.ROLE_ADMIN, pb.ROLE_USER]),
        metadata=admin.metadata,
    )
    assert list(granted.roles) == [pb.ROLE_USER, pb.ROLE_ADMIN]
    assert await accounts.live_sessions(bob.id) == 1
    removed = await stub.SetUserRoles(
        pb.SetUserRolesRequest(name=bob.name, roles=[pb.ROLE_USER]), metadata=admin.metadata
    )
    assert list(removed.roles) == [pb.ROLE_USER]
    assert await accounts.live_sessions(bob.id) == 0
    audited = await accounts.fetch(
        "SELECT count(*) FROM audit_log WHERE resource_name = :n AND action = 'user.roles.set'",
        n=bob.name,
    )
    assert audited == 2


async def test_set_roles_errors(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, admin: Account, accounts: Accounts
) -> None:
    for own in ("users/me", admin.name):
        failed = await rpc_failure(
            stub.SetUserRoles(
                pb.SetUserRolesRequest(name=own, roles=[pb.ROLE_USER]), metadata=admin.metadata
            )
        )
        assert (failed.code, failed.reason) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "CANNOT_CHANGE_OWN_ROLES",
        )
    failed = await rpc_failure(
        stub.SetUserRoles(
            pb.SetUserRolesRequest(name=f"users/{uuid.uuid4()}", roles=[pb.ROLE_USER]),
            metadata=admin.metadata,
        )
    )
    assert failed.reason == "USER_NOT_FOUND"
    closed = await accounts.create()
    await stub.DeleteUser(pb.DeleteUserRequest(name="users/me"), metadata=closed.metadata)
    failed = await rpc_failure(
        stub.SetUserRoles(
            pb.SetUserRolesRequest(name=closed.name, roles=[pb.ROLE_USER]), metadata=admin.metadata
        )
    )
    assert failed.reason == "ACCOUNT_DELETED"
    failed = await rpc_failure(
        stub.SetUserRoles(
            pb.SetUserRolesRequest(name=closed.name, roles=[pb.ROLE_ADMIN]), metadata=admin.metadata
        )
    )
    assert failed.code is grpc.StatusCode.INVALID_ARGUMENT  # ROLE_USER is required


async def test_list_users_order_by_create_time_is_ascending_unless_desc(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, admin: Account, accounts: Accounts
) -> None:
    prefix, members = await make_family(accounts)
    oldest_first = await stub.ListUsers(
        pb.ListUsersRequest(email=prefix, order_by="create_time"), metadata=admin.metadata
    )
    assert [u.email for u in oldest_first.users] == [m.email for m in members]
    newest_first = await stub.ListUsers(
        pb.ListUsersRequest(email=prefix, order_by="create_time desc"), metadata=admin.metadata
    )
    assert [u.email for u in newest_first.users] == [m.email for m in reversed(members)]
