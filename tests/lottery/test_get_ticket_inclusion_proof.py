"""LotteryService.GetTicketInclusionProof and the signed tree heads behind it: every ticket's
proof verifies with the SDK against the latest signed head, a forged leaf does not, and a
ticket no signed head covers yet is TICKET_NOT_YET_LOGGED with RetryInfo."""

from __future__ import annotations

import datetime
import uuid

import grpc
import pytest
from amesa_sdk.draw1 import leaf_hash, verify_inclusion, verify_tree_head
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.rpc import error_details_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from server.app import App
from server.lottery.draw.merkle import EMPTY_ROOT
from server.lottery.entrylog import public_key_bytes, sign_tree_head
from server.lottery.models import SignedTreeHead
from tests.lottery.conftest import Callers, Metadata, active_house, buy_tickets, new_user
from tests.support import failure


def _id(name: str) -> uuid.UUID:
    return uuid.UUID(name.split("/")[1])


async def _sign(app: App, house: str) -> SignedTreeHead:
    async with app.deps.database.session(system=True) as session:
        return await sign_tree_head(
            session,
            house_id=_id(house),
            key=app.deps.transparency_key,
            now=datetime.datetime.now(datetime.UTC),
        )


def _verifies(ticket: pb.Ticket, proof: pb.TicketInclusionProof, *, secret: bytes) -> bool:
    """What a ticket holder does with the SDK: recompute the leaf, fold the path, check the
    head's signature."""
    leaf = leaf_hash(
        house_id=_id(ticket.house),
        number=ticket.number,
        secret=secret,
        purchase_time_ms=ticket.purchase_time.ToMilliseconds(),
    )
    head = proof.tree_head
    root = bytes.fromhex(head.root)
    return verify_inclusion(
        leaf=leaf,
        index=proof.leaf_index,
        tree_size=head.tree_size,
        proof=[bytes.fromhex(sibling) for sibling in proof.audit_path],
        root=root,
    ) and verify_tree_head(
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(proof.transparency_public_key)),
        house_id=_id(proof.house),
        tree_size=head.tree_size,
        root=root,
        timestamp_ms=head.timestamp.ToMilliseconds(),
        signature=bytes.fromhex(head.signature),
    )


async def test_every_tickets_proof_verifies_against_the_signed_head(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=7)
    buyers: list[tuple[uuid.UUID, Metadata]] = [
        await new_user(app, owner_engine),
        await new_user(app, owner_engine),
    ]
    for (user_id, _), quantity in zip(buyers * 2, [2, 1, 3, 1], strict=True):
        await buy_tickets(app, owner_engine, house=house.name, user_id=user_id, quantity=quantity)
    head = await _sign(app, house.name)
    assert head.tree_size == 7

    checked = 0
    for _, metadata in buyers:
        listed = await callers.stub.ListTickets(
            pb.ListTicketsRequest(parent="users/me"), metadata=metadata
        )
        for ticket in listed.tickets:
            proof = await callers.stub.GetTicketInclusionProof(
                pb.GetTicketInclusionProofRequest(name=ticket.name), metadata=metadata
            )
            assert proof.ticket == ticket.name
            assert proof.house == house.name
            assert proof.leaf_index == ticket.number - 1
            assert proof.leaf_hash == ticket.leaf_hash
            assert proof.tree_head.tree_size == 7
            assert proof.tree_head.root == head.root.hex()
            assert bytes.fromhex(proof.transparency_public_key) == public_key_bytes(
                app.deps.transparency_key
            )
            secret = bytes.fromhex(ticket.secret_id)
            assert _verifies(ticket, proof, secret=secret)
            forged = bytes([secret[0] ^ 1]) + secret[1:]
            assert not _verifies(ticket, proof, secret=forged)
            checked += 1
    assert checked == 7


async def test_signing_an_unchanged_log_returns_the_same_head(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=5)
    empty = await _sign(app, house.name)
    user_id, _ = await new_user(app, owner_engine)
    await buy_tickets(app, owner_engine, house=house.name, user_id=user_id, quantity=2)

    first = await _sign(app, house.name)
    again = await _sign(app, house.name)

    assert (empty.tree_size, empty.root) == (0, EMPTY_ROOT)
    assert again.id == first.id
    assert first.tree_size == 2
    assert verify_tree_head(
        app.deps.transparency_key.public_key(),
        house_id=_id(house.name),
        tree_size=2,
        root=first.root,
        timestamp_ms=int(first.timestamp.timestamp() * 1000),
        signature=first.signature,
    )


async def test_a_ticket_no_signed_head_covers_is_not_yet_logged_with_retry_info(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=5)
    user_id, metadata = await new_user(app, owner_engine)
    await buy_tickets(app, owner_engine, house=house.name, user_id=user_id, quantity=1)
    await _sign(app, house.name)
    (later,) = await buy_tickets(app, owner_engine, house=house.name, user_id=user_id, quantity=1)
    name = f"users/me/tickets/{later.id}"

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.GetTicketInclusionProof(
            pb.GetTicketInclusionProofRequest(name=name), metadata=metadata
        )

    rpc_failure = failure(raised.value)
    assert rpc_failure.code is grpc.StatusCode.FAILED_PRECONDITION
    assert rpc_failure.reason == "TICKET_NOT_YET_LOGGED"
    retry = [d for d in rpc_failure.status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert len(retry) == 1
    info = error_details_pb2.RetryInfo()
    retry[0].Unpack(info)
    assert info.retry_delay.seconds > 0

    await _sign(app, house.name)
    proof = await callers.stub.GetTicketInclusionProof(
        pb.GetTicketInclusionProofRequest(name=name), metadata=metadata
    )
    assert proof.tree_head.tree_size == 2
    assert proof.leaf_index == 1


async def test_proof_for_another_users_ticket_is_not_found_or_not_owner(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=5)
    owner_id, _ = await new_user(app, owner_engine)
    _, stranger = await new_user(app, owner_engine)
    (ticket,) = await buy_tickets(app, owner_engine, house=house.name, user_id=owner_id, quantity=1)
    await _sign(app, house.name)

    with pytest.raises(grpc.aio.AioRpcError) as under_me:
        await callers.stub.GetTicketInclusionProof(
            pb.GetTicketInclusionProofRequest(name=f"users/me/tickets/{ticket.id}"),
            metadata=stranger,
        )
    with pytest.raises(grpc.aio.AioRpcError) as under_owner:
        await callers.stub.GetTicketInclusionProof(
            pb.GetTicketInclusionProofRequest(name=f"users/{owner_id}/tickets/{ticket.id}"),
            metadata=stranger,
        )

    assert failure(under_me.value).code is grpc.StatusCode.NOT_FOUND
    assert failure(under_me.value).reason == "TICKET_NOT_FOUND"
    assert failure(under_owner.value).code is grpc.StatusCode.PERMISSION_DENIED
    assert failure(under_owner.value).reason == "NOT_OWNER"
