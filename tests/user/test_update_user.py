"""UserService.UpdateUser: the masked profile fields; an email change waits in `pending_email`."""

from __future__ import annotations

import datetime
import uuid

import grpc
from google.protobuf import field_mask_pb2
from google.type import date_pb2  # type: ignore[import-untyped]

from amesa.user.v1 import user_service_pb2 as pb
from amesa.user.v1 import user_service_pb2_grpc
from tests.user.conftest import Account, Accounts, rpc_failure


def update(user: pb.User, *paths: str) -> pb.UpdateUserRequest:
    return pb.UpdateUserRequest(user=user, update_mask=field_mask_pb2.FieldMask(paths=list(paths)))


async def test_updates_only_the_masked_fields(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, languages: None
) -> None:
    changed = await stub.UpdateUser(
        update(
            pb.User(
                name="users/me", given_name="Grace", family_name="Ignored", preferred_language="fr"
            ),
            "given_name",
            "preferred_language",
        ),
        metadata=alice.metadata,
    )
    assert changed.given_name == "Grace"
    assert changed.family_name == "Lovelace"
    assert changed.preferred_language == "fr"
    again = await stub.GetUser(pb.GetUserRequest(name="users/me"), metadata=alice.metadata)
    assert again == changed


async def test_marketing_opt_in_can_be_cleared(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    on = await stub.UpdateUser(
        update(pb.User(name="users/me", marketing_opt_in=True), "marketing_opt_in"),
        metadata=alice.metadata,
    )
    assert on.marketing_opt_in
    off = await stub.UpdateUser(
        update(pb.User(name="users/me"), "marketing_opt_in"), metadata=alice.metadata
    )
    assert not off.marketing_opt_in


async def test_birth_date_is_stored_encrypted(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, accounts: Accounts
) -> None:
    user = pb.User(name="users/me", birth_date=date_pb2.Date(year=1985, month=2, day=28))
    changed = await stub.UpdateUser(update(user, "birth_date"), metadata=alice.metadata)
    assert (changed.birth_date.year, changed.birth_date.month, changed.birth_date.day) == (
        1985,
        2,
        28,
    )
    stored = await accounts.fetch(
        "SELECT birth_date_ciphertext FROM users WHERE id = :u", u=alice.id
    )
    assert b"1985" not in stored


async def test_impossible_or_future_birth_date_is_birth_date_invalid(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    next_year = datetime.date.today().year + 1
    for date in (
        date_pb2.Date(year=1990, month=2, day=30),
        date_pb2.Date(year=next_year, month=1, day=1),
    ):
        failed = await rpc_failure(
            stub.UpdateUser(
                update(pb.User(name="users/me", birth_date=date), "birth_date"),
                metadata=alice.metadata,
            )
        )
        assert failed.code is grpc.StatusCode.INVALID_ARGUMENT
        assert failed.reason == "BIRTH_DATE_INVALID"


async def test_birth_date_under_minimum_age_is_underage(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    young = datetime.date.today().year - 10
    failed = await rpc_failure(
        stub.UpdateUser(
            update(
                pb.User(name="users/me", birth_date=date_pb2.Date(year=young, month=1, day=1)),
                "birth_date",
            ),
            metadata=alice.metadata,
        )
    )
    assert failed.code is grpc.StatusCode.INVALID_ARGUMENT
    assert failed.reason == "UNDERAGE"
    assert [v.field for v in failed.field_violations] == ["user.birth_date"]


async def test_birth_date_is_locked_once_a_document_was_submitted(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    await stub.UploadIdentityDocument(
        pb.UploadIdentityDocumentRequest(
            parent="users/me",
            document_type=pb.IDENTITY_DOCUMENT_TYPE_PASSPORT,
            issuing_country="FR",
            document_number="12AB34567",
            content=b"%PDF-1.7\n%test\n",
        ),
        metadata=alice.metadata,
    )
    failed = await rpc_failure(
        stub.UpdateUser(
            update(
                pb.User(name="users/me", birth_date=date_pb2.Date(year=1980, month=1, day=1)),
                "birth_date",
            ),
            metadata=alice.metadata,
        )
    )
    assert failed.code is grpc.StatusCode.FAILED_PRECONDITION
    assert failed.reason == "BIRTH_DATE_LOCKED"


async def test_unsupported_language_is_language_not_supported(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, languages: None
) -> None:
    for language in ("xh", "zz"):  # disabled, unknown
        failed = await rpc_failure(
            stub.UpdateUser(
                update(pb.User(name="users/me", preferred_language=language), "preferred_language"),
                metadata=alice.metadata,
            )
        )
        assert failed.code is grpc.StatusCode.INVALID_ARGUMENT
        assert failed.reason == "LANGUAGE_NOT_SUPPORTED"


async def test_email_change_waits_for_verification_and_notifies_both_addresses(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, accounts: Accounts
) -> None:
    new = f"new-{uuid.uuid4().hex[:8]}@example.org"
    changed = await stub.UpdateUser(
        update(pb.User(name="users/me", email=new), "email"), metadata=alice.metadata
    )
    assert changed.email == alice.email
    assert changed.pending_email == new
    sent = await accounts.fetch(
        "SELECT array_agg(payload->>'to' ORDER BY payload->>'to') FROM outbox WHERE user_id = :u",
        u=alice.id,
    )
    assert sorted(sent) == sorted([new, alice.email])
    tokens = await accounts.fetch(
        "SELECT count(*) FROM verification_tokens WHERE user_id = :u", u=alice.id
    )
    assert tokens == 1


async def test_setting_email_to_the_current_address_cancels_a_pending_change(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    await stub.UpdateUser(
        update(pb.User(name="users/me", email="someone-else@example.org"), "email"),
        metadata=alice.metadata,
    )
    cancelled = await stub.UpdateUser(
        update(pb.User(name="users/me", email=alice.email.upper()), "email"),
        metadata=alice.metadata,
    )
    assert cancelled.pending_email == ""
    assert cancelled.email == alice.email


async def test_email_already_taken_is_not_revealed(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, bob: Account
) -> None:
    changed = await stub.UpdateUser(
        update(pb.User(name="users/me", email=bob.email), "email"), metadata=alice.metadata
    )
    assert changed.pending_email == bob.email


async def test_clearing_a_required_field_is_invalid_argument(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    failed = await rpc_failure(
        stub.UpdateUser(update(pb.User(name="users/me"), "given_name"), metadata=alice.metadata)
    )
    assert failed.code is grpc.StatusCode.INVALID_ARGUMENT


async def test_field_outside_the_allowed_mask_is_invalid_argument(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    failed = await rpc_failure(
        stub.UpdateUser(update(pb.User(name="users/me"), "roles"), metadata=alice.metadata)
    )
    assert failed.code is grpc.StatusCode.INVALID_ARGUMENT


async def test_another_users_profile_cannot_be_changed(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, bob: Account
) -> None:
    for name in (bob.name, f"users/{uuid.uuid4()}"):
        failed = await rpc_failure(
            stub.UpdateUser(
                update(pb.User(name=name, given_name="Mallory"), "given_name"),
                metadata=alice.metadata,
            )
        )
        assert failed.code is grpc.StatusCode.PERMISSION_DENIED
        assert failed.reason == "NOT_OWNER"
    user = await stub.GetUser(pb.GetUserRequest(name="users/me"), metadata=bob.metadata)
    assert user.given_name == "Ada"


async def test_admin_update_is_audited_and_unknown_user_not_found(
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    admin: Account,
    bob: Account,
    accounts: Accounts,
) -> None:
    await stub.UpdateUser(
        update(pb.User(name=bob.name, family_name="Hopper"), "family_name"), metadata=admin.metadata
    )
    audited = await accounts.fetch(
        "SELECT after->>'family_name' FROM audit_log"
        " WHERE resource_name = :n AND action = 'user.update'",
        n=bob.name,
    )
    assert audited == "Hopper"
    failed = await rpc_failure(
        stub.UpdateUser(
            update(pb.User(name=f"users/{uuid.uuid4()}", family_name="X"), "family_name"),
            metadata=admin.metadata,
        )
    )
    assert failed.reason == "USER_NOT_FOUND"


async def test_closed_account_is_account_deleted(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, accounts: Accounts
) -> None:
    closed = await accounts.create()
    await stub.DeleteUser(pb.DeleteUserRequest(name="users/me"), metadata=closed.metadata)
    failed = await rpc_failure(
        stub.UpdateUser(
            update(pb.User(name="users/me", given_name="X"), "given_name"), metadata=closed.metadata
        )
    )
    assert failed.code is grpc.StatusCode.FAILED_PRECONDITION
    assert failed.reason == "ACCOUNT_DELETED"
