"""LotteryService.GetTicket: the caller's own ticket with its secret id and leaf; someone else's
ticket is NOT_FOUND under users/me and NOT_OWNER under their users/{id}."""

from __future__ import annotations

import uuid

import grpc
import pytest
from amesa_sdk.draw1 import leaf_hash
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from server.app import App
from tests.lottery.conftest import Callers, active_house, buy_tickets, new_user, ts
from tests.support import failure


async def test_get_ticket_returns_the_owners_ticket_with_secret_and_leaf(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    user_id, metadata = await new_user(app, owner_engine)
    (ticket,) = await buy_tickets(app, owner_engine, house=house.name, user_id=user_id, quantity=1)
    name = f"users/{user_id}/tickets/{ticket.id}"

    by_me = await callers.stub.GetTicket(
        pb.GetTicketRequest(name=f"users/me/tickets/{ticket.id}"), metadata=metadata
    )
    by_id = await callers.stub.GetTicket(pb.GetTicketRequest(name=name), metadata=metadata)

    purchase_ms = int(ticket.purchase_time.timestamp() * 1000)
    assert (
        by_me
        == by_id
        == pb.Ticket(
            name=name,
            house=house.name,
            number=1,
            leaf_index=0,
            purchase_time=ts(ticket.purchase_time),
            order=f"users/{user_id}/orders/{ticket.order_id}",
            secret_id=ticket.secret_id.hex(),
            leaf_hash=leaf_hash(
                house_id=uuid.UUID(house.name.split("/")[1]),
                number=1,
                secret=ticket.secret_id,
                purchase_time_ms=purchase_ms,
            ).hex(),
            state=pb.TICKET_STATE_ACTIVE,
        )
    )


async def test_get_ticket_of_another_user_under_me_is_not_found(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    owner_id, _ = await new_user(app, owner_engine)
    _, stranger = await new_user(app, owner_engine)
    (ticket,) = await buy_tickets(app, owner_engine, house=house.name, user_id=owner_id, quantity=1)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.GetTicket(
            pb.GetTicketRequest(name=f"users/me/tickets/{ticket.id}"), metadata=stranger
        )

    assert failure(raised.value).code is grpc.StatusCode.NOT_FOUND
    assert failure(raised.value).reason == "TICKET_NOT_FOUND"


async def test_get_ticket_under_another_users_name_is_not_owner(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    house = await active_house(callers, owner_engine, total=10)
    owner_id, _ = await new_user(app, owner_engine)
    _, stranger = await new_user(app, owner_engine)
    (ticket,) = await buy_tickets(app, owner_engine, house=house.name, user_id=owner_id, quantity=1)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.GetTicket(
            pb.GetTicketRequest(name=f"users/{owner_id}/tickets/{ticket.id}"), metadata=stranger
        )

    assert failure(raised.value).code is grpc.StatusCode.PERMISSION_DENIED
    assert failure(raised.value).reason == "NOT_OWNER"


async def test_get_unknown_ticket_is_not_found(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    _, metadata = await new_user(app, owner_engine)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.GetTicket(
            pb.GetTicketRequest(name=f"users/me/tickets/{uuid.uuid4()}"), metadata=metadata
        )

    assert failure(raised.value).code is grpc.StatusCode.NOT_FOUND
    assert failure(raised.value).reason == "TICKET_NOT_FOUND"


async def test_get_ticket_with_a_malformed_name_is_invalid_argument(
    app: App, callers: Callers, owner_engine: AsyncEngine
) -> None:
    _, metadata = await new_user(app, owner_engine)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await callers.stub.GetTicket(
            pb.GetTicketRequest(name="users/me/tickets/not-a-uuid"), metadata=metadata
        )

    assert failure(raised.value).code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in failure(raised.value).field_violations] == ["name"]
