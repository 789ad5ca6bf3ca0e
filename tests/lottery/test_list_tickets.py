"""LotteryService.ListTickets: the caller's own tickets, newest purchase first then by number,
filtered by house, order and state, in keyset pages bound to the filters."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from server.app import App
from tests.lottery.conftest import Callers, active_house, buy_tickets, new_user
from tests.support import failure


async def _all_pages(
    callers: Callers, request: pb.ListTicketsRequest, metadata: tuple[tuple[str, str | bytes], ...]
) -> list[pb.ListTicketsResponse]:
    pages = []
    while True:
        page = await callers.stub.ListTickets(request, metadata=metadata)
        pages.append(page)
        if not page.next_page_token:
            return pages
        request.page_token = page.next_page_token


async def test_list_tickets_pages_newest_purchase_first_then_by_number(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    first_house = await active_house(callers, owner_engine, total=10)
    second_house = await active_house(callers, owner_engine, total=10)
    user_id, metadata = await new_user(app, owner_engine)
    other_id, _ = await new_user(app, owner_engine)
    await buy_tickets(app, owner_engine, house=first_house.name, user_id=user_id, quantity=2)
    await buy_tickets(app, owner_engine, house=first_house.name, user_id=other_id, quantity=1)
    await buy_tickets(app, owner_engine, house=second_house.name, user_id=user_id, quantity=3)

    pages = await _all_pages(
        callers, pb.ListTicketsRequest(parent="users/me", page_size=2), metadata
    )

    listed = [(t.house, t.number) for page in pages for t in page.tickets]
    assert listed == [
        (second_house.name, 1),
        (second_house.name, 2),
        (second_house.name, 3),
        (first_house.name, 1),
        (first_house.name, 2),
    ]
    assert [len(page.tickets) for page in pages] == [2, 2, 1]
    assert {page.total_size for page in pages} == {5}
    assert all(t.name.startswith(f"users/{user_id}/tickets/") for p in pages for t in p.tickets)


async def test_list_tickets_filters_by_house_order_and_state(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    first_house = await active_house(callers, owner_engine, total=10)
    second_house = await active_house(callers, owner_engine, total=10)
    user_id, metadata = await new_user(app, owner_engine)
    await buy_tickets(app, owner_engine, house=first_house.name, user_id=user_id, quantity=2)
    await buy_tickets(app, owner_engine, house=first_house.name, user_id=user_id, quantity=1)
    await buy_tickets(app, owner_engine, house=second_house.name, user_id=user_id, quantity=3)

    by_house = await callers.stub.ListTickets(
        pb.ListTicketsRequest(parent=f"users/{user_id}", house=first_house.name),
        metadata=metadata,
    )
    order = by_house.tickets[0].order
    by_order = await callers.stub.ListTickets(
        pb.ListTicketsRequest(parent="users/me", order=order), metadata=metadata
    )
    active = await callers.stub.ListTickets(
        pb.ListTicketsRequest(parent="users/me", states=[pb.TICKET_STATE_ACTIVE]),
        metadata=metadata,
    )
    won = await callers.stub.ListTickets(
        pb.ListTicketsRequest(parent="users/me", states=[pb.TICKET_STATE_WON]),
        metadata=metadata,
    )

    assert [t.number for t in by_house.tickets] == [3, 1, 2]
    assert by_house.total_size == 3
    assert [t.number for t in by_order.tickets] == [3]
    assert by_order.tickets[0].order == order
    assert active.total_size == 6
    assert list(won.tickets) == []
    assert won.total_size == 0


async def test_list_tickets_shows_only_the_callers_tickets(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    owner_id, _ = await new_user(app, owner_engine)
    _, stranger = await new_user(app, owner_engine)
    await buy_tickets(app, owner_engine, house=house.name, user_id=owner_id, quantity=2)

    listed = await callers.stub.ListTickets(
        pb.ListTicketsRequest(parent="users/me"), metadata=stranger
    )

    assert list(listed.tickets) == []
    assert listed.total_size == 0


async def test_list_tickets_of_another_user_is_not_owner(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    owner_id, _ = await new_user(app, owner_engine)
    _, stranger = await new_user(app, owner_engine)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.ListTickets(
            pb.ListTicketsRequest(parent=f"users/{owner_id}"), metadata=stranger
        )

    assert failure(raised.value).code is grpc.StatusCode.PERMISSION_DENIED
    assert failure(raised.value).reason == "NOT_OWNER"


async def test_list_tickets_with_a_token_for_other_filters_is_page_token_invalid(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    user_id, metadata = await new_user(app, owner_engine)
    await buy_tickets(app, owner_engine, house=house.name, user_id=user_id, quantity=3)
    page = await callers.stub.ListTickets(
        pb.ListTicketsRequest(parent="users/me", page_size=1), metadata=metadata
    )

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.ListTickets(
            pb.ListTicketsRequest(
                parent="users/me",
                page_size=1,
                page_token=page.next_page_token,
                states=[pb.TICKET_STATE_ACTIVE],
            ),
            metadata=metadata,
        )

    assert failure(raised.value).code is grpc.StatusCode.INVALID_ARGUMENT
    assert failure(raised.value).reason == "PAGE_TOKEN_INVALID"
    assert [v.field for v in failure(raised.value).field_violations] == ["page_token"]


async def test_list_tickets_with_an_unspecified_state_filter_is_invalid_argument(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    _, metadata = await new_user(app, owner_engine)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.ListTickets(
            pb.ListTicketsRequest(parent="users/me", states=[pb.TICKET_STATE_UNSPECIFIED]),
            metadata=metadata,
        )

    assert failure(raised.value).code is grpc.StatusCode.INVALID_ARGUMENT
