"""LotteryService.ListHouses: typed filters, full-text ranking, PostGIS radius and distance
order, AIP-132 order_by, keyset pagination stable under inserts, and visibility of drafts.

Every test works in a city of its own (the database is shared by the whole run) and filters on it.
"""

from __future__ import annotations

import datetime
import uuid

import grpc
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from amesa.type.v1 import money_pb2
from server.app import App
from server.lottery.models import House, HouseState
from tests.lottery.conftest import (
    Callers,
    Metadata,
    complete_house,
    create_house,
    eur,
    force_state,
    now,
    published_house,
    terms,
)
from tests.support import failure

LISBON = (38.7223, -9.1393)
PORTO = (41.1579, -8.6291)  # ~274 km from Lisbon
MADRID = (40.4168, -3.7038)  # ~503 km from Lisbon


def unique_city() -> str:
    return f"Town{uuid.uuid4().hex[:10]}"


def titles(response: pb.ListHousesResponse) -> list[str]:
    return [house.title for house in response.houses]


async def list_titles(
    callers: Callers, request: pb.ListHousesRequest, metadata: Metadata = ()
) -> list[str]:
    return titles(await callers.stub.ListHouses(request, metadata=metadata))


async def test_each_filter_narrows_the_houses(callers: Callers, owner_engine: AsyncEngine) -> None:
    city = unique_city()
    await published_house(
        callers,
        owner_engine,
        complete_house(
            title="flat",
            city=city,
            property_type=pb.PROPERTY_TYPE_APARTMENT,
            bedrooms=2,
            property_value=eur(10_000_000),
            lottery_terms=terms(price_minor=500),
        ),
    )
    await published_house(
        callers,
        owner_engine,
        complete_house(
            title="villa",
            city=city,
            property_type=pb.PROPERTY_TYPE_VILLA,
            bedrooms=5,
            property_value=eur(100_000_000),
            lottery_terms=terms(price_minor=2000),
        ),
    )
    await published_house(
        callers,
        owner_engine,
        complete_house(
            title="spanish",
            city=city,
            country_code="ES",
            property_type=pb.PROPERTY_TYPE_HOUSE,
            bedrooms=3,
            property_value=money_pb2.Money(currency_code="USD", amount_minor=50_000_000),
            lottery_terms=terms(price_minor=1000),
        ),
    )

    def request(**fields: object) -> pb.ListHousesRequest:
        return pb.ListHousesRequest(city=city.upper(), order_by="ticket_price", **fields)  # type: ignore[arg-type]

    assert await list_titles(callers, request()) == ["flat", "spanish", "villa"]
    assert await list_titles(callers, request(country_code="ES")) == ["spanish"]
    assert await list_titles(callers, request(min_bedrooms=3)) == ["spanish", "villa"]
    assert await list_titles(
        callers, request(property_types=[pb.PROPERTY_TYPE_APARTMENT, pb.PROPERTY_TYPE_VILLA])
    ) == ["flat", "villa"]
    assert await list_titles(
        callers, request(min_ticket_price=eur(1000), max_ticket_price=eur(1999))
    ) == ["spanish"]
    assert await list_titles(callers, request(max_ticket_price=eur(999))) == ["flat"]
    # A price range in another currency matches no EUR-priced house.
    assert (
        await list_titles(
            callers, request(min_ticket_price=money_pb2.Money(currency_code="USD", amount_minor=1))
        )
        == []
    )
    assert await list_titles(callers, request(min_property_value=eur(50_000_000))) == ["villa"]
    assert await list_titles(
        callers,
        request(max_property_value=money_pb2.Money(currency_code="USD", amount_minor=60_000_000)),
    ) == ["spanish"]
    response = await callers.stub.ListHouses(request(min_bedrooms=3))
    assert response.total_size == 2


async def test_states_filter_and_drafts_only_for_admins(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    city = unique_city()
    await create_house(callers, complete_house(title="draft", city=city))
    await published_house(callers, owner_engine, complete_house(title="upcoming", city=city))
    cancelled = await published_house(
        callers, owner_engine, complete_house(title="cancelled", city=city)
    )
    await force_state(app, owner_engine, cancelled.name, HouseState.CANCELLED)
    deleted = await create_house(callers, complete_house(title="deleted", city=city))
    await callers.stub.DeleteHouse(pb.DeleteHouseRequest(name=deleted.name), metadata=callers.admin)
    by_title = pb.ListHousesRequest(city=city, order_by="create_time")

    assert await list_titles(callers, by_title) == ["upcoming", "cancelled"]
    assert await list_titles(callers, by_title, callers.admin) == ["upcoming", "cancelled"]
    drafts = pb.ListHousesRequest(city=city, states=[pb.HOUSE_STATE_DRAFT])
    assert await list_titles(callers, drafts) == []
    assert await list_titles(callers, drafts, callers.user) == []
    assert await list_titles(callers, drafts, callers.admin) == ["draft"]
    only_cancelled = pb.ListHousesRequest(city=city, states=[pb.HOUSE_STATE_CANCELLED])
    assert await list_titles(callers, only_cancelled) == ["cancelled"]


async def test_query_matches_title_description_and_city_ranked_by_relevance(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    city = unique_city()
    word = f"zq{uuid.uuid4().hex[:8]}"
    await published_house(
        callers,
        owner_engine,
        complete_house(title="in description", city=city, description=f"a {word} terrace"),
    )
    await published_house(
        callers, owner_engine, complete_house(title=f"{word} in title", city=city)
    )
    await published_house(callers, owner_engine, complete_house(title="unrelated", city=city))

    ranked = await list_titles(callers, pb.ListHousesRequest(city=city, query=word))
    assert ranked == [f"{word} in title", "in description"]
    # websearch syntax: a quoted phrase and a negated word.
    assert await list_titles(
        callers, pb.ListHousesRequest(city=city, query=f'"{word} terrace"')
    ) == ["in description"]
    assert await list_titles(callers, pb.ListHousesRequest(city=city, query=f"{word} -title")) == [
        "in description"
    ]
    # The city is part of the search document.
    assert len(await list_titles(callers, pb.ListHousesRequest(query=city))) == 3


async def test_near_keeps_houses_within_the_radius_ordered_by_distance(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    city = unique_city()
    for title, (lat, lng) in (("madrid", MADRID), ("lisbon", LISBON), ("porto", PORTO)):
        await published_house(
            callers,
            owner_engine,
            complete_house(title=title, city=city, latitude=lat, longitude=lng),
        )

    def near(radius_km: float, order_by: str = "distance") -> pb.ListHousesRequest:
        return pb.ListHousesRequest(
            city=city,
            near=pb.GeoRadius(latitude=LISBON[0], longitude=LISBON[1], radius_km=radius_km),
            order_by=order_by,
        )

    assert await list_titles(callers, near(10)) == ["lisbon"]
    assert await list_titles(callers, near(400)) == ["lisbon", "porto"]
    assert await list_titles(callers, near(600)) == ["lisbon", "porto", "madrid"]
    assert await list_titles(callers, near(600, "distance desc")) == ["madrid", "porto", "lisbon"]
    assert (await callers.stub.ListHouses(near(400))).total_size == 2


async def test_order_by_keys_and_directions(callers: Callers, owner_engine: AsyncEngine) -> None:
    city = unique_city()
    draw_time = now() + datetime.timedelta(days=30)
    cheap = await published_house(
        callers,
        owner_engine,
        complete_house(
            title="cheap",
            city=city,
            lottery_terms=terms(price_minor=100, total=10, draw_time=draw_time),
        ),
    )
    dear = await published_house(
        callers,
        owner_engine,
        complete_house(
            title="dear",
            city=city,
            lottery_terms=terms(price_minor=900, total=10, draw_time=draw_time),
        ),
    )
    async with owner_engine.begin() as connection:
        await connection.execute(
            update(House)
            .where(House.id == uuid.UUID(cheap.name.split("/")[1]))
            .values(tickets_sold=2)
        )
        await connection.execute(
            update(House)
            .where(House.id == uuid.UUID(dear.name.split("/")[1]))
            .values(tickets_sold=7)
        )

    async def ordered(order_by: str) -> list[str]:
        return await list_titles(callers, pb.ListHousesRequest(city=city, order_by=order_by))

    assert await ordered("ticket_price") == ["cheap", "dear"]
    assert await ordered("ticket_price desc") == ["dear", "cheap"]
    assert await ordered("sold_ratio desc") == ["dear", "cheap"]
    assert await ordered("create_time desc") == ["dear", "cheap"]
    assert await ordered(" draw_time asc , ticket_price desc ") == ["dear", "cheap"]
    assert await ordered("draw_time, ticket_price") == ["cheap", "dear"]


@pytest.mark.parametrize("order_by", ["title", "ticket_price sideways", "distance"])
async def test_order_by_outside_the_allow_list_is_invalid_argument(
    callers: Callers, order_by: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.ListHouses(pb.ListHousesRequest(order_by=order_by))
    error = failure(raised.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_REQUEST"
    assert error.field_violations


async def test_pages_are_stable_when_houses_are_inserted_between_calls(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    city = unique_city()
    for price in (100, 200, 300, 400, 500):
        await published_house(
            callers,
            owner_engine,
            complete_house(title=f"p{price}", city=city, lottery_terms=terms(price_minor=price)),
        )
    request = pb.ListHousesRequest(city=city, order_by="ticket_price", page_size=2)
    first = await callers.stub.ListHouses(request)
    assert titles(first) == ["p100", "p200"]
    assert first.total_size == 5

    # New houses before the cursor, at it (same price: tie broken by name) and after it.
    for price in (50, 200, 250, 600):
        await published_house(
            callers,
            owner_engine,
            complete_house(title=f"new{price}", city=city, lottery_terms=terms(price_minor=price)),
        )
    seen = titles(first)
    token = first.next_page_token
    while token:
        request.page_token = token
        page = await callers.stub.ListHouses(request)
        seen += titles(page)
        token = page.next_page_token

    originals = [t for t in seen if t.startswith("p")]
    assert originals == ["p100", "p200", "p300", "p400", "p500"]
    assert len(seen) == len(set(seen))
    assert "new50" not in seen  # sorted before the served page: never served late
    assert {"new250", "new600"} <= set(seen)


async def test_page_token_of_other_filters_is_invalid(
    callers: Callers, owner_engine: AsyncEngine
) -> None:
    city = unique_city()
    for _ in range(2):
        await published_house(callers, owner_engine, complete_house(city=city))
    first = await callers.stub.ListHouses(pb.ListHousesRequest(city=city, page_size=1))
    assert first.next_page_token

    for request in (
        pb.ListHousesRequest(
            city=city, page_size=1, order_by="ticket_price", page_token=first.next_page_token
        ),
        pb.ListHousesRequest(city=city, page_size=1, page_token=first.next_page_token + "x"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await callers.stub.ListHouses(request)
        assert failure(raised.value).reason == "PAGE_TOKEN_INVALID"
    # An admin token is bound to the admin view.
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.ListHouses(
            pb.ListHousesRequest(city=city, page_size=1, page_token=first.next_page_token),
            metadata=callers.admin,
        )
    assert failure(raised.value).reason == "PAGE_TOKEN_INVALID"
    second = await callers.stub.ListHouses(
        pb.ListHousesRequest(city=city, page_size=5, page_token=first.next_page_token)
    )
    assert len(second.houses) == 1
    assert second.next_page_token == ""


@pytest.mark.parametrize(
    "order_by",
    ["", "draw_time desc", "sold_ratio", "ticket_price desc, create_time", "distance desc"],
)
async def test_one_house_per_page_walks_the_same_order_as_one_page(
    callers: Callers, owner_engine: AsyncEngine, order_by: str
) -> None:
    city = unique_city()
    word = f"zq{uuid.uuid4().hex[:8]}"
    for i, (lat, lng) in enumerate((LISBON, PORTO, MADRID, LISBON)):
        house = await published_house(
            callers,
            owner_engine,
            complete_house(
                title=f"{word} {'x ' * i}",
                city=city,
                description=f"{word} " * (i + 1),
                latitude=lat,
                longitude=lng,
                lottery_terms=terms(price_minor=100 * (i % 2 + 1), total=10),
            ),
        )
        async with owner_engine.begin() as connection:
            await connection.execute(
                update(House)
                .where(House.id == uuid.UUID(house.name.split("/")[1]))
                .values(tickets_sold=i % 3)
            )
    request = pb.ListHousesRequest(
        city=city,
        query=word,
        order_by=order_by,
        near=pb.GeoRadius(latitude=LISBON[0], longitude=LISBON[1], radius_km=1000),
    )
    everything = [h.name for h in (await callers.stub.ListHouses(request)).houses]
    assert len(everything) == 4

    request.page_size = 1
    walked: list[str] = []
    while True:
        page = await callers.stub.ListHouses(request)
        walked += [h.name for h in page.houses]
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert walked == everything
