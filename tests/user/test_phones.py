"""UserService phones: E.164 numbers encrypted at rest, the limit, and the verified-primary rule."""

from __future__ import annotations

import uuid

import grpc
from google.protobuf import field_mask_pb2

from amesa.user.v1 import user_service_pb2 as pb
from amesa.user.v1 import user_service_pb2_grpc
from server.user.accounts import MAX_PHONES
from tests.user.conftest import Account, Accounts, rpc_failure


async def create(
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    account: Account,
    number: str,
    *,
    primary: bool = False,
) -> pb.Phone:
    return await stub.CreatePhone(
        pb.CreatePhoneRequest(
            parent="users/me", phone=pb.Phone(phone_number=number, primary=primary)
        ),
        metadata=account.metadata,
    )


def update(
    name: str, *paths: str, number: str = "", primary: bool = False
) -> pb.UpdatePhoneRequest:
    return pb.UpdatePhoneRequest(
        phone=pb.Phone(name=name, phone_number=number, primary=primary),
        update_mask=field_mask_pb2.FieldMask(paths=list(paths)),
    )


async def verify(accounts: Accounts, phone: pb.Phone) -> None:
    await accounts.execute(
        "UPDATE user_phones SET verify_time = now() WHERE id = :id",
        id=uuid.UUID(phone.name.rsplit("/", 1)[1]),
    )


async def test_created_phone_is_unverified_and_listed(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    phone = await create(stub, alice, "+491701234567")
    assert phone.phone_number == "+491701234567"
    assert not phone.verified
    assert not phone.primary
    listed = await stub.ListPhones(pb.ListPhonesRequest(parent="users/me"), metadata=alice.metadata)
    assert list(listed.phones) == [phone]
    assert listed.total_size == 1


async def test_number_is_encrypted_with_a_blind_index(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, accounts: Accounts
) -> None:
    phone = await create(stub, alice, "+33612345678")
    row_id = uuid.UUID(phone.name.rsplit("/", 1)[1])
    stored = await accounts.fetch(
        "SELECT phone_ciphertext FROM user_phones WHERE id = :id", id=row_id
    )
    index = await accounts.fetch(
        "SELECT phone_blind_index FROM user_phones WHERE id = :id", id=row_id
    )
    assert b"33612345678" not in stored
    assert b"33612345678" not in index
    assert len(index) == 32


async def test_duplicate_number_is_phone_already_exists(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    await create(stub, alice, "+14155550100")
    failed = await rpc_failure(create(stub, alice, "+14155550100"))
    assert (failed.code, failed.reason) == (grpc.StatusCode.ALREADY_EXISTS, "PHONE_ALREADY_EXISTS")


async def test_same_number_for_two_users_is_fine(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, bob: Account
) -> None:
    await create(stub, alice, "+14155550101")
    await create(stub, bob, "+14155550101")


async def test_not_e164_is_invalid_argument(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    for number in ("0170 1234567", "+0123", "+49 170 1234567"):
        failed = await rpc_failure(create(stub, alice, number))
        assert failed.code is grpc.StatusCode.INVALID_ARGUMENT


async def test_new_phone_cannot_be_primary(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    failed = await rpc_failure(create(stub, alice, "+14155550102", primary=True))
    assert (failed.code, failed.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "PHONE_NOT_VERIFIED",
    )


async def test_limit_is_phone_limit_reached(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    for index in range(MAX_PHONES):
        await create(stub, alice, f"+1415555020{index}")
    failed = await rpc_failure(create(stub, alice, "+14155550299"))
    assert (failed.code, failed.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "PHONE_LIMIT_REACHED",
    )
    assert failed.error_info.metadata["limit"] == str(MAX_PHONES)


async def test_verified_phone_becomes_primary_and_a_new_number_resets_it(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, accounts: Accounts
) -> None:
    phone = await create(stub, alice, "+14155550300")
    failed = await rpc_failure(
        stub.UpdatePhone(update(phone.name, "primary", primary=True), metadata=alice.metadata)
    )
    assert failed.reason == "PHONE_NOT_VERIFIED"
    await verify(accounts, phone)
    primary = await stub.UpdatePhone(
        update(phone.name, "primary", primary=True), metadata=alice.metadata
    )
    assert primary.verified
    assert primary.primary
    other = await create(stub, alice, "+14155550301")
    await verify(accounts, other)
    moved = await stub.UpdatePhone(
        update(other.name, "primary", primary=True), metadata=alice.metadata
    )
    assert moved.primary
    changed = await stub.UpdatePhone(
        update(other.name, "phone_number", number="+14155550399"), metadata=alice.metadata
    )
    assert changed.phone_number == "+14155550399"
    assert not changed.verified
    assert not changed.primary
    assert not changed.HasField("verify_time")


async def test_update_to_another_own_number_is_phone_already_exists(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    await create(stub, alice, "+14155550400")
    second = await create(stub, alice, "+14155550401")
    failed = await rpc_failure(
        stub.UpdatePhone(
            update(second.name, "phone_number", number="+14155550400"), metadata=alice.metadata
        )
    )
    assert failed.reason == "PHONE_ALREADY_EXISTS"


async def test_delete_removes_the_phone(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    phone = await create(stub, alice, "+14155550500")
    await stub.DeletePhone(pb.DeletePhoneRequest(name=phone.name), metadata=alice.metadata)
    listed = await stub.ListPhones(pb.ListPhonesRequest(parent="users/me"), metadata=alice.metadata)
    assert listed.total_size == 0


async def test_another_users_phones_are_out_of_reach(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, bob: Account
) -> None:
    bobs = await create(stub, bob, "+14155550600")
    for parent in (bob.name, f"users/{uuid.uuid4()}"):
        for call in (
            stub.ListPhones(pb.ListPhonesRequest(parent=parent), metadata=alice.metadata),
            stub.CreatePhone(
                pb.CreatePhoneRequest(parent=parent, phone=pb.Phone(phone_number="+14155550601")),
                metadata=alice.metadata,
            ),
        ):
            failed = await rpc_failure(call)
            assert (failed.code, failed.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")
    for child in (bobs.name.rsplit("/", 1)[1], str(uuid.uuid4())):
        name = f"users/me/phones/{child}"
        failed = await rpc_failure(
            stub.DeletePhone(pb.DeletePhoneRequest(name=name), metadata=alice.metadata)
        )
        assert (failed.code, failed.reason) == (grpc.StatusCode.NOT_FOUND, "PHONE_NOT_FOUND")
        failed = await rpc_failure(
            stub.UpdatePhone(
                update(name, "phone_number", number="+14155550602"), metadata=alice.metadata
            )
        )
        assert (failed.code, failed.reason) == (grpc.StatusCode.NOT_FOUND, "PHONE_NOT_FOUND")
    listed = await stub.ListPhones(pb.ListPhonesRequest(parent="users/me"), metadata=bob.metadata)
    assert [p.phone_number for p in listed.phones] == ["+14155550600"]


async def test_admin_changes_are_audited_without_the_number(
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    admin: Account,
    bob: Account,
    accounts: Accounts,
) -> None:
    phone = await stub.CreatePhone(
        pb.CreatePhoneRequest(parent=bob.name, phone=pb.Phone(phone_number="+14155550700")),
        metadata=admin.metadata,
    )
    await stub.UpdatePhone(
        update(phone.name, "phone_number", number="+14155550701"), metadata=admin.metadata
    )
    rows = await accounts.fetch(
        "SELECT string_agg(action || coalesce(before::text, '') || coalesce(after::text, ''), ';')"
        " FROM audit_log WHERE resource_name = :n",
        n=phone.name,
    )
    assert "user.phone.create" in rows
    assert "user.phone.update" in rows
    assert "4155550700" not in rows
    assert "4155550701" not in rows
    own = await create(stub, bob, "+14155550702")
    assert (
        await accounts.fetch("SELECT count(*) FROM audit_log WHERE resource_name = :n", n=own.name)
        == 0
    )
