"""A house's entry log (DRAW-1, SPEC §6 step 2): signed tree heads over its leaves, and
inclusion proofs of a ticket's leaf against the latest signed head.

Leaves are appended by `tickets.issue_tickets`; committed leaves always form a gap-free prefix
ordered by ticket number (leaf index = number - 1). A head signs (size, root, timestamp) with
the transparency key; heads are append-only and one per size (`UNIQUE (house_id, tree_size)`),
so signing an unchanged log again returns the head already signed.

Who signs: the freeze at sales close signs the final head; while sales are open the scheduler
is expected to sign a head for every house with new leaves at least every
`HEAD_INTERVAL` — that is the delay GetTicketInclusionProof tells a client to wait.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from dataclasses import dataclass
from datetime import timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.audit import record_audit
from server.core.errors import FailedPrecondition
from server.lottery.draw.merkle import MerkleTree, merkle_root
from server.lottery.draw.protocol import sign_tree_head as sign_head_bytes
from server.lottery.draw.protocol import to_ms
from server.lottery.models import DrawEntry, SignedTreeHead, Ticket
from server.lottery.tickets import whole_milliseconds

HEAD_INTERVAL = timedelta(seconds=60)
# Trees above this many leaves are hashed off the event loop.
THREAD_THRESHOLD = 4096


class TicketNotYetLogged(FailedPrecondition):
    """FAILED_PRECONDITION TICKET_NOT_YET_LOGGED with RetryInfo: no signed head covers the leaf."""

    def __init__(self, retry_after: timedelta) -> None:
        super().__init__(
            "TICKET_NOT_YET_LOGGED",
            "no signed tree head covers this ticket yet; retry later",
            metadata={"subject": "tree_head"},
        )
        self.retry_after = retry_after

    def details(self) -> list[any_pb2.Any]:
        delay = duration_pb2.Duration()
        delay.FromTimedelta(self.retry_after)
        retry = any_pb2.Any()
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        return [*super().details(), retry]


def public_key_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


async def _leaves(session: AsyncSession, *, house_id: uuid.UUID, size: int | None) -> list[bytes]:
    """The leaves in index order (the first `size` if given); refuses a log with a gap."""
    query = select(DrawEntry.leaf_index, DrawEntry.leaf_hash).where(DrawEntry.house_id == house_id)
    if size is not None:
        query = query.where(DrawEntry.leaf_index < size)
    rows = (await session.execute(query.order_by(DrawEntry.leaf_index))).all()
    if (rows and rows[-1][0] != len(rows) - 1) or (size is not None and len(rows) != size):
        raise RuntimeError(f"entry log of house {house_id} has a gap")
    return [leaf for _, leaf in rows]


async def sign_tree_head(
    session: AsyncSession,
    *,
    house_id: uuid.UUID,
    key: Ed25519PrivateKey,
    now: datetime.datetime,
) -> SignedTreeHead:
    """Signs and stores the head of the house's committed leaves; the stored head if one of
    that size exists already (a head per size, whoever signed first)."""
    leaves = await _leaves(session, house_id=house_id, size=None)
    size = len(leaves)
    root = (
        await asyncio.to_thread(merkle_root, leaves)
        if size > THREAD_THRESHOLD
        else merkle_root(leaves)
    )
    timestamp = whole_milliseconds(now)
    signature = sign_head_bytes(
        key, house_id=house_id, tree_size=size, root=root, timestamp_ms=to_ms(timestamp)
    )
    head_id = await session.scalar(
        insert(SignedTreeHead)
        .values(
            house_id=house_id,
            tree_size=size,
            root=root,
            timestamp=timestamp,
            signature=signature,
            public_key=public_key_bytes(key),
        )
        .on_conflict_do_nothing(index_elements=[SignedTreeHead.house_id, SignedTreeHead.tree_size])
        .returning(SignedTreeHead.id)
    )
    if head_id is not None:
        await record_audit(
            session,
            actor=None,
            action="lottery.entry_log.sign_tree_head",
            resource_name=f"houses/{house_id}",
            after={"tree_size": size, "root": root.hex(), "timestamp_ms": to_ms(timestamp)},
        )
    head = await session.scalar(
        select(SignedTreeHead).where(
            SignedTreeHead.house_id == house_id, SignedTreeHead.tree_size == size
        )
    )
    assert head is not None  # inserted above, or committed by whoever signed this size first
    return head


async def latest_tree_head(session: AsyncSession, *, house_id: uuid.UUID) -> SignedTreeHead | None:
    head: SignedTreeHead | None = await session.scalar(
        select(SignedTreeHead)
        .where(SignedTreeHead.house_id == house_id)
        .order_by(SignedTreeHead.tree_size.desc())
        .limit(1)
    )
    return head


@dataclass(frozen=True, slots=True)
class InclusionProof:
    ticket: Ticket
    leaf_hash: bytes
    audit_path: list[bytes]
    tree_head: SignedTreeHead


async def inclusion_proof(
    session: AsyncSession, *, ticket: Ticket, leaf_hash: bytes
) -> InclusionProof:
    """The audit path of the ticket's leaf to the root of the latest signed head of its house;
    TICKET_NOT_YET_LOGGED (retry after HEAD_INTERVAL) when no signed head covers it yet."""
    head = await latest_tree_head(session, house_id=ticket.house_id)
    if head is None or head.tree_size <= ticket.leaf_index:
        raise TicketNotYetLogged(HEAD_INTERVAL)
    leaves = await _leaves(session, house_id=ticket.house_id, size=head.tree_size)
    if len(leaves) > THREAD_THRESHOLD:
        tree = await asyncio.to_thread(MerkleTree, leaves)
    else:
        tree = MerkleTree(leaves)
    return InclusionProof(
        ticket=ticket,
        leaf_hash=leaf_hash,
        audit_path=tree.inclusion_proof(ticket.leaf_index),
        tree_head=head,
    )
