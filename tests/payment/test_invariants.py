"""The money-path invariant check (SPEC §5 step 6) and `python -m server.manage invariants`.

Rows are arranged as the table owner, the way the purchase path leaves them (a consistent
"world" of paid, pending, expired-and-refunded and refunded orders), then one invariant is broken
per test. On the shared test database every check is scoped to the test's houses (other tests
arrange rows that would be violations there); whole-database runs, the CLI and the states only a
dropped CHECK constraint allows use a throwaway database.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import secrets
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from server.app import App
from server.core.db import Database
from server.lottery.models import DrawEntry, House, HouseState, Ticket, TicketState
from server.payment.invariants import Violation, ViolationKind, check_invariants
from server.payment.models import (
    Order,
    OrderState,
    PaymentProvider,
    Transaction,
    TransactionKind,
    TransactionState,
)
from server.payment.providers.stripe_gateway import StripeGateway
from server.user.models import User
from tests.databases import engine_url, throwaway_database
from tests.payment.localstripe import GatewayFactory, LocalStripe

ROOT = Path(__file__).resolve().parents[2]
PRICE = 1000
PAID_STATES = (OrderState.PAID, OrderState.PARTIALLY_REFUNDED, OrderState.REFUNDED)


def now() -> datetime.datetime:
    moment = datetime.datetime.now(datetime.UTC)
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


# --- Arranging rows ----------------------------------------------------------------------------


@dataclass
class Arranged:
    order_id: uuid.UUID
    user_id: uuid.UUID
    ticket_ids: list[uuid.UUID] = field(default_factory=list)
    charge_id: uuid.UUID | None = None

    @property
    def order(self) -> str:
        return f"users/{self.user_id}/orders/{self.order_id}"

    def ticket(self, index: int = 0) -> str:
        return f"users/{self.user_id}/tickets/{self.ticket_ids[index]}"

    @property
    def charge(self) -> str:
        return f"users/{self.user_id}/transactions/{self.charge_id}"


async def add_user(connection: AsyncConnection) -> uuid.UUID:
    user_id = await connection.scalar(
        insert(User)
        .values(
            email=f"invariants-{uuid.uuid4().hex[:12]}@example.com",
            given_name="Ina",
            family_name="Variant",
        )
        .returning(User.id)
    )
    assert isinstance(user_id, uuid.UUID)
    return user_id


async def add_house(connection: AsyncConnection, *, total: int = 10) -> uuid.UUID:
    opened = now() - datetime.timedelta(hours=1)
    house_id = await connection.scalar(
        insert(House)
        .values(
            title=f"Invariant house {uuid.uuid4().hex[:8]}",
            ticket_price_minor=PRICE,
            currency="EUR",
            total_tickets=total,
            sales_open_time=opened,
            sales_close_time=opened + datetime.timedelta(days=10),
            draw_time=opened + datetime.timedelta(days=11),
            state=HouseState.ACTIVE,
            publish_time=opened,
        )
        .returning(House.id)
    )
    assert isinstance(house_id, uuid.UUID)
    return house_id


async def add_transaction(
    connection: AsyncConnection,
    *,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    kind: TransactionKind,
    state: TransactionState,
    amount_minor: int,
    reference: str | None = None,
) -> uuid.UUID:
    transaction_id = await connection.scalar(
        insert(Transaction)
        .values(
            user_id=user_id,
            order_id=order_id,
            kind=kind,
            state=state,
            amount_minor=amount_minor,
            currency="EUR",
            provider=PaymentProvider.STRIPE,
            idempotency_key=f"test-{uuid.uuid4()}",
            provider_payment_reference=reference,
        )
        .returning(Transaction.id)
    )
    assert isinstance(transaction_id, uuid.UUID)
    return transaction_id


async def add_order(
    connection: AsyncConnection,
    *,
    house_id: uuid.UUID,
    user_id: uuid.UUID,
    quantity: int,
    state: OrderState = OrderState.PAID,
    tickets: int | None = None,
    ticket_state: TicketState = TicketState.ACTIVE,
    leaves: bool = True,
    charge: TransactionState | None = TransactionState.SUCCEEDED,
    refunded_minor: int = 0,
    reference: str | None = None,
) -> Arranged:
    """An order as the money path leaves it in `state`: a pending one holds its reservation,
    the others have released it; `tickets` (default: `quantity` for paid states, else none)
    are numbered after the house's sold ones, each with its entry-log leaf unless `leaves` is
    False; `charge` is the state of its CHARGE of the total (None: no charge); `refunded_minor`
    adds a SUCCEEDED REFUND of that much."""
    moment = now()
    paid = state in PAID_STATES
    total = PRICE * quantity
    order_id = await connection.scalar(
        insert(Order)
        .values(
            user_id=user_id,
            house_id=house_id,
            request_id=uuid.uuid4(),
            quantity=quantity,
            unit_price_minor=PRICE,
            subtotal_minor=total,
            total_minor=total,
            currency="EUR",
            state=state,
            provider=PaymentProvider.STRIPE,
            provider_payment_reference=reference,
            refunded_minor=refunded_minor,
            expire_time=moment + datetime.timedelta(minutes=15),
            paid_time=moment if paid else None,
            reservation_release_time=None if state is OrderState.PENDING_PAYMENT else moment,
        )
        .returning(Order.id)
    )
    assert isinstance(order_id, uuid.UUID)
    arranged = Arranged(order_id=order_id, user_id=user_id)
    count = (quantity if paid else 0) if tickets is None else tickets
    sold = await connection.scalar(
        update(House)
        .where(House.id == house_id)
        .values(
            tickets_sold=House.tickets_sold + count,
            tickets_reserved=House.tickets_reserved
            + (quantity if state is OrderState.PENDING_PAYMENT else 0),
        )
        .returning(House.tickets_sold)
    )
    assert isinstance(sold, int)
    for number in range(sold - count + 1, sold + 1):
        ticket_id = await connection.scalar(
            insert(Ticket)
            .values(
                house_id=house_id,
                order_id=order_id,
                user_id=user_id,
                number=number,
                secret_id=secrets.token_bytes(16),
                purchase_time=moment,
                state=ticket_state,
                void_time=moment if ticket_state is TicketState.VOIDED else None,
            )
            .returning(Ticket.id)
        )
        assert isinstance(ticket_id, uuid.UUID)
        arranged.ticket_ids.append(ticket_id)
        if leaves:
            await connection.execute(
                insert(DrawEntry).values(
                    house_id=house_id,
                    leaf_index=number - 1,
                    ticket_id=ticket_id,
                    leaf_hash=secrets.token_bytes(32),
                )
            )
    if charge is not None:
        arranged.charge_id = await add_transaction(
            connection,
            order_id=order_id,
            user_id=user_id,
            kind=TransactionKind.CHARGE,
            state=charge,
            amount_minor=total,
            reference=reference,
        )
    if refunded_minor:
        await add_transaction(
            connection,
            order_id=order_id,
            user_id=user_id,
            kind=TransactionKind.REFUND,
            state=TransactionState.SUCCEEDED,
            amount_minor=refunded_minor,
            reference=reference,
        )
    return arranged


@dataclass
class World:
    house_id: uuid.UUID
    user_id: uuid.UUID
    paid: Arranged

    @property
    def house(self) -> str:
        return f"houses/{self.house_id}"


async def consistent_world(connection: AsyncConnection, *, total: int = 10) -> World:
    """A house where every invariant holds: a paid order of two tickets, a partially refunded
    one, a pending one holding its reservation, an expired one whose late charge was refunded,
    a cancelled one never charged, and a refunded one whose ticket is voided."""
    house_id = await add_house(connection, total=total)
    user_id = await add_user(connection)
    paid = await add_order(connection, house_id=house_id, user_id=user_id, quantity=2)
    await add_order(
        connection,
        house_id=house_id,
        user_id=user_id,
        quantity=2,
        state=OrderState.PARTIALLY_REFUNDED,
        refunded_minor=PRICE,
    )
    await add_order(
        connection,
        house_id=house_id,
        user_id=user_id,
        quantity=1,
        state=OrderState.PENDING_PAYMENT,
        charge=TransactionState.PENDING,
    )
    await add_order(
        connection,
        house_id=house_id,
        user_id=user_id,
        quantity=1,
        state=OrderState.EXPIRED,
        refunded_minor=PRICE,
    )
    await add_order(
        connection,
        house_id=house_id,
        user_id=user_id,
        quantity=1,
        state=OrderState.CANCELLED,
        charge=TransactionState.FAILED,
    )
    await add_order(
        connection,
        house_id=house_id,
        user_id=user_id,
        quantity=1,
        state=OrderState.REFUNDED,
        ticket_state=TicketState.VOIDED,
        refunded_minor=PRICE,
    )
    return World(house_id=house_id, user_id=user_id, paid=paid)


def found(violations: Sequence[Violation]) -> set[tuple[ViolationKind, str]]:
    return {(violation.kind, violation.resource) for violation in violations}


@pytest.fixture
def database(app: App) -> Database:
    """The server's own database access (the application role, as the command uses it)."""
    return app.deps.database


async def scoped(
    database: Database, world: World, *, gateway: StripeGateway | None = None
) -> list[Violation]:
    return await check_invariants(database, gateway=gateway, house_ids=[world.house_id])


# --- A consistent database ---------------------------------------------------------------------


async def test_consistent_rows_have_no_violations(
    database: Database, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as connection:
        world = await consistent_world(connection)

    assert await scoped(database, world) == []


async def test_violation_reads_as_kind_resource_and_explanation(
    database: Database, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as connection:
        world = await consistent_world(connection)
        await connection.execute(
            update(House).where(House.id == world.house_id).values(tickets_sold=1)
        )

    [violation] = await scoped(database, world)

    assert str(violation) == (
        f"HOUSE_SOLD_COUNT {world.house}: tickets_sold is 1 but the house has 5 tickets"
    )


# --- Houses ------------------------------------------------------------------------------------


async def test_sold_counter_differing_from_tickets_is_reported(
    database: Database, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as connection:
        world = await consistent_world(connection)
        await connection.execute(
            update(House)
            .where(House.id == world.house_id)
            .values(tickets_sold=House.tickets_sold - 1)
        )

    assert found(await scoped(database, world)) == {(ViolationKind.HOUSE_SOLD_COUNT, world.house)}


async def test_reserved_counter_differing_from_pending_orders_is_reported(
    database: Database, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as connection:
        world = await consistent_world(connection)
        # A reservation leaked: its order was released but the house never got it back.
        await connection.execute(
            update(House)
            .where(House.id == world.house_id)
            .values(tickets_reserved=House.tickets_reserved + 2)
        )

    assert found(await scoped(database, world)) == {
        (ViolationKind.HOUSE_RESERVED_COUNT, world.house)
    }


async def test_ticket_number_gap_is_reported(database: Database, owner_engine: AsyncEngine) -> None:
    async with owner_engine.begin() as connection:
        world = await consistent_world(connection)
        gap_ticket = world.paid.ticket_ids[1]
        await connection.execute(update(Ticket).where(Ticket.id == gap_ticket).values(number=9))
        await connection.execute(
            update(DrawEntry).where(DrawEntry.ticket_id == gap_ticket).values(leaf_index=8)
        )

    assert found(await scoped(database, world)) == {(ViolationKind.TICKET_NUMBERS, world.house)}


# --- Tickets -----------------------------------------------------------------------------------


async def test_ticket_of_an_unpaid_order_is_reported(
    database: Database, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as connection:
        world = await consistent_world(connection)
        expired = await add_order(
            connection,
            house_id=world.house_id,
            user_id=world.user_id,
            quantity=1,
            state=OrderState.EXPIRED,
            tickets=1,
            charge=None,
        )

    assert found(await scoped(database, world)) == {
        (ViolationKind.TICKET_ORDER_NOT_PAID, expired.ticket())
    }


async def test_active_ticket_of_a_refunded_order_is_reported(
    database: Database, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as connection:
        world = await consistent_world(connection)
        refunded = await add_order(
            connection,
            house_id=world.house_id,
            user_id=world.user_id,
            quantity=1,
            state=OrderState.REFUNDED,
            refunded_minor=PRICE,
        )

    assert found(await scoped(database, world)) == {
        (ViolationKind.TICKET_NOT_VOIDED, refunded.ticket())
    }


async def test_ticket_of_another_users_order_is_reported(
    database: Database, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as connection:
        world = await consistent_world(connection)
        stranger = await add_user(connection)
        moved = world.paid.ticket_ids[0]
        await connection.execute(update(Ticket).where(Ticket.id == moved).values(user_id=stranger))

    assert found(await scoped(database, world)) == {
        (ViolationKind.TICKET_ORDER_MISMATCH, f"users/{stranger}/tickets/{moved}")
    }


async def test_ticket_without_entry_log_leaf_is_reported(
    database: Database, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as connection:
        world = await consistent_world(connection)
        unlogged = await add_order(
            connection, house_id=world.house_id, user_id=world.user_id, quantity=1, leaves=False
        )

    assert found(await scoped(database, world)) == {
        (ViolationKind.TICKET_WITHOUT_ENTRY, unlogged.ticket())
    }


# --- Paid orders and the ledger ----------------------------------------------------------------


async def test_paid_order_missing_tickets_is_reported(
    database: Database, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as connection:
        world = await consistent_world(connection)
        short = await add_order(
            connection, house_id=world.house_id, user_id=world.user_id, quantity=3, tickets=2
        )

    assert found(await scoped(database, world)) == {(ViolationKind.PAID_ORDER_TICKETS, short.order)}


async def test_paid_order_without_succeeded_charge_is_reported(
    database: Database, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as connection:
        world = await consistent_world(connection)
        unpaid = await add_order(
            connection,
            house_id=world.house_id,
            user_id=world.user_id,
            quantity=1,
            charge=TransactionState.PENDING,
        )

    assert found(await scoped(database, world)) == {
        (ViolationKind.PAID_ORDER_WITHOUT_CHARGE, unpaid.order)
    }


async def test_order_charged_twice_is_reported(
    database: Database, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as connection:
        world = await consistent_world(connection)
        await add_transaction(
            connection,
            order_id=world.paid.order_id,
            user_id=world.user_id,
            kind=TransactionKind.CHARGE,
            state=TransactionState.SUCCEEDED,
            amount_minor=2 * PRICE,
        )

    assert found(await scoped(database, world)) == {
        (ViolationKind.ORDER_OVERCHARGED, world.paid.order)
    }


async def test_captured_payment_without_tickets_or_refund_is_reported(
    database: Database, owner_engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as connection:
        world = await consistent_world(connection)
        # Charged, then expired without fulfilment, and refunded only in part.
        expired = await add_order(
            connection,
            house_id=world.house_id,
            user_id=world.user_id,
            quantity=2,
            state=OrderState.EXPIRED,
            refunded_minor=PRICE,
        )

    violations = await scoped(database, world)

    assert found(violations) == {(ViolationKind.CHARGE_WITHOUT_TICKETS, expired.charge)}
    assert expired.order in violations[0].explanation


# --- Against Stripe (localstripe) --------------------------------------------------------------


async def succeeded_intent(gateway: StripeGateway) -> str:
    intent = await gateway.create_payment_intent(
        amount_minor=PRICE,
        currency="EUR",
        customer=None,
        payment_method="pm_card_visa",
        order_id=str(uuid.uuid4()),
        confirm=True,
    )
    assert intent.succeeded
    return intent.id


async def unconfirmed_intent(gateway: StripeGateway) -> str:
    intent = await gateway.create_payment_intent(
        amount_minor=PRICE,
        currency="EUR",
        customer=None,
        payment_method=None,
        order_id=str(uuid.uuid4()),
        confirm=False,
    )
    assert not intent.succeeded
    return intent.id


async def test_stripe_agreeing_with_orders_has_no_violations(
    database: Database, owner_engine: AsyncEngine, stripe_gateway: StripeGateway
) -> None:
    paid_reference = await succeeded_intent(stripe_gateway)
    late_reference = await succeeded_intent(stripe_gateway)
    expired_reference = await unconfirmed_intent(stripe_gateway)
    async with owner_engine.begin() as connection:
        house_id = await add_house(connection)
        user_id = await add_user(connection)
        world = World(
            house_id=house_id,
            user_id=user_id,
            paid=await add_order(
                connection,
                house_id=house_id,
                user_id=user_id,
                quantity=1,
                reference=paid_reference,
            ),
        )
        # Succeeded after its reservation was released, and refunded automatically.
        await add_order(
            connection,
            house_id=house_id,
            user_id=user_id,
            quantity=1,
            state=OrderState.EXPIRED,
            reference=late_reference,
            refunded_minor=PRICE,
        )
        await add_order(
            connection,
            house_id=house_id,
            user_id=user_id,
            quantity=1,
            state=OrderState.EXPIRED,
            charge=None,
            reference=expired_reference,
        )

    assert await scoped(database, world, gateway=stripe_gateway) == []


async def test_paid_order_whose_payment_did_not_succeed_at_stripe_is_reported(
    database: Database, owner_engine: AsyncEngine, stripe_gateway: StripeGateway
) -> None:
    reference = await unconfirmed_intent(stripe_gateway)
    async with owner_engine.begin() as connection:
        world = await consistent_world(connection)
        unconfirmed = await add_order(
            connection,
            house_id=world.house_id,
            user_id=world.user_id,
            quantity=1,
            reference=reference,
        )
        await connection.execute(
            update(Order)
            .where(Order.house_id == world.house_id, Order.id != unconfirmed.order_id)
            .values(provider=PaymentProvider.PAYPAL)
        )

    violations = await scoped(database, world, gateway=stripe_gateway)

    assert found(violations) == {(ViolationKind.PAYMENT_NOT_SUCCEEDED, unconfirmed.order)}
    assert "requires_payment_method" in violations[0].explanation


async def test_expired_order_captured_at_stripe_without_refund_is_reported(
    database: Database, owner_engine: AsyncEngine, stripe_gateway: StripeGateway
) -> None:
    reference = await succeeded_intent(stripe_gateway)
    async with owner_engine.begin() as connection:
        world = await consistent_world(connection)
        # The ledger never learned of the success: only Stripe shows the money was taken.
        captured = await add_order(
            connection,
            house_id=world.house_id,
            user_id=world.user_id,
            quantity=1,
            state=OrderState.EXPIRED,
            charge=None,
            reference=reference,
        )
        await connection.execute(
            update(Order)
            .where(Order.house_id == world.house_id, Order.id != captured.order_id)
            .values(provider=PaymentProvider.PAYPAL)
        )

    assert found(await scoped(database, world, gateway=stripe_gateway)) == {
        (ViolationKind.UNPAID_ORDER_CAPTURED, captured.order)
    }


async def test_unreachable_stripe_is_reported_as_unverified(
    database: Database, owner_engine: AsyncEngine, make_stripe_gateway: GatewayFactory
) -> None:
    unreachable = make_stripe_gateway(base_url=f"http://127.0.0.1:{closed_port()}")
    async with owner_engine.begin() as connection:
        world = await consistent_world(connection)
        await connection.execute(
            update(Order)
            .where(Order.id == world.paid.order_id)
            .values(provider_payment_reference=f"pi_{uuid.uuid4().hex}")
        )
        await connection.execute(
            update(Order)
            .where(Order.house_id == world.house_id, Order.id != world.paid.order_id)
            .values(provider=PaymentProvider.PAYPAL)
        )

    assert found(await scoped(database, world, gateway=unreachable)) == {
        (ViolationKind.PROVIDER_CHECK_FAILED, world.paid.order)
    }


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# --- The whole database, and the command -------------------------------------------------------


@dataclass
class Throwaway:
    url: str
    engine: AsyncEngine
    database: Database


@pytest.fixture
async def throwaway() -> AsyncIterator[Throwaway]:
    async with throwaway_database("amesa_invariants", migrated=True) as url:
        engine = create_async_engine(engine_url(url))
        database = Database(url, role="amesa_app", pool_size=1)
        try:
            yield Throwaway(url=url, engine=engine, database=database)
        finally:
            await database.close()
            await engine.dispose()


async def run_command(url: str, *, localstripe: LocalStripe | None = None) -> tuple[int, list[str]]:
    """`python -m server.manage invariants` configured through the environment only."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AMESA_")}
    env |= {
        "AMESA_DATABASE_URL": url,
        "AMESA_REDIS_URL": os.environ.get("AMESA_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "AMESA_ENV": "test",
    }
    if localstripe is not None:
        env |= {
            "AMESA_STRIPE_SECRET_KEY": localstripe.api_key,
            "AMESA_STRIPE_API_BASE": localstripe.base_url,
            "AMESA_STRIPE_LOCALSTRIPE": "1",
        }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.manage",
        "invariants",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None, stderr.decode()
    return process.returncode, stdout.decode().splitlines()


async def test_whole_database_without_violations_passes_and_command_exits_0(
    throwaway: Throwaway,
) -> None:
    async with throwaway.engine.begin() as connection:
        await consistent_world(connection)
        await consistent_world(connection, total=7)

    assert await check_invariants(throwaway.database, gateway=None) == []
    status, lines = await run_command(throwaway.url)
    assert (status, lines) == (0, ["invariants: no violations"])


async def test_command_exits_1_naming_each_violation(throwaway: Throwaway) -> None:
    async with throwaway.engine.begin() as connection:
        clean = await consistent_world(connection)
        world = await consistent_world(connection)
        expired = await add_order(
            connection,
            house_id=world.house_id,
            user_id=world.user_id,
            quantity=1,
            state=OrderState.EXPIRED,
        )

    status, lines = await run_command(throwaway.url)

    assert status == 1
    assert lines[0].startswith(f"CHARGE_WITHOUT_TICKETS {expired.charge}: captured 1000 EUR")
    assert lines[1:] == ["invariants: 1 violation (CHARGE_WITHOUT_TICKETS 1)"]
    assert clean.house not in "\n".join(lines)


async def test_command_asks_stripe_when_configured(
    throwaway: Throwaway, localstripe: LocalStripe, stripe_gateway: StripeGateway
) -> None:
    reference = await unconfirmed_intent(stripe_gateway)
    async with throwaway.engine.begin() as connection:
        house_id = await add_house(connection)
        user_id = await add_user(connection)
        unconfirmed = await add_order(
            connection, house_id=house_id, user_id=user_id, quantity=1, reference=reference
        )

    assert await run_command(throwaway.url) == (0, ["invariants: no violations"])
    status, lines = await run_command(throwaway.url, localstripe=localstripe)
    assert status == 1
    assert lines[0].startswith(f"PAYMENT_NOT_SUCCEEDED {unconfirmed.order}: ")


async def test_oversold_and_overcommitted_houses_are_reported(throwaway: Throwaway) -> None:
    async with throwaway.engine.begin() as connection:
        # The CHECK constraint makes both impossible; the check must not rely on it.
        await connection.execute(
            text("ALTER TABLE houses DROP CONSTRAINT ck_houses_tickets_within_total")
        )
        oversold = await consistent_world(connection)
        await connection.execute(
            update(House).where(House.id == oversold.house_id).values(total_tickets=4)
        )
        overcommitted = await consistent_world(connection)
        await connection.execute(
            update(House).where(House.id == overcommitted.house_id).values(total_tickets=5)
        )
        sold = await connection.scalar(
            select(House.tickets_sold).where(House.id == overcommitted.house_id)
        )
    assert sold == 5

    violations = await check_invariants(throwaway.database, gateway=None)

    assert found(violations) == {
        (ViolationKind.HOUSE_OVERSOLD, oversold.house),
        (ViolationKind.HOUSE_OVERCOMMITTED, overcommitted.house),
    }
