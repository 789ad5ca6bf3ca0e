"""DRAW-1 on the server: the manifest signed at publish, the freeze, the draw conducted once
against the local beacon, its transcript verified by the standalone verifier, and the errors
of GetDraw / GetDrawTranscript / ConductDraw."""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from amesa.lottery.v1 import lottery_service_pb2_grpc
from server.app import App
from server.core.errors import Unavailable
from server.core.models import AuditLog, Outbox
from server.core.settings import Settings
from server.devbeacon import LocalBeacon
from server.lottery import refunds
from server.lottery.draw import protocol
from server.lottery.models import Draw, DrawState, Ticket, TicketState
from server.lottery.scheduler import Scheduler
from tests.lottery.conftest import (
    Callers,
    complete_house,
    create_house,
    published_house,
    terms,
    ts,
)
from tests.lottery.draw_support import (
    house_id_of,
    sell,
    selling_house,
    wait_for_close_and_round,
)
from tests.support import bearer, failure, separate_server, token_for


def draw_name(house: pb.House) -> str:
    return f"{house.name}/draw"


async def get_draw(callers: Callers, house: pb.House) -> pb.Draw:
    draw: pb.Draw = await callers.stub.GetDraw(pb.GetDrawRequest(name=draw_name(house)))
    return draw


async def conduct(callers: Callers, house: pb.House) -> pb.Draw:
    draw: pb.Draw = await callers.stub.ConductDraw(
        pb.ConductDrawRequest(name=draw_name(house)), metadata=callers.admin
    )
    return draw


async def verify_command(path: Path) -> tuple[int, str]:
    """`python -m amesa_sdk.verify path` in its own process: (exit code, output)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "amesa_sdk.verify",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def refused(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    seen = failure(caught.value)
    return seen.code, seen.reason


# --- Manifest ------------------------------------------------------------------------------------


async def test_publishing_signs_a_manifest_anyone_can_check(
    callers: Callers, owner_engine: AsyncEngine, settings: Settings
) -> None:
    house = await published_house(callers, owner_engine)

    draw = await get_draw(callers, house)  # no credentials: public

    assert draw.state == pb.DRAW_STATE_SCHEDULED
    manifest = json.loads(draw.manifest_json)
    assert protocol.canonical_json(manifest).decode() == draw.manifest_json
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(draw.transparency_public_key))
    assert protocol.verify_manifest(key, manifest, bytes.fromhex(draw.manifest_signature))
    close_ms = house.lottery_terms.sales_close_time.ToMilliseconds()
    expected_round = protocol.target_round(
        not_before_ms=close_ms + int(settings.draw.delay.total_seconds() * 1000),
        genesis_time_s=settings.draw.genesis_time,
        period_s=settings.draw.period_seconds,
    )
    assert manifest["house_id"] == str(house_id_of(house.name))
    assert manifest["total_tickets"] == house.lottery_terms.total_tickets
    assert manifest["sales_close_time_ms"] == close_ms
    assert manifest["beacon_round"] == expected_round == draw.manifest.beacon_round
    assert manifest["beacon_chain_hash"] == settings.draw.chain_hash
    assert manifest["beacon_public_key"] == settings.draw.public_key.hex()
    assert str(expected_round) in manifest["fallback"]
    assert draw.beacon_time.ToMilliseconds() == protocol.round_time_ms(
        expected_round,
        genesis_time_s=settings.draw.genesis_time,
        period_s=settings.draw.period_seconds,
    )
    assert not draw.HasField("final_tree_head")
    assert not draw.winners


async def test_changing_an_upcoming_close_time_reissues_the_manifest(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await published_house(callers, owner_engine)
    assert house.state == pb.HOUSE_STATE_UPCOMING
    before = await get_draw(callers, house)
    later = house.lottery_terms.sales_close_time.ToDatetime(tzinfo=datetime.UTC)
    later += datetime.timedelta(hours=1)
    change = pb.House(name=house.name)
    change.lottery_terms.sales_close_time.CopyFrom(ts(later))

    await callers.stub.UpdateHouse(
        pb.UpdateHouseRequest(
            house=change,
            update_mask=field_mask_pb2.FieldMask(paths=["lottery_terms.sales_close_time"]),
        ),
        metadata=callers.admin,
    )

    after = await get_draw(callers, house)
    assert after.manifest.beacon_round > before.manifest.beacon_round
    assert after.manifest.sales_close_time.ToDatetime(tzinfo=datetime.UTC) == later
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(after.transparency_public_key))
    assert protocol.verify_manifest(
        key, json.loads(after.manifest_json), bytes.fromhex(after.manifest_signature)
    )


async def test_a_draft_has_no_draw_and_is_hidden_from_the_public(callers: Callers) -> None:
    draft = await create_house(callers)

    assert await refused(callers.stub.GetDraw(pb.GetDrawRequest(name=draw_name(draft)))) == (
        grpc.StatusCode.NOT_FOUND,
        "HOUSE_NOT_FOUND",
    )
    admin_call = callers.stub.GetDraw(
        pb.GetDrawRequest(name=draw_name(draft)), metadata=callers.admin
    )
    assert await refused(admin_call) == (grpc.StatusCode.NOT_FOUND, "DRAW_NOT_FOUND")


async def test_a_draw_time_before_the_beacon_delay_is_refused(
    app: App, callers: Callers, owner_engine: AsyncEngine, settings: Settings
) -> None:
    async with separate_server(
        settings, draw=replace(settings.draw, delay=datetime.timedelta(minutes=5))
    ) as strict:
        stub = lottery_service_pb2_grpc.LotteryServiceStub(
            grpc.aio.insecure_channel(f"127.0.0.1:{strict.port}")
        )
        lottery_terms = terms()
        close = lottery_terms.sales_close_time.ToDatetime(tzinfo=datetime.UTC)
        lottery_terms.draw_time.CopyFrom(ts(close + datetime.timedelta(minutes=1)))
        house = pb.House(title="Too soon", lottery_terms=lottery_terms)
        call = stub.CreateHouse(pb.CreateHouseRequest(house=house), metadata=callers.admin)

        assert await refused(call) == (grpc.StatusCode.INVALID_ARGUMENT, "LOTTERY_TERMS_INVALID")


# --- The whole lottery, driven by the scheduler ---------------------------------------------------


async def test_the_scheduler_closes_freezes_and_draws_and_the_verifier_agrees(
    app: App, callers: Callers, owner_engine: AsyncEngine, settings: Settings, tmp_path: Path
) -> None:
    fast = replace(
        settings.draw,
        scheduler_interval=datetime.timedelta(seconds=0.2),
        tree_head_interval=datetime.timedelta(seconds=0.2),
    )
    async with separate_server(settings, draw=fast) as replica:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{replica.port}")
        stub = lottery_service_pb2_grpc.LotteryServiceStub(channel)
        house = await selling_house(callers, owner_engine, total=30)
        stream = stub.WatchHouse(pb.WatchHouseRequest(name=house.name))
        first = await asyncio.wait_for(stream.read(), 5)
        assert isinstance(first, pb.WatchHouseResponse)
        assert first.snapshot.draw.state == pb.DRAW_STATE_SCHEDULED
        buyers = await sell(app, owner_engine, house, [3, 1, 5, 2])

        kinds: list[str] = []
        async with asyncio.timeout(20):
            while (message := await stream.read()) is not grpc.aio.EOF:
                assert isinstance(message, pb.WatchHouseResponse)
                kinds.append(str(message.WhichOneof("event")))
        draw = await get_draw(callers, house)

    for expected in ("state_changed", "entry_log_frozen", "beacon_received", "winner_drawn"):
        assert expected in kinds, kinds
    assert kinds[-1] == "winner_drawn"
    assert draw.state == pb.DRAW_STATE_COMPLETED
    assert draw.final_tree_head.tree_size == 11
    assert len(draw.winners) == 1 + settings.draw.reserves
    house_now = await callers.stub.GetHouse(pb.GetHouseRequest(name=house.name))
    assert house_now.state == pb.HOUSE_STATE_DRAWN

    transcript = await callers.stub.GetDrawTranscript(
        pb.GetDrawTranscriptRequest(name=draw_name(house))
    )
    path = tmp_path / "transcript.json"
    path.write_text(transcript.transcript_json, encoding="utf-8")
    verdicts = [await verify_command(path) for _ in range(2)]
    winner = draw.winners[0].ticket_number
    for returncode, output in verdicts:
        assert returncode == 0, output
        assert output.startswith("PASS: ")
        assert f"winning ticket #{winner} of 11" in output
    assert verdicts[0] == verdicts[1]

    async with app.deps.database.session(system=True) as session:
        states = dict(
            (
                await session.execute(
                    select(Ticket.number, Ticket.state).where(
                        Ticket.house_id == house_id_of(house.name)
                    )
                )
            ).all()
        )
    assert states[winner] is TicketState.WON
    reserves = [w.ticket_number for w in draw.winners[1:]]
    assert all(states[number] is TicketState.RESERVE for number in reserves)
    assert sum(state is TicketState.NOT_WON for state in states.values()) == 11 - 1 - len(reserves)

    async with app.deps.database.session(system=True) as session:
        told = (
            await session.execute(
                select(Outbox.topic, Outbox.user_id).where(
                    Outbox.payload["draw"].astext == draw_name(house)
                )
            )
        ).all()
        winner_id = await session.scalar(
            select(Ticket.user_id).where(
                Ticket.house_id == house_id_of(house.name), Ticket.number == winner
            )
        )
    assert sorted(told) == sorted(
        ("notify.draw_won" if buyer == winner_id else "notify.draw_result", buyer)
        for buyer in buyers
    )


async def test_the_transcript_is_refused_until_the_draw_completed(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await published_house(callers, owner_engine)
    call = callers.stub.GetDrawTranscript(pb.GetDrawTranscriptRequest(name=draw_name(house)))

    assert await refused(call) == (grpc.StatusCode.FAILED_PRECONDITION, "DRAW_NOT_COMPLETED")


# --- ConductDraw ---------------------------------------------------------------------------------


async def test_conducting_while_sales_are_open_is_refused(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await selling_house(callers, owner_engine, closes_in=datetime.timedelta(hours=1))

    assert await refused(conduct(callers, house)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SALES_NOT_CLOSED",
    )
    users_call = callers.stub.ConductDraw(
        pb.ConductDrawRequest(name=draw_name(house)), metadata=callers.user
    )
    assert (await refused(users_call))[0] == grpc.StatusCode.PERMISSION_DENIED


async def test_conducting_before_the_beacon_round_says_when_to_retry(
    app: App, callers: Callers, owner_engine: AsyncEngine, settings: Settings
) -> None:
    slow = replace(settings.draw, delay=datetime.timedelta(seconds=60))
    async with separate_server(settings, draw=slow) as replica:
        stub = lottery_service_pb2_grpc.LotteryServiceStub(
            grpc.aio.insecure_channel(f"127.0.0.1:{replica.port}")
        )
        lottery_terms = terms(total=10, opens_in=-datetime.timedelta(hours=1))
        closes = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)
        lottery_terms.sales_close_time.CopyFrom(ts(closes))
        lottery_terms.draw_time.CopyFrom(ts(closes + datetime.timedelta(seconds=61)))
        admin_callers = replace(callers, stub=stub)
        house = await published_house(
            admin_callers, owner_engine, complete_house(lottery_terms=lottery_terms)
        )
        await sell(app, owner_engine, house, [2])
        await asyncio.sleep(
            max(0.0, (closes - datetime.datetime.now(datetime.UTC)).total_seconds())
        )
        await asyncio.sleep(0.2)

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ConductDraw(
                pb.ConductDrawRequest(name=draw_name(house)), metadata=callers.admin
            )

    seen = failure(caught.value)
    assert (seen.code, seen.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "BEACON_ROUND_PENDING")
    retry = error_details_pb2.RetryInfo()
    assert any(detail.Unpack(retry) for detail in seen.status.details)
    assert 30 <= retry.retry_delay.seconds <= 61
    draw = await get_draw(callers, house)
    assert draw.state == pb.DRAW_STATE_FROZEN  # the freeze happened; the draw waits


async def test_two_replicas_racing_to_conduct_one_draw_record_one_result(
    app: App, callers: Callers, owner_engine: AsyncEngine, settings: Settings
) -> None:
    house = await selling_house(callers, owner_engine, total=50)
    await sell(app, owner_engine, house, [7, 4, 9])
    await wait_for_close_and_round(app, house)

    async with separate_server(settings) as second:
        stubs = [
            callers.stub,
            lottery_service_pb2_grpc.LotteryServiceStub(
                grpc.aio.insecure_channel(f"127.0.0.1:{second.port}")
            ),
        ]
        results = await asyncio.gather(
            *(
                stub.ConductDraw(
                    pb.ConductDrawRequest(name=draw_name(house)), metadata=callers.admin
                )
                for stub in stubs * 3
            ),
            return_exceptions=True,
        )

    draws = [result for result in results if isinstance(result, pb.Draw)]
    errors = [failure(result) for result in results if isinstance(result, grpc.aio.AioRpcError)]
    assert draws, errors
    assert all((e.code, e.reason) == (grpc.StatusCode.ABORTED, "DRAW_IN_PROGRESS") for e in errors)
    assert {tuple(d.winners) == tuple(draws[0].winners) for d in draws} == {True}
    assert {d.seed for d in draws} == {draws[0].seed}
    final = await get_draw(callers, house)
    assert final.winners == draws[0].winners
    house_id = house_id_of(house.name)
    async with app.deps.database.session(system=True) as session:
        won = await session.scalar(
            select(func.count()).where(Ticket.house_id == house_id, Ticket.state == TicketState.WON)
        )
        completions = await session.scalar(
            select(func.count()).where(
                AuditLog.action == "lottery.draw.complete",
                AuditLog.resource_name == f"houses/{house_id}/draw",
            )
        )
    assert (won, completions) == (1, 1)


async def test_an_unreachable_beacon_is_retried_and_the_draw_resumes(
    app: App, callers: Callers, owner_engine: AsyncEngine, local_beacon: LocalBeacon
) -> None:
    house = await selling_house(callers, owner_engine)
    await sell(app, owner_engine, house, [2, 3])
    await wait_for_close_and_round(app, house)

    local_beacon.unavailable = True
    try:
        unreachable = await refused(conduct(callers, house))
    finally:
        local_beacon.unavailable = False
    frozen = await get_draw(callers, house)
    round_ = frozen.manifest.beacon_round
    local_beacon.invalid_rounds.add(round_)
    try:
        invalid = await refused(conduct(callers, house))
    finally:
        local_beacon.invalid_rounds.discard(round_)
    async with app.deps.database.session(system=True) as session:
        row = await session.scalar(select(Draw).where(Draw.house_id == house_id_of(house.name)))
    assert row is not None

    completed = await conduct(callers, house)

    assert unreachable == (grpc.StatusCode.UNAVAILABLE, "BEACON_UNAVAILABLE")
    assert invalid == (grpc.StatusCode.UNAVAILABLE, "BEACON_INVALID")
    assert frozen.state == pb.DRAW_STATE_FROZEN
    assert (row.state, row.attempt_count, row.beacon_signature) == (DrawState.FROZEN, 2, None)
    assert completed.state == pb.DRAW_STATE_COMPLETED
    assert completed.final_tree_head == frozen.final_tree_head
    assert completed.beacon.signature == local_beacon.signature(round_).hex()
    assert await conduct(callers, house) == completed  # once completed, it stays as it is


async def test_a_beacon_missing_past_the_deadline_cancels_and_refunds(
    app: App,
    callers: Callers,
    owner_engine: AsyncEngine,
    settings: Settings,
    local_beacon: LocalBeacon,
) -> None:
    house = await selling_house(callers, owner_engine)
    await sell(app, owner_engine, house, [1])
    await wait_for_close_and_round(app, house)
    impatient = Scheduler.from_deps(app.deps)
    impatient.signer = replace(
        impatient.signer,
        config=replace(settings.draw, beacon_deadline=datetime.timedelta(0)),
    )

    local_beacon.unavailable = True
    try:
        with pytest.raises(Unavailable) as caught:
            await impatient.conduct(house_id_of(house.name), actor=None)
    finally:
        local_beacon.unavailable = False

    assert caught.value.reason == "BEACON_UNAVAILABLE"
    draw = await get_draw(callers, house)
    assert (draw.state, draw.fallback_applied) == (pb.DRAW_STATE_CANCELLED, True)
    house_now = await callers.stub.GetHouse(pb.GetHouseRequest(name=house.name))
    assert house_now.state == pb.HOUSE_STATE_CANCELLED
    assert await refund_requests(app, house) == 1
    assert await refused(conduct(callers, house)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "HOUSE_CANCELLED",
    )


async def refund_requests(app: App, house: pb.House) -> int:
    async with app.deps.database.session(system=True) as session:
        count = await session.scalar(
            select(func.count()).where(
                Outbox.topic == refunds.REFUND_TOPIC,
                Outbox.payload["house_id"].astext == str(house_id_of(house.name)),
            )
        )
    return int(count or 0)


# --- Minimum participation and cancellation ------------------------------------------------------


@pytest.mark.parametrize("sold", [0, 2])
async def test_below_minimum_participation_the_lottery_is_cancelled_at_close(
    app: App, callers: Callers, owner_engine: AsyncEngine, sold: int
) -> None:
    house = await selling_house(callers, owner_engine, min_participation=3)
    if sold:
        await sell(app, owner_engine, house, [sold])
    await wait_for_close_and_round(app, house)

    await Scheduler.from_deps(app.deps).freeze_due()

    house_now = await callers.stub.GetHouse(pb.GetHouseRequest(name=house.name))
    assert house_now.state == pb.HOUSE_STATE_CANCELLED
    assert house_now.cancel_reason.startswith("MIN_PARTICIPATION_NOT_REACHED")
    assert (await get_draw(callers, house)).state == pb.DRAW_STATE_CANCELLED
    assert await refund_requests(app, house) == 1
    assert await refused(conduct(callers, house)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "MIN_PARTICIPATION_NOT_REACHED",
    )


async def test_cancelling_a_house_cancels_its_draw_and_requests_refunds_once(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await selling_house(callers, owner_engine, closes_in=datetime.timedelta(hours=1))
    await sell(app, owner_engine, house, [2])
    request = pb.CancelHouseRequest(name=house.name, reason="The seller withdrew")

    await callers.stub.CancelHouse(request, metadata=callers.admin)
    await callers.stub.CancelHouse(request, metadata=callers.admin)

    assert (await get_draw(callers, house)).state == pb.DRAW_STATE_CANCELLED
    assert await refund_requests(app, house) == 1


# --- Scheduler pieces ----------------------------------------------------------------------------


async def test_the_scheduler_opens_sales_when_their_time_comes(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    lottery_terms = terms(opens_in=datetime.timedelta(seconds=1))
    house = await published_house(
        callers, owner_engine, complete_house(lottery_terms=lottery_terms)
    )
    assert house.state == pb.HOUSE_STATE_UPCOMING
    scheduler = Scheduler.from_deps(app.deps)

    await scheduler.open_due_sales()
    still_upcoming = await callers.stub.GetHouse(pb.GetHouseRequest(name=house.name))
    await asyncio.sleep(1.2)
    await scheduler.open_due_sales()
    opened = await callers.stub.GetHouse(pb.GetHouseRequest(name=house.name))

    assert still_upcoming.state == pb.HOUSE_STATE_UPCOMING
    assert opened.state == pb.HOUSE_STATE_ACTIVE


async def test_signed_tree_heads_make_inclusion_proofs_available(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await selling_house(callers, owner_engine, closes_in=datetime.timedelta(hours=1))
    (buyer,) = await sell(app, owner_engine, house, [3])
    metadata = tuple(bearer(token_for(app, user_id=buyer)))
    listed = await callers.stub.ListTickets(
        pb.ListTicketsRequest(parent=f"users/{buyer}"), metadata=metadata
    )
    ticket = listed.tickets[0].name
    proof_request = pb.GetTicketInclusionProofRequest(name=ticket)
    before = await refused(callers.stub.GetTicketInclusionProof(proof_request, metadata=metadata))

    await Scheduler.from_deps(app.deps).sign_tree_heads()
    proof = await callers.stub.GetTicketInclusionProof(proof_request, metadata=metadata)

    assert before == (grpc.StatusCode.FAILED_PRECONDITION, "TICKET_NOT_YET_LOGGED")
    assert proof.tree_head.tree_size == 3


# --- ListDraws -----------------------------------------------------------------------------------


async def test_list_draws_shows_results_newest_first_page_by_page(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    early = await selling_house(callers, owner_engine, closes_in=datetime.timedelta(seconds=1.5))
    late = await selling_house(callers, owner_engine, closes_in=datetime.timedelta(seconds=3.5))
    scheduled = await published_house(callers, owner_engine)
    for house in (early, late):
        await sell(app, owner_engine, house, [2])
    await wait_for_close_and_round(app, late)
    for house in (early, late):
        await conduct(callers, house)

    names: list[str] = []
    token = ""
    while True:
        page = await callers.stub.ListDraws(pb.ListDrawsRequest(page_size=1, page_token=token))
        names += [draw.name for draw in page.draws]
        assert all(draw.state == pb.DRAW_STATE_COMPLETED for draw in page.draws)
        token = page.next_page_token
        if not token:
            break
    scheduled_only = await callers.stub.ListDraws(
        pb.ListDrawsRequest(states=[pb.DRAW_STATE_SCHEDULED], page_size=100)
    )

    assert names.index(draw_name(late)) < names.index(draw_name(early))
    assert draw_name(scheduled) not in names
    assert page.total_size == len(names)
    assert draw_name(scheduled) in [d.name for d in scheduled_only.draws] or (
        scheduled_only.total_size > 100
    )
