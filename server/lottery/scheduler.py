"""The lottery scheduler: opens and closes sales on time, freezes entry logs, cancels lotteries
below their minimum participation, signs tree heads of open lotteries, and conducts draws when
their beacon round is due — plus `conduct`, the one code path ConductDraw shares with it.

Runs as two jobs (server/core/jobs.py), so each round runs on one replica at a time. Each house
is handled in its own short transaction, and a failing house is logged and retried next round
without holding up the others. Network I/O (the drand round) happens between transactions. A
draw is completed once even when an admin's ConductDraw races the scheduler or another replica:
the result is a pure function of the stored inputs and only the first completion is recorded.
Events and cache invalidation follow each commit.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2
from sqlalchemy import func, select

from amesa.lottery.v1 import lottery_service_pb2 as pb
from server.core.context import Principal
from server.core.db import Database
from server.core.deps import Deps
from server.core.errors import AmesaError, FailedPrecondition, Unavailable
from server.core.events import EventBus
from server.lottery import draws, entrylog, house_events, mapping
from server.lottery.cache import CatalogueCache
from server.lottery.catalogue import house_not_found
from server.lottery.draw import protocol
from server.lottery.draw.beacon import (
    BeaconClient,
    BeaconError,
    BeaconInvalid,
    RoundNotYetAvailable,
)
from server.lottery.lifecycle import Event, transition, utcnow
from server.lottery.models import Draw, DrawEntry, DrawState, House, HouseState, SignedTreeHead
from server.lottery.tickets import whole_milliseconds

log = logging.getLogger("amesa.lottery.scheduler")

SCHEDULER_JOB: Final = "lottery.scheduler"
TREE_HEAD_JOB: Final = "lottery.tree_heads"
# A draw over a million tickets hashes for a few seconds; the beacon call has its own timeout.
_JOB_TIMEOUT: Final = timedelta(minutes=5)


class BeaconRoundPending(FailedPrecondition):
    """FAILED_PRECONDITION BEACON_ROUND_PENDING with RetryInfo until round R's time."""

    def __init__(self, draw: Draw, wait: timedelta) -> None:
        super().__init__(
            "BEACON_ROUND_PENDING",
            f"beacon round {draw.beacon_round} is not published yet",
            metadata={
                "beacon_round": str(draw.beacon_round),
                "beacon_time": draw.beacon_time.isoformat(),
                "subject": "beacon",
            },
        )
        self.wait = wait

    def details(self) -> list[any_pb2.Any]:
        delay = duration_pb2.Duration()
        delay.FromTimedelta(max(self.wait, timedelta(seconds=1)))
        retry = any_pb2.Any()
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        return [*super().details(), retry]


def _beacon_unavailable(detail: str) -> Unavailable:
    return Unavailable("BEACON_UNAVAILABLE", f"the drand beacon could not be reached: {detail}")


def _beacon_invalid(detail: str) -> Unavailable:
    return Unavailable("BEACON_INVALID", f"the drand endpoint returned an invalid round: {detail}")


def _cancelled_error(house: House) -> FailedPrecondition:
    reason = house.cancel_reason or ""
    if reason.startswith(draws.MIN_PARTICIPATION_REASON):
        return FailedPrecondition(
            "MIN_PARTICIPATION_NOT_REACHED",
            "fewer tickets were sold than the minimum participation; the lottery was cancelled "
            "and is refunded instead of drawn",
            metadata={"state": house.state.value, "subject": "state"},
        )
    return FailedPrecondition(
        "HOUSE_CANCELLED",
        "the lottery was cancelled",
        metadata={"state": house.state.value, "subject": "state"},
    )


@dataclass
class Scheduler:
    database: Database
    events: EventBus
    cache: CatalogueCache
    signer: draws.DrawSigner

    @classmethod
    def from_deps(cls, deps: Deps) -> Scheduler:
        return cls(
            database=deps.database,
            events=deps.events,
            cache=CatalogueCache(deps.redis),
            signer=draws.DrawSigner(config=deps.settings.draw, key=deps.transparency_key),
        )

    # --- Jobs --------------------------------------------------------------------------------

    async def run(self, _database: Database | None = None) -> None:
        """One scheduler round: open, close/freeze, then draw whatever is due."""
        await self.open_due_sales()
        await self.freeze_due()
        await self.conduct_due_draws()

    async def sign_tree_heads(self, _database: Database | None = None) -> None:
        """A signed head for every open lottery whose log grew since its latest head, so a
        buyer's inclusion proof is available within one interval."""
        newest = (
            select(func.max(SignedTreeHead.tree_size))
            .where(SignedTreeHead.house_id == House.id)
            .scalar_subquery()
        )
        logged = select(func.count()).where(DrawEntry.house_id == House.id).scalar_subquery()
        query = select(House.id).where(
            House.state.in_([HouseState.ACTIVE, HouseState.SOLD_OUT, HouseState.CLOSED]),
            logged > func.coalesce(newest, -1),
        )
        async with self.database.session(system=True) as session:
            house_ids = list((await session.scalars(query)).all())
        for house_id in house_ids:
            try:
                async with self.database.session(system=True) as session:
                    await entrylog.sign_tree_head(
                        session, house_id=house_id, key=self.signer.key, now=utcnow()
                    )
            except Exception:
                log.exception("house %s: could not sign a tree head", house_id)

    async def open_due_sales(self) -> None:
        query = select(House.id).where(
            House.state == HouseState.UPCOMING,
            House.delete_time.is_(None),
            House.sales_open_time <= func.now(),
        )
        async with self.database.session(system=True) as session:
            house_ids = list((await session.scalars(query)).all())
        for house_id in house_ids:
            try:
                async with self.database.session(system=True) as session:
                    house = await transition(
                        session,
                        house_id=house_id,
                        event=Event.OPEN_SALES,
                        target=HouseState.ACTIVE,
                        actor=None,
                    )
            except FailedPrecondition:
                continue  # cancelled or opened meanwhile
            except Exception:
                log.exception("house %s: could not open sales", house_id)
                continue
            await self.cache.invalidate()
            await house_events.state_changed(self.events, house, previous=HouseState.UPCOMING)

    async def freeze_due(self) -> None:
        async with self.database.session(system=True) as session:
            house_ids = list((await session.scalars(draws.due_freezes_query(utcnow()))).all())
        for house_id in house_ids:
            try:
                await self.freeze(house_id)
            except Exception:
                log.exception("house %s: could not close and freeze", house_id)

    async def conduct_due_draws(self) -> None:
        async with self.database.session(system=True) as session:
            house_ids = list((await session.scalars(draws.due_draws_query(utcnow()))).all())
        for house_id in house_ids:
            try:
                await self.conduct(house_id, actor=None)
            except AmesaError as error:
                log.warning("house %s: draw not conducted yet: %s", house_id, error)
            except Exception:
                log.exception("house %s: the draw failed; retrying next round", house_id)

    # --- One house ---------------------------------------------------------------------------

    async def freeze(self, house_id: uuid.UUID) -> draws.Freeze:
        async with self.database.session(system=True) as session:
            outcome = await draws.freeze(session, self.signer, house_id=house_id, now=_now())
        await self._after_freeze(outcome)
        return outcome

    async def _after_freeze(self, outcome: draws.Freeze) -> None:
        house = outcome.house
        if house is None:
            return
        await self.cache.invalidate()
        if outcome.outcome is draws.FreezeOutcome.CANCELLED:
            await house_events.cancelled(self.events, house)
            return
        if outcome.previous_state is HouseState.ACTIVE:
            await house_events.state_changed(self.events, house, previous=HouseState.ACTIVE)
        if outcome.tree_head is not None:
            await house_events.entry_log_frozen(self.events, house, tree_head=outcome.tree_head)

    async def conduct(self, house_id: uuid.UUID, *, actor: Principal | None) -> Draw:
        """Conducts the house's draw, or returns it if completed. Raises the ConductDraw
        errors (SALES_NOT_CLOSED, HOUSE_CANCELLED, MIN_PARTICIPATION_NOT_REACHED,
        BEACON_ROUND_PENDING, BEACON_UNAVAILABLE, BEACON_INVALID, DRAW_IN_PROGRESS)."""
        inputs = await self._frozen_inputs(house_id)
        if isinstance(inputs, Draw):
            return inputs
        signature = inputs.beacon_signature
        if signature is None:
            signature = await self._fetch_beacon(inputs)
        async with self.database.session(system=True) as session:
            leaves = await draws.frozen_leaves(session, inputs)
        result = await self._compute(inputs, leaves, signature)
        async with self.database.session(system=True) as session:
            draw, previous = await draws.complete_draw(
                session,
                inputs=inputs,
                leaves=leaves,
                signature=signature,
                result=result,
                actor=actor,
                now=_now(),
            )
            house = await session.get(House, house_id, populate_existing=True)
            assert house is not None
        if previous is not None:
            log.info("house %s: drawn, winner ticket %s", house_id, draw.winners)
            await self.cache.invalidate()
            await house_events.state_changed(self.events, house, previous=previous)
            await house_events.winner_drawn(
                self.events, house, winners=mapping.draw_winners_to_proto(draw)
            )
        return draw

    async def _frozen_inputs(self, house_id: uuid.UUID) -> draws.DrawInputs | Draw:
        """The inputs of a FROZEN draw whose round is due (freezing first if sales ended), or
        the COMPLETED draw."""
        async with self.database.session(system=True) as session:
            house = await session.get(House, house_id)
            if house is None or house.delete_time is not None:
                raise house_not_found()
            draw = await session.scalar(select(Draw.state).where(Draw.house_id == house_id))
        if draw is None:
            raise draws.draw_not_found()
        if draw is DrawState.SCHEDULED:
            outcome = await self.freeze(house_id)
            if outcome.outcome is draws.FreezeOutcome.NOT_DUE:
                raise FailedPrecondition(
                    "SALES_NOT_CLOSED",
                    "sales are still open, so the entry log is not frozen",
                    metadata={"state": house.state.value, "subject": "state"},
                )
        async with self.database.session(system=True) as session:
            row = await draws.lock_draw(session, house_id=house_id)
            house = await session.get(House, house_id, populate_existing=True)
            assert row is not None
            assert house is not None
            if row.state is DrawState.COMPLETED:
                return row
            if row.state is DrawState.CANCELLED:
                raise _cancelled_error(house)
            wait = row.beacon_time - _now()
            if wait > timedelta(0):
                raise BeaconRoundPending(row, wait)
            return draws.inputs_of(row)

    async def _fetch_beacon(self, inputs: draws.DrawInputs) -> bytes:
        config = self.signer.config
        try:
            async with BeaconClient(config.drand_url, chain_hash=config.chain_hash) as beacon:
                verified = await beacon.fetch_round(
                    inputs.beacon_round, public_key=inputs.beacon_public_key
                )
        except BeaconError as error:
            await self._beacon_failed(inputs, error)
            if isinstance(error, BeaconInvalid):
                raise _beacon_invalid(str(error)) from None
            if isinstance(error, RoundNotYetAvailable):
                raise _beacon_unavailable(f"round {inputs.beacon_round} not served yet") from None
            raise _beacon_unavailable(str(error)) from None
        async with self.database.session(system=True) as session:
            stored = await draws.store_beacon(
                session,
                draw_id=inputs.draw_id,
                signature=verified.signature,
                randomness=verified.randomness,
            )
            house = await session.get(House, inputs.house_id)
            assert house is not None
        if stored:
            await house_events.beacon_received(
                self.events,
                house,
                beacon=pb.DrawBeacon(
                    chain_hash=verified.chain_hash,
                    round=verified.round,
                    signature=verified.signature.hex(),
                    randomness=verified.randomness.hex(),
                ),
            )
        return verified.signature

    async def _beacon_failed(self, inputs: draws.DrawInputs, error: BeaconError) -> None:
        """Records the failed attempt; past the manifest's deadline, applies its fallback
        (the lottery is cancelled and refunded)."""
        log.warning("house %s: beacon round %s: %s", inputs.house_id, inputs.beacon_round, error)
        deadline = inputs.beacon_time + self.signer.config.beacon_deadline
        async with self.database.session(system=True) as session:
            await draws.record_failure(session, draw_id=inputs.draw_id, error=str(error))
        if _now() < deadline:
            return
        reason = (
            f"{draws.BEACON_DEADLINE_REASON}: beacon round {inputs.beacon_round} was not "
            f"available by {deadline.isoformat()}"
        )
        async with self.database.session(system=True) as session:
            draw = await draws.lock_draw(session, house_id=inputs.house_id)
            if draw is None or draw.state is not DrawState.FROZEN:
                return
            house = await draws.cancel_lottery(
                session, house_id=inputs.house_id, reason=reason, actor=None, draw=draw, now=_now()
            )
        await self.cache.invalidate()
        await house_events.cancelled(self.events, house)

    @staticmethod
    async def _compute(
        inputs: draws.DrawInputs, leaves: list[bytes], signature: bytes
    ) -> protocol.DrawResult:
        def compute() -> protocol.DrawResult:
            return protocol.compute_draw(
                house_id=inputs.house_id,
                leaves=leaves,
                beacon_round=inputs.beacon_round,
                beacon_signature=signature,
                reserves=inputs.reserves,
            )

        if len(leaves) > entrylog.THREAD_THRESHOLD:
            return await asyncio.to_thread(compute)
        return compute()


def _now() -> datetime.datetime:
    """Whole milliseconds, as DRAW-1 signs and hashes times."""
    return whole_milliseconds(utcnow())


def register_scheduler(deps: Deps) -> Scheduler:
    """Registers the scheduler's jobs (unless this replica's interval is zero)."""
    scheduler = Scheduler.from_deps(deps)
    config = deps.settings.draw
    if config.scheduler_interval > timedelta(0):
        deps.jobs.register(
            SCHEDULER_JOB, scheduler.run, interval=config.scheduler_interval, timeout=_JOB_TIMEOUT
        )
    if config.tree_head_interval > timedelta(0):
        deps.jobs.register(
            TREE_HEAD_JOB,
            scheduler.sign_tree_heads,
            interval=config.tree_head_interval,
            timeout=_JOB_TIMEOUT,
        )
    return scheduler
