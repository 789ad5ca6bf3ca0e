"""UserService.ListActivity: the user's own security and purchase log (admins: anyone's)."""

from __future__ import annotations

import datetime
import uuid

import grpc
from google.protobuf import field_mask_pb2, timestamp_pb2

from amesa.user.v1 import user_service_pb2 as pb
from amesa.user.v1 import user_service_pb2_grpc
from tests.user.conftest import Account, Accounts, rpc_failure


async def add_entries(
    accounts: Accounts, user_id: uuid.UUID, kind: str, count: int, *, days_ago: int = 0
) -> None:
    await accounts.execute(
        "INSERT INTO activity_log (user_id, kind, ip_address, user_agent, details, create_time)"
        " SELECT :u, :k, '203.0.113.7', 'pytest', jsonb_build_object('n', n::text),"
        " now() - make_interval(days => :d) + make_interval(secs => n)"
        " FROM generate_series(1, :c) AS n",
        u=user_id,
        k=kind,
        c=count,
        d=days_ago,
    )


async def test_lists_own_activity_newest_first_with_pages(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, accounts: Accounts
) -> None:
    await add_entries(accounts, alice.id, "LOGIN_SUCCEEDED", 5)
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListActivity(
            pb.ListActivityRequest(parent="users/me", page_size=2, page_token=token),
            metadata=alice.metadata,
        )
        assert page.total_size == 5
        seen += [entry.details["n"] for entry in page.activities]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["5", "4", "3", "2", "1"]
    entry = (
        await stub.ListActivity(
            pb.ListActivityRequest(parent="users/me", page_size=1), metadata=alice.metadata
        )
    ).activities[0]
    assert entry.kind == pb.ACTIVITY_KIND_LOGIN_SUCCEEDED
    assert (entry.ip_address, entry.user_agent) == ("203.0.113.7", "pytest")
    assert entry.name.startswith(f"{alice.name}/activities/")


async def test_filters_by_kind_and_time(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, accounts: Accounts
) -> None:
    await add_entries(accounts, alice.id, "LOGIN_FAILED", 2, days_ago=10)
    await add_entries(accounts, alice.id, "LOGOUT", 3)
    failed_logins = await stub.ListActivity(
        pb.ListActivityRequest(parent="users/me", kinds=[pb.ACTIVITY_KIND_LOGIN_FAILED]),
        metadata=alice.metadata,
    )
    assert failed_logins.total_size == 2
    start = timestamp_pb2.Timestamp()
    start.FromDatetime(datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1))
    recent = await stub.ListActivity(
        pb.ListActivityRequest(parent="users/me", start_time=start), metadata=alice.metadata
    )
    assert {entry.kind for entry in recent.activities} == {pb.ACTIVITY_KIND_LOGOUT}
    older = await stub.ListActivity(
        pb.ListActivityRequest(parent="users/me", end_time=start), metadata=alice.metadata
    )
    assert older.total_size == 2


async def test_profile_changes_are_logged(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    await stub.UpdateUser(
        pb.UpdateUserRequest(
            user=pb.User(name="users/me", given_name="Grace"),
            update_mask=field_mask_pb2.FieldMask(paths=["given_name"]),
        ),
        metadata=alice.metadata,
    )
    await stub.SelfExclude(
        pb.SelfExcludeRequest(name="users/me", months=6), metadata=alice.metadata
    )
    listed = await stub.ListActivity(
        pb.ListActivityRequest(parent="users/me"), metadata=alice.metadata
    )
    assert [entry.kind for entry in listed.activities] == [
        pb.ACTIVITY_KIND_SELF_EXCLUDED,
        pb.ACTIVITY_KIND_PROFILE_UPDATED,
    ]
    assert listed.activities[1].details["fields"] == "given_name"


async def test_page_token_from_other_filters_is_page_token_invalid(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, accounts: Accounts
) -> None:
    await add_entries(accounts, alice.id, "LOGOUT", 3)
    first = await stub.ListActivity(
        pb.ListActivityRequest(parent="users/me", page_size=1), metadata=alice.metadata
    )
    failed = await rpc_failure(
        stub.ListActivity(
            pb.ListActivityRequest(
                parent="users/me",
                page_size=1,
                page_token=first.next_page_token,
                kinds=[pb.ACTIVITY_KIND_LOGOUT],
            ),
            metadata=alice.metadata,
        )
    )
    assert (failed.code, failed.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "PAGE_TOKEN_INVALID")


async def test_another_users_activity_is_not_owner_but_admins_see_it(
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    alice: Account,
    bob: Account,
    admin: Account,
    accounts: Accounts,
) -> None:
    await add_entries(accounts, bob.id, "LOGOUT", 1)
    for parent in (bob.name, f"users/{uuid.uuid4()}"):
        failed = await rpc_failure(
            stub.ListActivity(pb.ListActivityRequest(parent=parent), metadata=alice.metadata)
        )
        assert (failed.code, failed.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")
    listed = await stub.ListActivity(
        pb.ListActivityRequest(parent=bob.name), metadata=admin.metadata
    )
    assert listed.total_size == 1
    failed = await rpc_failure(
        stub.ListActivity(
            pb.ListActivityRequest(parent=f"users/{uuid.uuid4()}"), metadata=admin.metadata
        )
    )
    assert failed.reason == "USER_NOT_FOUND"
