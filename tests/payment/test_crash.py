"""Chaos: the server process is killed with SIGKILL right after Stripe charged the card and
before anything was recorded; after a restart the reconciler finds the payment by its order id
and completes the order — nothing is lost, nothing is charged twice."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from amesa.lottery.v1 import lottery_service_pb2_grpc
from amesa.payment.v1 import payment_service_pb2 as ppb
from server.app import App
from server.core.settings import Settings
from server.lottery.models import Ticket
from server.payment.invariants import check_invariants
from server.payment.models import Order, OrderState, Transaction, TransactionState
from tests.lottery.conftest import Callers, active_house
from tests.payment.localstripe import LocalStripe
from tests.payment.support import buyer
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]


def _env(settings: Settings, port: int, **extra: str) -> dict[str, str]:
    payment = settings.payment
    assert payment.stripe_secret_key is not None
    assert payment.stripe_api_base is not None
    assert payment.stripe_webhook_secret is not None
    assert settings.jwt_private_key_file is not None
    assert settings.transparency_key_file is not None
    return {
        **os.environ,
        "AMESA_ENV": "test",
        "AMESA_GRPC_ADDRESS": f"127.0.0.1:{port}",
        "AMESA_METRICS_ADDRESS": "",
        "AMESA_DATABASE_URL": settings.database_url,
        "AMESA_REDIS_URL": settings.redis_url,
        "AMESA_JWT_PRIVATE_KEY_FILE": str(settings.jwt_private_key_file),
        "AMESA_TRANSPARENCY_KEY_FILE": str(settings.transparency_key_file),
        "AMESA_STRIPE_SECRET_KEY": payment.stripe_secret_key,
        "AMESA_STRIPE_API_BASE": payment.stripe_api_base,
        "AMESA_STRIPE_LOCALSTRIPE": "1",
        "AMESA_STRIPE_WEBHOOK_SECRET": payment.stripe_webhook_secret,
        "AMESA_LOTTERY_SCHEDULER_INTERVAL_SECONDS": "0",
        "AMESA_TREE_HEAD_INTERVAL_SECONDS": "0",
        "AMESA_SHUTDOWN_GRACE_SECONDS": "1",
        **extra,
    }


@asynccontextmanager
async def server_process(env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", env=env, cwd=ROOT, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        async with grpc.aio.insecure_channel(env["AMESA_GRPC_ADDRESS"]) as channel:
            check = channel.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            for _ in range(300):
                try:
                    await check(health_pb2.HealthCheckRequest(), timeout=1)
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.1)
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_a_server_killed_after_charging_loses_nothing(
    app: App,
    callers: Callers,
    owner_engine: AsyncEngine,
    settings: Settings,
    localstripe: LocalStripe,
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    who = await buyer(app, owner_engine)
    port = free_port()
    request = pb.PurchaseTicketsRequest(
        house=house.name, quantity=3, request_id=str(uuid.uuid4()), payment_method=who.card
    )

    # The dying replica runs no payment job: killed mid-round, it would hold the job's lease
    # until the lease expires (minutes), which is the lease's purpose but not this test's.
    dying_env = _env(
        settings,
        port,
        AMESA_FAILPOINTS="after_payment_intent",
        AMESA_PAYMENT_RECONCILE_INTERVAL_SECONDS="0",
    )
    async with server_process(dying_env) as dying:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = lottery_service_pb2_grpc.LotteryServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.PurchaseTickets(request, metadata=who.metadata, timeout=20)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await asyncio.wait_for(dying.wait(), 10) == -9  # SIGKILL

    async with app.deps.database.session(system=True) as session:
        order = await session.scalar(select(Order).where(Order.user_id == who.user_id))
    assert order is not None
    assert (order.state, order.provider_payment_reference) == (OrderState.PENDING_PAYMENT, None)

    restarted = _env(settings, port, AMESA_PAYMENT_RECONCILE_INTERVAL_SECONDS="0.3")
    async with server_process(restarted):
        for _ in range(100):
            async with app.deps.database.session(system=True) as session:
                state = await session.scalar(select(Order.state).where(Order.id == order.id))
            if state is OrderState.PAID:
                break
            await asyncio.sleep(0.2)

    async with app.deps.database.session(system=True) as session:
        settled = await session.get(Order, order.id, populate_existing=True)
        tickets = await session.scalar(select(func.count()).where(Ticket.order_id == order.id))
        charge = await session.scalar(
            select(Transaction.state).where(Transaction.order_id == order.id)
        )
    assert settled is not None
    assert settled.state is OrderState.PAID
    assert (tickets, charge) == (3, TransactionState.SUCCEEDED)
    intent = await localstripe.get(f"/v1/payment_intents/{settled.provider_payment_reference}")
    assert (intent["status"], intent["metadata"]["order_id"]) == ("succeeded", str(order.id))
    # The client's retry after the crash returns the same order, charged once.
    retried = await callers.stub.PurchaseTickets(request, metadata=who.metadata)
    assert retried.order.name.endswith(str(order.id))
    assert retried.order.state == ppb.ORDER_STATE_PAID
    assert list(retried.order.ticket_numbers) == [1, 2, 3]
    violations = await check_invariants(
        app.deps.database,
        gateway=app.deps.gateways.stripe,
        house_ids=[uuid.UUID(house.name.split("/")[1])],
    )
    assert violations == []
