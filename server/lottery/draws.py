"""DRAW-1 on the database side (SPEC §6): the manifest signed at publish, the freeze at sales
close, the draw's completion, and the public reads.

Every function runs inside the caller's transaction and touches no network: fetching the
beacon round happens between transactions (server/lottery/scheduler.py orchestrates). The
inputs of a draw are fixed before anything random is known — the manifest fixes the beacon
round R at publication, the freeze fixes the entries (the final signed tree head) before R's
time — so an interrupted or repeated draw recomputes the same result from the stored inputs.

Lock order, everywhere: the draw row first, then the house row. `completion` and
`cancellation` both take the draw row `FOR UPDATE` under a short `lock_timeout`, so a draw is
completed once and a lottery cannot be cancelled while its winner is being recorded.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import and_, case, func, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from server.core.audit import record_audit
from server.core.context import Principal
from server.core.errors import Aborted, FailedPrecondition, NotFound
from server.core.models import Outbox
from server.core.outbox import enqueue
from server.core.pagination import Page, PageTokens, keyset_page
from server.core.settings import DrawConfig
from server.lottery import entrylog, refunds
from server.lottery.catalogue import get_house, visible
from server.lottery.draw import protocol
from server.lottery.lifecycle import Event, transition
from server.lottery.models import (
    Draw,
    DrawEntry,
    DrawState,
    House,
    HouseState,
    SignedTreeHead,
    Ticket,
    TicketState,
)
from server.lottery.tickets import whole_milliseconds

# Waiting longer than this for another transaction's draw lock means a draw is being recorded.
LOCK_TIMEOUT: Final = "3s"
MIN_PARTICIPATION_REASON: Final = "MIN_PARTICIPATION_NOT_REACHED"
BEACON_DEADLINE_REASON: Final = "BEACON_UNAVAILABLE_PAST_DEADLINE"
_LOCK_NOT_AVAILABLE: Final = "55P03"


@dataclass(frozen=True, slots=True)
class DrawSigner:
    """What a manifest needs besides the house: the beacon chain and the transparency key."""

    config: DrawConfig
    key: Ed25519PrivateKey

    @property
    def public_key(self) -> bytes:
        return entrylog.public_key_bytes(self.key)


def draw_not_found() -> NotFound:
    return NotFound("DRAW_NOT_FOUND", "the house was never published, so it has no draw")


def draw_not_completed(draw: Draw) -> FailedPrecondition:
    return FailedPrecondition(
        "DRAW_NOT_COMPLETED",
        "the draw has not been conducted yet",
        metadata={"state": draw.state.value, "subject": "draw"},
    )


def draw_in_progress() -> Aborted:
    return Aborted(
        "DRAW_IN_PROGRESS", "the draw is being recorded right now; retry to see the outcome"
    )


# --- Manifest ------------------------------------------------------------------------------------


def fallback_text(*, beacon_round: int, deadline: timedelta) -> str:
    hours = deadline.total_seconds() / 3600
    return (
        f"If round {beacon_round} of this beacon chain cannot be fetched and verified within "
        f"{hours:g} hours of its time, the lottery is cancelled and every ticket refunded; no "
        "other source of randomness is ever used."
    )


def build_manifest(
    signer: DrawSigner,
    *,
    house_id: uuid.UUID,
    total_tickets: int,
    sales_close_time: datetime.datetime,
    published_time: datetime.datetime,
) -> dict[str, Any]:
    """The manifest of SPEC §6.1: R is the first round at or after sales close + the delay."""
    config = signer.config
    close_ms = protocol.to_ms(whole_milliseconds(sales_close_time))
    delay_ms = int(config.delay.total_seconds() * 1000)
    beacon_round = protocol.target_round(
        not_before_ms=close_ms + delay_ms,
        genesis_time_s=config.genesis_time,
        period_s=config.period_seconds,
    )
    return protocol.build_manifest(
        house_id=house_id,
        total_tickets=total_tickets,
        sales_close_time_ms=close_ms,
        beacon_chain_hash=config.chain_hash,
        beacon_round=beacon_round,
        beacon_public_key=config.public_key.hex(),
        beacon_period_s=config.period_seconds,
        beacon_genesis_time_s=config.genesis_time,
        fallback=fallback_text(beacon_round=beacon_round, deadline=config.beacon_deadline),
        published_time_ms=protocol.to_ms(whole_milliseconds(published_time)),
    )


def _manifest_columns(signer: DrawSigner, manifest: Mapping[str, Any]) -> dict[str, Any]:
    beacon_round = int(manifest["beacon_round"])
    beacon_time_ms = protocol.round_time_ms(
        beacon_round,
        genesis_time_s=int(manifest["beacon_genesis_time_s"]),
        period_s=int(manifest["beacon_period_s"]),
    )
    return {
        "manifest_json": protocol.canonical_json(manifest).decode(),
        "manifest_signature": protocol.sign_manifest(signer.key, manifest),
        "transparency_public_key": signer.public_key,
        "beacon_chain_hash": str(manifest["beacon_chain_hash"]),
        "beacon_round": beacon_round,
        "beacon_time": protocol.from_ms(beacon_time_ms),
        "reserves_requested": signer.config.reserves,
    }


async def create_draw(
    session: AsyncSession, signer: DrawSigner, *, house: House, now: datetime.datetime
) -> Draw:
    """The house's draw with its signed manifest, in the publishing transaction."""
    assert house.sales_close_time is not None
    manifest = build_manifest(
        signer,
        house_id=house.id,
        total_tickets=house.total_tickets,
        sales_close_time=house.sales_close_time,
        published_time=now,
    )
    draw = Draw(house_id=house.id, **_manifest_columns(signer, manifest))
    session.add(draw)
    await session.flush()
    await record_audit(
        session,
        actor=None,
        action="lottery.draw.sign_manifest",
        resource_name=f"houses/{house.id}/draw",
        after={"manifest": manifest},
    )
    return draw


async def reissue_manifest(
    session: AsyncSession,
    signer: DrawSigner,
    *,
    house_id: uuid.UUID,
    total_tickets: int,
    sales_close_time: datetime.datetime,
    now: datetime.datetime,
) -> None:
    """Re-signs the manifest of an UPCOMING house whose terms changed (no ticket exists yet)."""
    manifest = build_manifest(
        signer,
        house_id=house_id,
        total_tickets=total_tickets,
        sales_close_time=sales_close_time,
        published_time=now,
    )
    await session.execute(
        update(Draw)
        .where(Draw.house_id == house_id, Draw.state == DrawState.SCHEDULED)
        .values(**_manifest_columns(signer, manifest))
    )
    await record_audit(
        session,
        actor=None,
        action="lottery.draw.reissue_manifest",
        resource_name=f"houses/{house_id}/draw",
        after={"manifest": manifest},
    )


# --- Loading and locking -------------------------------------------------------------------------


async def _lock_timeout(session: AsyncSession) -> None:
    await session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))


async def lock_draw(session: AsyncSession, *, house_id: uuid.UUID) -> Draw | None:
    """The house's draw locked for update (None if it has none); DRAW_IN_PROGRESS when another
    transaction holds it longer than LOCK_TIMEOUT."""
    await _lock_timeout(session)
    try:
        draw: Draw | None = await session.scalar(
            select(Draw)
            .options(selectinload(Draw.final_tree_head))
            .where(Draw.house_id == house_id)
            .with_for_update(of=Draw)
            .execution_options(populate_existing=True)
        )
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
            raise draw_in_progress() from None
        raise
    return draw


async def find_draw(session: AsyncSession, *, house_id: uuid.UUID) -> Draw | None:
    """The house's draw with its final tree head, as the mapping shows it; None before publish."""
    draw: Draw | None = await session.scalar(
        select(Draw).options(selectinload(Draw.final_tree_head)).where(Draw.house_id == house_id)
    )
    return draw


async def get_draw(session: AsyncSession, *, house_id: uuid.UUID, admin: bool) -> Draw:
    """The draw of a house visible to the caller: HOUSE_NOT_FOUND as GetHouse decides, then
    DRAW_NOT_FOUND when it was never published."""
    await get_house(session, house_id=house_id, admin=admin)
    draw = await find_draw(session, house_id=house_id)
    if draw is None:
        raise draw_not_found()
    return draw


# --- Freeze --------------------------------------------------------------------------------------


class FreezeOutcome(enum.Enum):
    FROZEN = "frozen"
    CANCELLED = "cancelled"  # below minimum participation
    NOT_DUE = "not_due"  # sales still open
    ALREADY = "already"  # frozen, completed or cancelled before


@dataclass(frozen=True, slots=True)
class Freeze:
    outcome: FreezeOutcome
    # The house's state before this call (for the state-changed event) and after it.
    previous_state: HouseState | None = None
    house: House | None = None
    tree_head: SignedTreeHead | None = None


async def freeze(
    session: AsyncSession,
    signer: DrawSigner,
    *,
    house_id: uuid.UUID,
    now: datetime.datetime,
) -> Freeze:
    """Closes sales that reached their close time, then freezes the entry log of a closed or
    sold-out house (the final signed tree head), or cancels the lottery when fewer tickets sold
    than its minimum participation (refunds requested in the same transaction).

    A payment confirmed after this commits finds the house no longer ACTIVE and is refunded
    (`issue_tickets` refuses SALES_CLOSED), so nothing enters the log after its final head.
    """
    draw = await lock_draw(session, house_id=house_id)
    if draw is None:
        raise draw_not_found()
    if draw.state is not DrawState.SCHEDULED:
        return Freeze(FreezeOutcome.ALREADY)
    house = await session.scalar(
        select(House)
        .where(House.id == house_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if house is None or house.delete_time is not None:
        raise draw_not_found()
    previous = house.state
    assert house.sales_close_time is not None
    if house.state is HouseState.ACTIVE and house.sales_close_time <= now:
        house = await transition(
            session,
            house_id=house_id,
            event=Event.CLOSE_SALES,
            target=HouseState.CLOSED,
            actor=None,
            audit={"tickets_sold": house.tickets_sold},
        )
    if house.state not in (HouseState.CLOSED, HouseState.SOLD_OUT):
        return Freeze(FreezeOutcome.NOT_DUE)
    required = max(house.min_participation, 1)
    if house.tickets_sold < required:
        reason = (
            f"{MIN_PARTICIPATION_REASON}: {house.tickets_sold} of the {required} tickets needed "
            "were sold"
        )
        cancelled = await cancel_lottery(
            session, house_id=house_id, reason=reason, actor=None, draw=draw, now=now
        )
        return Freeze(FreezeOutcome.CANCELLED, previous_state=previous, house=cancelled)
    head = await entrylog.sign_tree_head(session, house_id=house_id, key=signer.key, now=now)
    if head.tree_size != house.tickets_sold:
        raise RuntimeError(
            f"house {house_id}: {house.tickets_sold} tickets sold but {head.tree_size} leaves"
        )
    await session.execute(
        update(Draw)
        .where(Draw.id == draw.id)
        .values(state=DrawState.FROZEN, freeze_time=now, final_tree_head_id=head.id)
    )
    await record_audit(
        session,
        actor=None,
        action="lottery.draw.freeze",
        resource_name=f"houses/{house_id}/draw",
        after={"tree_size": head.tree_size, "root": head.root.hex()},
    )
    return Freeze(FreezeOutcome.FROZEN, previous_state=previous, house=house, tree_head=head)


# --- Cancellation --------------------------------------------------------------------------------


async def cancel_lottery(
    session: AsyncSession,
    *,
    house_id: uuid.UUID,
    reason: str,
    actor: Principal | None,
    draw: Draw | None,
    now: datetime.datetime,
) -> House:
    """CANCELLED house, CANCELLED draw, refunds requested — one transaction. The caller holds
    the draw's lock (`lock_draw`) when the house has a draw."""
    house = await transition(
        session,
        house_id=house_id,
        event=Event.CANCEL,
        target=HouseState.CANCELLED,
        actor=actor,
        changes={"cancel_time": now, "cancel_reason": reason},
        audit={"cancel_reason": reason},
    )
    if draw is not None:
        await session.execute(
            update(Draw)
            .where(Draw.id == draw.id)
            .values(
                state=DrawState.CANCELLED,
                fallback_applied=reason.startswith(BEACON_DEADLINE_REASON),
            )
        )
    await refunds.request_house_refunds(session, house_id=house_id, reason=reason)
    return house


# --- Completion ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DrawInputs:
    """Everything the result depends on, read from the frozen draw."""

    draw_id: uuid.UUID
    house_id: uuid.UUID
    manifest: dict[str, Any]
    beacon_round: int
    beacon_public_key: bytes
    beacon_time: datetime.datetime
    tree_head: SignedTreeHead
    beacon_signature: bytes | None
    reserves: int


def inputs_of(draw: Draw) -> DrawInputs:
    assert draw.final_tree_head is not None
    manifest = json.loads(draw.manifest_json)
    return DrawInputs(
        draw_id=draw.id,
        house_id=draw.house_id,
        manifest=manifest,
        beacon_round=draw.beacon_round,
        beacon_public_key=bytes.fromhex(manifest["beacon_public_key"]),
        beacon_time=draw.beacon_time,
        tree_head=draw.final_tree_head,
        beacon_signature=draw.beacon_signature,
        reserves=draw.reserves_requested,
    )


async def frozen_leaves(session: AsyncSession, inputs: DrawInputs) -> list[bytes]:
    rows = (
        await session.scalars(
            select(DrawEntry.leaf_hash)
            .where(
                DrawEntry.house_id == inputs.house_id,
                DrawEntry.leaf_index < inputs.tree_head.tree_size,
            )
            .order_by(DrawEntry.leaf_index)
        )
    ).all()
    return list(rows)


async def store_beacon(
    session: AsyncSession, *, draw_id: uuid.UUID, signature: bytes, randomness: bytes
) -> bool:
    """Keeps a verified round (once); True if this call stored it."""
    stored = await session.scalar(
        update(Draw)
        .where(Draw.id == draw_id, Draw.beacon_signature.is_(None))
        .values(beacon_signature=signature, beacon_randomness=randomness)
        .returning(Draw.id)
    )
    return stored is not None


async def record_failure(session: AsyncSession, *, draw_id: uuid.UUID, error: str) -> None:
    await session.execute(
        update(Draw)
        .where(Draw.id == draw_id, Draw.state == DrawState.FROZEN)
        .values(attempt_count=Draw.attempt_count + 1, last_error=error[:2000])
    )


async def complete_draw(
    session: AsyncSession,
    *,
    inputs: DrawInputs,
    leaves: Sequence[bytes],
    signature: bytes,
    result: protocol.DrawResult,
    actor: Principal | None,
    now: datetime.datetime,
) -> tuple[Draw, HouseState | None]:
    """Records the result once: the completed draw (and the house's previous state when this
    call completed it, None when another call had already)."""
    draw = await lock_draw(session, house_id=inputs.house_id)
    assert draw is not None
    if draw.state is DrawState.COMPLETED:
        return draw, None
    if draw.state is not DrawState.FROZEN or draw.final_tree_head_id != inputs.tree_head.id:
        raise FailedPrecondition(
            "HOUSE_CANCELLED" if draw.state is DrawState.CANCELLED else "SALES_NOT_CLOSED",
            f"the draw is {draw.state.value}, not FROZEN",
            metadata={"state": draw.state.value, "subject": "draw"},
        )
    if result.root != inputs.tree_head.root:
        raise RuntimeError(f"house {inputs.house_id}: the stored leaves do not match the head")
    transcript = protocol.build_transcript(
        manifest=inputs.manifest,
        manifest_signature=draw.manifest_signature,
        transparency_public_key=inputs.tree_head.public_key,
        leaves=leaves,
        root=result.root,
        tree_head_timestamp_ms=protocol.to_ms(inputs.tree_head.timestamp),
        tree_head_signature=inputs.tree_head.signature,
        beacon=protocol.Beacon(
            chain_hash=draw.beacon_chain_hash, round=inputs.beacon_round, signature=signature
        ),
        seed=result.seed,
        selection=result.selection,
        reserves_requested=inputs.reserves,
    )
    transcript_json = protocol.canonical_json(transcript)
    winners = transcript["winners"]
    house = await session.scalar(select(House).where(House.id == inputs.house_id).with_for_update())
    assert house is not None
    previous = house.state
    await transition(
        session,
        house_id=inputs.house_id,
        event=Event.RECORD_DRAW,
        target=HouseState.DRAWN,
        actor=actor,
        audit={"winner_ticket_number": winners[0]["ticket_number"]},
    )
    await session.execute(
        update(Draw)
        .where(Draw.id == draw.id)
        .values(
            state=DrawState.COMPLETED,
            beacon_signature=signature,
            beacon_randomness=result.randomness,
            seed=result.seed,
            words=transcript["words"],
            winners=winners,
            transcript_json=transcript_json.decode(),
            transcript_sha256=hashlib.sha256(transcript_json).digest(),
            conduct_time=now,
        )
    )
    won = await _settle_tickets(session, house_id=inputs.house_id, winners=winners)
    await _tell_participants(session, house=house, won=won, winners=winners)
    await record_audit(
        session,
        actor=actor,
        action="lottery.draw.complete",
        resource_name=f"houses/{inputs.house_id}/draw",
        after={"seed": result.seed.hex(), "winners": winners},
    )
    completed = await lock_draw(session, house_id=inputs.house_id)
    assert completed is not None
    return completed, previous


async def _settle_tickets(
    session: AsyncSession, *, house_id: uuid.UUID, winners: Sequence[Mapping[str, Any]]
) -> Ticket | None:
    """WON for the first selected ticket still valid, RESERVE for the other selected ones,
    NOT_WON for the rest. A ticket voided by a refund keeps its leaf (the log is append-only)
    and can be selected; the prize then goes to the next valid ticket in rank order."""
    numbers = [int(winner["ticket_number"]) for winner in winners]
    voided = set(
        (
            await session.scalars(
                select(Ticket.number).where(
                    Ticket.house_id == house_id,
                    Ticket.number.in_(numbers),
                    Ticket.state == TicketState.VOIDED,
                )
            )
        ).all()
    )
    valid = [number for number in numbers if number not in voided]
    won = valid[0] if valid else None
    reserves = valid[1:]
    await session.execute(
        update(Ticket)
        .where(Ticket.house_id == house_id, Ticket.state == TicketState.ACTIVE)
        .values(
            state=case(
                (Ticket.number == won, TicketState.WON.value),
                (Ticket.number.in_(reserves), TicketState.RESERVE.value),
                else_=TicketState.NOT_WON.value,
            )
        )
    )
    if won is None:
        return None
    ticket: Ticket | None = await session.scalar(
        select(Ticket).where(Ticket.house_id == house_id, Ticket.number == won)
    )
    return ticket


async def _tell_participants(
    session: AsyncSession, *, house: House, won: Ticket | None, winners: Sequence[Mapping[str, Any]]
) -> None:
    """The result for every participant (SPEC §7), in the completing transaction: `draw_won`
    for the winner, `draw_result` once for each other buyer (one set-based insert, however
    many buyers)."""
    draw = f"houses/{house.id}/draw"
    if won is not None:
        await enqueue(
            session,
            topic="notify.draw_won",
            payload={
                "ticket": f"users/{won.user_id}/tickets/{won.id}",
                "ticket_number": won.number,
                "house_title": house.title,
                "draw": draw,
            },
            user_id=won.user_id,
            dedupe_key=f"draw_won:{house.id}",
        )
    winning_number = won.number if won is not None else int(winners[0]["ticket_number"])
    buyers = select(Ticket.user_id).where(Ticket.house_id == house.id).distinct().subquery()
    others = select(
        literal("notify.draw_result"),
        buyers.c.user_id,
        func.jsonb_build_object(
            "draw", draw, "house_title", house.title, "winning_number", winning_number
        ),
        func.concat(f"draw_result:{house.id}:", buyers.c.user_id),
    )
    if won is not None:
        others = others.where(buyers.c.user_id != won.user_id)
    await session.execute(
        insert(Outbox)
        .from_select(["topic", "user_id", "payload", "dedupe_key"], others)
        .on_conflict_do_nothing(index_elements=[Outbox.dedupe_key])
    )


# --- Reads ---------------------------------------------------------------------------------------

LISTED_BY_DEFAULT: Final = frozenset({DrawState.COMPLETED})


async def list_draws(
    session: AsyncSession,
    *,
    states: frozenset[DrawState],
    admin: bool,
    page_size: int,
    page_token: str,
    tokens: PageTokens,
) -> Page[Draw]:
    """Draws newest first by their beacon round's time, then by house (unique)."""
    wanted = states or LISTED_BY_DEFAULT
    query = (
        select(Draw)
        .options(selectinload(Draw.final_tree_head))
        .join(House, House.id == Draw.house_id)
        .where(Draw.state.in_(sorted(wanted)), visible(admin=admin))
    )
    return await keyset_page(
        session,
        query,
        keys=[Draw.beacon_time, Draw.house_id],
        key_of=lambda draw: (draw.beacon_time, draw.house_id),
        descending=True,
        requested_size=page_size,
        token=page_token,
        tokens=tokens,
        filters={"states": sorted(wanted), "admin": admin, "list": "draws"},
    )


def due_draws_query(now: datetime.datetime) -> Any:
    """Frozen draws whose beacon round and announced draw time have both come."""
    return (
        select(Draw.house_id)
        .join(House, House.id == Draw.house_id)
        .where(
            Draw.state == DrawState.FROZEN,
            Draw.beacon_time <= now,
            House.draw_time <= now,
        )
        .order_by(Draw.beacon_time)
    )


def due_freezes_query(now: datetime.datetime) -> Any:
    """Scheduled draws of houses whose sales ended (sold out, or past their close time)."""
    return (
        select(House.id)
        .join(Draw, Draw.house_id == House.id)
        .where(
            Draw.state == DrawState.SCHEDULED,
            House.delete_time.is_(None),
            or_(
                House.state.in_([HouseState.SOLD_OUT, HouseState.CLOSED]),
                and_(House.state == HouseState.ACTIVE, House.sales_close_time <= now),
            ),
        )
        .order_by(House.sales_close_time)
    )
