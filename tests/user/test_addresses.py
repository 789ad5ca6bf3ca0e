"""UserService addresses: List/Create/Update/Delete, the limit and the primary-address rule."""

from __future__ import annotations

import asyncio
import uuid

import grpc
from google.protobuf import field_mask_pb2

from amesa.user.v1 import user_service_pb2 as pb
from amesa.user.v1 import user_service_pb2_grpc
from server.user.accounts import MAX_ADDRESSES
from tests.support import failure
from tests.user.conftest import Account, Accounts, rpc_failure


def home(label: str = "Home") -> pb.Address:
    return pb.Address(
        label=label, line1="1 Rue de Rivoli", city="Paris", postal_code="75001", country_code="FR"
    )


async def create(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, account: Account, address: pb.Address
) -> pb.Address:
    return await stub.CreateAddress(
        pb.CreateAddressRequest(parent="users/me", address=address), metadata=account.metadata
    )


async def listed(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, account: Account
) -> list[pb.Address]:
    response = await stub.ListAddresses(
        pb.ListAddressesRequest(parent="users/me"), metadata=account.metadata
    )
    return list(response.addresses)


async def test_first_address_is_primary_and_a_new_primary_moves_the_mark(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    first = await create(stub, alice, home("First"))
    assert first.primary
    assert first.name.startswith(f"{alice.name}/addresses/")
    second = await create(stub, alice, home("Second"))
    assert not second.primary
    third = await create(stub, alice, _primary(home("Third")))
    assert third.primary
    addresses = await listed(stub, alice)
    assert [a.label for a in addresses] == ["Third", "Second", "First"]  # primary, then newest
    assert [a.primary for a in addresses] == [True, False, False]


def _primary(address: pb.Address) -> pb.Address:
    address.primary = True
    return address


async def test_list_pages_with_tokens_and_total_size(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    for index in range(5):
        await create(stub, alice, home(f"A{index}"))
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListAddresses(
            pb.ListAddressesRequest(parent="users/me", page_size=2, page_token=token),
            metadata=alice.metadata,
        )
        assert page.total_size == 5
        seen += [a.label for a in page.addresses]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["A0", "A4", "A3", "A2", "A1"]


async def test_tampered_page_token_is_page_token_invalid(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    failed = await rpc_failure(
        stub.ListAddresses(
            pb.ListAddressesRequest(parent="users/me", page_token="bm90LWEtdG9rZW4"),
            metadata=alice.metadata,
        )
    )
    assert failed.reason == "PAGE_TOKEN_INVALID"


async def test_update_changes_masked_fields_and_primary_cannot_be_cleared(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    first = await create(stub, alice, home("First"))
    second = await create(stub, alice, home("Second"))
    mask = field_mask_pb2.FieldMask(paths=["city", "line2"])
    updated = await stub.UpdateAddress(
        pb.UpdateAddressRequest(
            address=pb.Address(name=second.name, city="Lyon", label="ignored"), update_mask=mask
        ),
        metadata=alice.metadata,
    )
    assert (updated.city, updated.label, updated.line2) == ("Lyon", "Second", "")
    moved = await stub.UpdateAddress(
        pb.UpdateAddressRequest(
            address=pb.Address(name=second.name, primary=True),
            update_mask=field_mask_pb2.FieldMask(paths=["primary"]),
        ),
        metadata=alice.metadata,
    )
    assert moved.primary
    assert [a.name for a in await listed(stub, alice) if a.primary] == [second.name]
    failed = await rpc_failure(
        stub.UpdateAddress(
            pb.UpdateAddressRequest(
                address=pb.Address(name=second.name, primary=False),
                update_mask=field_mask_pb2.FieldMask(paths=["primary"]),
            ),
            metadata=alice.metadata,
        )
    )
    assert failed.code is grpc.StatusCode.FAILED_PRECONDITION
    assert failed.reason == "PRIMARY_ADDRESS_REQUIRED"
    assert first.name != second.name


async def test_deleting_the_primary_makes_the_newest_remaining_primary(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    first = await create(stub, alice, home("First"))
    await create(stub, alice, home("Second"))
    third = await create(stub, alice, home("Third"))
    await stub.DeleteAddress(pb.DeleteAddressRequest(name=first.name), metadata=alice.metadata)
    addresses = await listed(stub, alice)
    assert (addresses[0].name, addresses[0].primary) == (third.name, True)
    assert len(addresses) == 2


async def test_limit_is_address_limit_reached(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    for index in range(MAX_ADDRESSES):
        await create(stub, alice, home(f"A{index}"))
    failed = await rpc_failure(create(stub, alice, home("One too many")))
    assert failed.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failed.reason == "ADDRESS_LIMIT_REACHED"
    assert failed.error_info.metadata["limit"] == str(MAX_ADDRESSES)


async def test_missing_required_field_is_invalid_argument(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    failed = await rpc_failure(create(stub, alice, pb.Address(line1="x", country_code="FR")))
    assert failed.code is grpc.StatusCode.INVALID_ARGUMENT


async def test_another_users_addresses_are_out_of_reach(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, bob: Account
) -> None:
    bobs = await create(stub, bob, home("Bob's"))
    bob_id = bobs.name.rsplit("/", 1)[1]
    # A foreign parent: NOT_OWNER, whether the user exists or not.
    for parent in (bob.name, f"users/{uuid.uuid4()}"):
        for call in (
            stub.ListAddresses(pb.ListAddressesRequest(parent=parent), metadata=alice.metadata),
            stub.CreateAddress(
                pb.CreateAddressRequest(parent=parent, address=home()), metadata=alice.metadata
            ),
        ):
            failed = await rpc_failure(call)
            assert (failed.code, failed.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")
    failed = await rpc_failure(
        stub.DeleteAddress(pb.DeleteAddressRequest(name=bobs.name), metadata=alice.metadata)
    )
    assert failed.reason == "NOT_OWNER"
    # Bob's address id (or a random one) under alice's own users/me: NOT_FOUND.
    for child in (bob_id, str(uuid.uuid4())):
        name = f"users/me/addresses/{child}"
        failed = await rpc_failure(
            stub.DeleteAddress(pb.DeleteAddressRequest(name=name), metadata=alice.metadata)
        )
        assert (failed.code, failed.reason) == (grpc.StatusCode.NOT_FOUND, "ADDRESS_NOT_FOUND")
        failed = await rpc_failure(
            stub.UpdateAddress(
                pb.UpdateAddressRequest(
                    address=pb.Address(name=name, city="Evil"),
                    update_mask=field_mask_pb2.FieldMask(paths=["city"]),
                ),
                metadata=alice.metadata,
            )
        )
        assert (failed.code, failed.reason) == (grpc.StatusCode.NOT_FOUND, "ADDRESS_NOT_FOUND")
    assert [a.city for a in await listed(stub, bob)] == ["Paris"]


async def test_admin_manages_anyones_addresses_audited(
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    admin: Account,
    bob: Account,
    accounts: Accounts,
) -> None:
    created = await stub.CreateAddress(
        pb.CreateAddressRequest(parent=bob.name, address=home()), metadata=admin.metadata
    )
    assert created.name.startswith(f"{bob.name}/addresses/")
    await stub.DeleteAddress(pb.DeleteAddressRequest(name=created.name), metadata=admin.metadata)
    actions = await accounts.fetch(
        "SELECT string_agg(action, ',' ORDER BY create_time) FROM audit_log"
        " WHERE resource_name = :n AND actor_user_id = :a",
        n=created.name,
        a=admin.id,
    )
    assert actions == "user.address.create,user.address.delete"
    failed = await rpc_failure(
        stub.ListAddresses(
            pb.ListAddressesRequest(parent=f"users/{uuid.uuid4()}"), metadata=admin.metadata
        )
    )
    assert failed.reason == "USER_NOT_FOUND"


async def test_concurrent_creations_respect_the_limit_and_one_primary(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    results = await asyncio.gather(
        *(create(stub, alice, home(f"C{index}")) for index in range(MAX_ADDRESSES + 5)),
        return_exceptions=True,
    )
    created = [r for r in results if isinstance(r, pb.Address)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(created) == MAX_ADDRESSES
    assert {failure(r).reason for r in refused} == {"ADDRESS_LIMIT_REACHED"}
    assert sum(a.primary for a in await listed(stub, alice)) == 1
