"""Tickets: the house counters the purchase path moves, issuance into the entry log, and the
owner's reads (GetTicket, ListTickets).

The counters move only by conditional UPDATEs on the house row (SPEC §5):
  reserve  tickets_reserved += q              while ACTIVE, in the sales window, and q fit;
  issue    tickets_sold += q, reserved -= q   RETURNING tickets_sold gives the number range;
  release  tickets_reserved -= q.
The CHECK `tickets_within_total` makes overselling impossible even for a buggy caller, and
`UNIQUE (house_id, number)` makes a number impossible to sell twice. Because the issuing UPDATE
holds the house row's lock until its transaction ends, concurrent issuances commit in number
order: the committed leaves of the entry log always form a gap-free prefix.

These functions run inside the caller's transaction and touch no network; whoever commits a
counter change calls `CatalogueCache.invalidate()` afterwards (sold and available counts are in
the cached catalogue) and publishes the sales-progress event.
"""

from __future__ import annotations

import datetime
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.audit import record_audit
from server.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from server.lottery.catalogue import house_not_found
from server.lottery.draw.merkle import TICKET_SECRET_SIZE, leaf_hashes
from server.lottery.draw.protocol import to_ms
from server.lottery.lifecycle import Event, transition
from server.lottery.models import DrawEntry, House, HouseState, Ticket, TicketState

# States in which sales have ended for good (UPCOMING means "not yet").
_CLOSED_STATES = frozenset({HouseState.CLOSED, HouseState.DRAWN, HouseState.CANCELLED})


def whole_milliseconds(moment: datetime.datetime) -> datetime.datetime:
    """`moment` truncated to whole milliseconds, as DRAW-1 hashes and signs times."""
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


# --- Counters ----------------------------------------------------------------------------------


async def reserve_tickets(session: AsyncSession, *, house_id: uuid.UUID, quantity: int) -> int:
    """Reserves `quantity` tickets (SPEC §5 step 2) in one conditional UPDATE and returns how
    many tickets are still available after it. Refused with the reason PurchaseTickets reports:
    HOUSE_NOT_FOUND, SALES_NOT_OPEN, SALES_CLOSED, or RESOURCE_EXHAUSTED SOLD_OUT with metadata
    `tickets_remaining` when fewer than `quantity` are left. After commit the caller publishes
    `house_events.sales_progress`."""
    remaining = House.total_tickets - House.tickets_sold - House.tickets_reserved
    reserved = await session.scalar(
        update(House)
        .where(
            House.id == house_id,
            House.delete_time.is_(None),
            House.state == HouseState.ACTIVE,
            House.sales_open_time <= func.now(),
            House.sales_close_time > func.now(),
            House.tickets_sold + House.tickets_reserved + quantity <= House.total_tickets,
        )
        .values(tickets_reserved=House.tickets_reserved + quantity)
        .returning(remaining)
    )
    if reserved is not None:
        return int(reserved)
    raise await _why_not_reserved(session, house_id=house_id)


async def _why_not_reserved(
    session: AsyncSession, *, house_id: uuid.UUID
) -> NotFound | FailedPrecondition | ResourceExhausted:
    row = (
        await session.execute(
            select(
                House.state,
                House.sales_open_time <= func.now(),
                House.sales_close_time > func.now(),
                House.total_tickets - House.tickets_sold - House.tickets_reserved,
            ).where(House.id == house_id, House.delete_time.is_(None))
        )
    ).one_or_none()
    if row is None or row[0] is HouseState.DRAFT:
        return house_not_found()
    state, opened, not_closed, remaining = row
    if state is HouseState.UPCOMING or (state is HouseState.ACTIVE and not opened):
        return FailedPrecondition(
            "SALES_NOT_OPEN",
            "ticket sales for this house have not opened yet",
            metadata={"state": state.value, "subject": "sales_open_time"},
        )
    if state in _CLOSED_STATES or (state is HouseState.ACTIVE and not not_closed):
        return FailedPrecondition(
            "SALES_CLOSED",
            "ticket sales for this house have closed",
            metadata={"state": state.value, "subject": "sales_close_time"},
        )
    return ResourceExhausted(
        "SOLD_OUT",
        f"only {max(remaining, 0)} tickets are available",
        metadata={"tickets_remaining": str(max(remaining, 0))},
    )


async def release_reservation(session: AsyncSession, *, house_id: uuid.UUID, quantity: int) -> None:
    """Gives `quantity` reserved tickets back to the house, whatever its state.

    Not idempotent by itself: calling it twice releases twice. The caller makes it happen once
    per order — the UPDATE that sets `orders.reservation_release_time` (only while it is NULL)
    decides, in the same transaction, whether this may run. After commit the caller publishes
    `house_events.sales_progress`."""
    released = await session.scalar(
        update(House)
        .where(House.id == house_id, House.tickets_reserved >= quantity)
        .values(tickets_reserved=House.tickets_reserved - quantity)
        .returning(House.id)
    )
    if released is None:
        raise RuntimeError(f"house {house_id} holds no reservation of {quantity} tickets")


# --- Issuance ----------------------------------------------------------------------------------


async def issue_tickets(
    session: AsyncSession,
    *,
    house_id: uuid.UUID,
    user_id: uuid.UUID,
    order_id: uuid.UUID,
    quantity: int,
    now: datetime.datetime,
) -> list[Ticket]:
    """Turns a reservation of `quantity` into numbered tickets of a paid order (fulfilment,
    SPEC §5 step 4) and appends their leaves to the entry log; the last ticket sold moves the
    house to SOLD_OUT. Returns the tickets by number.

    Only while the house is ACTIVE: after sales closed the entry log is frozen (its final tree
    head fixes the draw), so FAILED_PRECONDITION SALES_CLOSED tells the caller to refund. The
    caller guarantees "once per order" (it holds the order's row lock and checks it is not PAID).
    After its transaction commits, the caller publishes `house_events.tickets_issued` (with
    `sold_out` when the last ticket's number is `total_tickets`); nothing is published here.
    """
    sold_and_total = (
        await session.execute(
            update(House)
            .where(
                House.id == house_id,
                House.state == HouseState.ACTIVE,
                House.tickets_reserved >= quantity,
            )
            .values(
                tickets_sold=House.tickets_sold + quantity,
                tickets_reserved=House.tickets_reserved - quantity,
            )
            .returning(House.tickets_sold, House.total_tickets)
        )
    ).one_or_none()
    if sold_and_total is None:
        raise await _why_not_issued(session, house_id=house_id, quantity=quantity)
    sold, total = sold_and_total
    numbers = range(sold - quantity + 1, sold + 1)
    purchase_time = whole_milliseconds(now)
    time_ms = to_ms(purchase_time)
    secret_ids = [secrets.token_bytes(TICKET_SECRET_SIZE) for _ in numbers]
    tickets = list(
        (
            await session.scalars(
                insert(Ticket)
                .values(
                    [
                        {
                            "house_id": house_id,
                            "order_id": order_id,
                            "user_id": user_id,
                            "number": number,
                            "secret_id": secret_id,
                            "purchase_time": purchase_time,
                        }
                        for number, secret_id in zip(numbers, secret_ids, strict=True)
                    ]
                )
                .returning(Ticket)
            )
        ).all()
    )
    tickets.sort(key=lambda ticket: ticket.number)
    leaves = leaf_hashes(house_id, ((t.number, t.secret_id, time_ms) for t in tickets))
    await session.execute(
        insert(DrawEntry).values(
            [
                {
                    "house_id": house_id,
                    "leaf_index": ticket.number - 1,
                    "ticket_id": ticket.id,
                    "leaf_hash": leaf,
                }
                for ticket, leaf in zip(tickets, leaves, strict=True)
            ]
        )
    )
    await record_audit(
        session,
        actor=None,
        action="lottery.tickets.issue",
        resource_name=f"houses/{house_id}",
        after={
            "order": str(order_id),
            "user": str(user_id),
            "first_number": numbers[0],
            "last_number": numbers[-1],
            "tickets_sold": sold,
        },
    )
    if sold == total:
        await transition(
            session,
            house_id=house_id,
            event=Event.SELL_OUT,
            target=HouseState.SOLD_OUT,
            actor=None,
            audit={"tickets_sold": sold},
        )
    return tickets


async def _why_not_issued(
    session: AsyncSession, *, house_id: uuid.UUID, quantity: int
) -> Exception:
    state = await session.scalar(select(House.state).where(House.id == house_id))
    if state is None:
        return house_not_found()
    if state is not HouseState.ACTIVE:
        return FailedPrecondition(
            "SALES_CLOSED",
            "ticket sales for this house have closed; its entry log is frozen",
            metadata={"state": state.value, "subject": "state"},
        )
    return RuntimeError(f"house {house_id} holds no reservation of {quantity} tickets")


# --- Owner reads -------------------------------------------------------------------------------


def ticket_not_found() -> NotFound:
    return NotFound("TICKET_NOT_FOUND", "the user has no such ticket")


@dataclass(frozen=True, slots=True)
class IssuedTicket:
    """A ticket with its entry-log leaf."""

    ticket: Ticket
    leaf_hash: bytes


def _with_leaf() -> Any:
    return select(Ticket, DrawEntry.leaf_hash).join(DrawEntry, DrawEntry.ticket_id == Ticket.id)


async def get_ticket(
    session: AsyncSession, *, user_id: uuid.UUID, ticket_id: uuid.UUID
) -> IssuedTicket:
    """The user's ticket; TICKET_NOT_FOUND for anyone else's (same answer as a missing one)."""
    row = (
        await session.execute(_with_leaf().where(Ticket.id == ticket_id, Ticket.user_id == user_id))
    ).one_or_none()
    if row is None:
        raise ticket_not_found()
    return IssuedTicket(ticket=row[0], leaf_hash=row[1])


async def leaf_hashes_of(
    session: AsyncSession, ticket_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, bytes]:
    """The entry-log leaf of each ticket (tickets issued together, e.g. by one purchase)."""
    rows = (
        await session.execute(
            select(DrawEntry.ticket_id, DrawEntry.leaf_hash).where(
                DrawEntry.ticket_id.in_(list(ticket_ids))
            )
        )
    ).all()
    return {ticket_id: leaf for ticket_id, leaf in rows}


@dataclass(frozen=True, slots=True)
class TicketFilter:
    house_id: uuid.UUID | None = None
    order_id: uuid.UUID | None = None
    states: frozenset[TicketState] = frozenset()


@dataclass(frozen=True, slots=True)
class TicketPage:
    tickets: list[IssuedTicket]
    next_cursor: dict[str, Any] | None
    total_size: int


def _page_token_invalid() -> InvalidArgument:
    return InvalidArgument(
        "PAGE_TOKEN_INVALID",
        "page_token is not valid for this request; start again without it",
        violations=[FieldViolation("page_token", "not a token issued for this request")],
    )


async def list_tickets(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    spec: TicketFilter,
    cursor: dict[str, Any] | None,
    page_size: int,
) -> TicketPage:
    """The user's tickets, newest purchase first, then by ticket number (then id, unique)."""
    conditions = [Ticket.user_id == user_id]
    if spec.house_id is not None:
        conditions.append(Ticket.house_id == spec.house_id)
    if spec.order_id is not None:
        conditions.append(Ticket.order_id == spec.order_id)
    if spec.states:
        conditions.append(Ticket.state.in_(sorted(spec.states)))
    total = await session.scalar(select(func.count()).select_from(Ticket).where(*conditions))
    query = (
        _with_leaf()
        .where(*conditions)
        .order_by(Ticket.purchase_time.desc(), Ticket.number.asc(), Ticket.id.asc())
        .limit(page_size + 1)
    )
    if cursor is not None:
        try:
            after_time = datetime.datetime.fromisoformat(str(cursor["t"]))
            after_number = int(cursor["n"])
            after_id = uuid.UUID(str(cursor["id"]))
        except (KeyError, ValueError, TypeError):
            raise _page_token_invalid() from None
        query = query.where(
            or_(
                Ticket.purchase_time < after_time,
                and_(
                    Ticket.purchase_time == after_time,
                    tuple_(Ticket.number, Ticket.id) > tuple_(after_number, after_id),
                ),
            )
        )
    rows: Sequence[Any] = (await session.execute(query)).all()
    page = [IssuedTicket(ticket=row[0], leaf_hash=row[1]) for row in rows[:page_size]]
    next_cursor = None
    if len(rows) > page_size:
        last = page[-1].ticket
        next_cursor = {"t": last.purchase_time.isoformat(), "n": last.number, "id": str(last.id)}
    return TicketPage(tickets=page, next_cursor=next_cursor, total_size=int(total or 0))
