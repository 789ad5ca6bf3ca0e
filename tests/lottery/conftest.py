"""Factories for LotteryService tests: admins and users as token metadata, houses arranged
through CreateHouse/PublishHouse, tickets through the purchase path's own functions
(reserve_tickets, issue_tickets), and rows the RPCs cannot reach yet (states set by later
features, images before AddHouseImage, orders before PurchaseTickets) through the table owner."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import timestamp_pb2
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from amesa.lottery.v1 import lottery_service_pb2_grpc
from amesa.type.v1 import money_pb2
from server.app import App
from server.lottery.cache import CatalogueCache
from server.lottery.models import House, HouseImage, HouseState, Ticket
from server.lottery.tickets import issue_tickets, reserve_tickets
from server.payment.models import Order, OrderState, PaymentProvider
from server.user.models import User
from tests.support import bearer, token_for

Metadata = tuple[tuple[str, str | bytes], ...]


@dataclass(frozen=True)
class Callers:
    stub: lottery_service_pb2_grpc.LotteryServiceAsyncStub
    admin: Metadata
    user: Metadata
    user_id: uuid.UUID


@pytest.fixture
def callers(app: App, channel: grpc.aio.Channel) -> Callers:
    user_id = uuid.uuid4()
    return Callers(
        stub=lottery_service_pb2_grpc.LotteryServiceStub(channel),
        admin=tuple(bearer(token_for(app, roles=("user", "admin")))),
        user=tuple(bearer(token_for(app, user_id=user_id))),
        user_id=user_id,
    )


def ts(value: datetime.datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value)
    return message


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def eur(amount_minor: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="EUR", amount_minor=amount_minor)


def terms(
    *,
    price_minor: int = 1000,
    total: int = 100,
    opens_in: datetime.timedelta = datetime.timedelta(days=1),
    draw_time: datetime.datetime | None = None,
) -> pb.LotteryTerms:
    opens = now() + opens_in
    return pb.LotteryTerms(
        ticket_price=eur(price_minor),
        total_tickets=total,
        min_participation=0,
        max_tickets_per_order=min(10, total),
        max_tickets_per_user=min(20, total),
        sales_open_time=ts(opens),
        sales_close_time=ts(opens + datetime.timedelta(days=10)),
        draw_time=ts(draw_time or opens + datetime.timedelta(days=11)),
    )


def complete_house(
    *,
    title: str | None = None,
    city: str | None = None,
    latitude: float = 38.7223,
    longitude: float = -9.1393,
    lottery_terms: pb.LotteryTerms | None = None,
    **fields: object,
) -> pb.House:
    """A house with everything PublishHouse needs but images."""
    suffix = uuid.uuid4().hex[:8]
    defaults: dict[str, object] = {
        "description": "A lovely place with a garden",
        "country_code": "PT",
        "street": "Rua Augusta 1",
        "postal_code": "1100-048",
        "property_type": pb.PROPERTY_TYPE_HOUSE,
        "bedrooms": 3,
        "bathrooms": 2,
        "area_m2": 120.5,
        "property_value": eur(50_000_000),
        "features": ["garden", "sea view"],
    }
    house = pb.House(
        title=title or f"House {suffix}",
        city=city or f"City{suffix}",
        lottery_terms=lottery_terms or terms(),
        **(defaults | fields),  # type: ignore[arg-type]
    )
    house.location.latitude = latitude
    house.location.longitude = longitude
    return house


async def add_image(owner_engine: AsyncEngine, house_name: str, *, position: int = 0) -> None:
    house_id = uuid.UUID(house_name.split("/")[1])
    async with owner_engine.begin() as connection:
        await connection.execute(
            insert(HouseImage).values(
                house_id=house_id,
                source_uri=f"https://images.amesa.io/{uuid.uuid4().hex}.jpg",
                alt_text="Front of the house",
                position=position,
            )
        )


async def create_house(callers: Callers, house: pb.House | None = None) -> pb.House:
    created: pb.House = await callers.stub.CreateHouse(
        pb.CreateHouseRequest(house=house or complete_house()), metadata=callers.admin
    )
    return created


async def published_house(
    callers: Callers, owner_engine: AsyncEngine, house: pb.House | None = None
) -> pb.House:
    created = await create_house(callers, house)
    await add_image(owner_engine, created.name)
    published: pb.House = await callers.stub.PublishHouse(
        pb.PublishHouseRequest(name=created.name), metadata=callers.admin
    )
    return published


async def force_state(
    app: App, owner_engine: AsyncEngine, house_name: str, state: HouseState
) -> None:
    """Puts a published house in a state only later features (sales, scheduler, draw) reach,
    and invalidates the catalogue cache as those features will."""
    house_id = uuid.UUID(house_name.split("/")[1])
    values: dict[str, object] = {"state": state}
    if state is HouseState.CANCELLED:
        values |= {"cancel_time": now(), "cancel_reason": "test"}
    async with owner_engine.begin() as connection:
        await connection.execute(update(House).where(House.id == house_id).values(**values))
    await CatalogueCache(app.redis).invalidate()


# --- Tickets -----------------------------------------------------------------------------------


async def new_user(app: App, owner_engine: AsyncEngine) -> tuple[uuid.UUID, Metadata]:
    """A user row (tickets and orders reference users) and that user's token metadata."""
    async with owner_engine.begin() as connection:
        user_id = await connection.scalar(
            insert(User)
            .values(
                email=f"buyer-{uuid.uuid4().hex[:12]}@example.com",
                given_name="Bea",
                family_name="Buyer",
            )
            .returning(User.id)
        )
    assert isinstance(user_id, uuid.UUID)
    return user_id, tuple(bearer(token_for(app, user_id=user_id)))


async def active_house(callers: Callers, owner_engine: AsyncEngine, *, total: int) -> pb.House:
    """A house published with sales already open, so PublishHouse makes it ACTIVE."""
    lottery_terms = terms(total=total, opens_in=-datetime.timedelta(hours=1))
    lottery_terms.max_tickets_per_order = total
    lottery_terms.max_tickets_per_user = total
    house = await published_house(
        callers, owner_engine, complete_house(lottery_terms=lottery_terms)
    )
    assert house.state == pb.HOUSE_STATE_ACTIVE
    return house


async def pending_order(
    owner_engine: AsyncEngine, *, house_id: uuid.UUID, user_id: uuid.UUID, quantity: int
) -> uuid.UUID:
    """The order row PurchaseTickets will write (not built yet)."""
    async with owner_engine.begin() as connection:
        order_id = await connection.scalar(
            insert(Order)
            .values(
                user_id=user_id,
                house_id=house_id,
                request_id=uuid.uuid4(),
                quantity=quantity,
                unit_price_minor=1000,
                subtotal_minor=1000 * quantity,
                total_minor=1000 * quantity,
                currency="EUR",
                provider=PaymentProvider.STRIPE,
                expire_time=now() + datetime.timedelta(minutes=15),
            )
            .returning(Order.id)
        )
    assert isinstance(order_id, uuid.UUID)
    return order_id


async def buy_tickets(
    app: App, owner_engine: AsyncEngine, *, house: str, user_id: uuid.UUID, quantity: int
) -> list[Ticket]:
    """What the purchase path does: reserve, create the order, then fulfil it (issue_tickets)."""
    house_id = uuid.UUID(house.split("/")[1])
    async with app.deps.database.session(system=True) as session:
        await reserve_tickets(session, house_id=house_id, quantity=quantity)
    order_id = await pending_order(
        owner_engine, house_id=house_id, user_id=user_id, quantity=quantity
    )
    moment = datetime.datetime.now(datetime.UTC)
    async with app.deps.database.session(system=True) as session:
        await session.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(state=OrderState.PAID, paid_time=moment)
        )
        issued = await issue_tickets(
            session,
            house_id=house_id,
            user_id=user_id,
            order_id=order_id,
            quantity=quantity,
            now=moment,
        )
    await CatalogueCache(app.redis).invalidate()
    return issued
