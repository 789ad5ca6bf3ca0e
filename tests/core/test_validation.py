"""Requests that break a protovalidate rule of the protos are INVALID_ARGUMENT before any handler
runs, with one BadRequest field violation per broken field."""

from __future__ import annotations

import grpc
import pytest

from amesa.lottery.v1 import lottery_service_pb2 as lottery_pb
from amesa.lottery.v1 import lottery_service_pb2_grpc as lottery_grpc
from amesa.user.v1 import user_service_pb2 as user_pb
from amesa.user.v1 import user_service_pb2_grpc as user_grpc
from server.app import App
from tests.support import bearer, failure, token_for


async def test_malformed_resource_name_is_invalid_argument(channel: grpc.aio.Channel) -> None:
    stub = lottery_grpc.LotteryServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetHouse(lottery_pb.GetHouseRequest(name="houses/not-a-uuid"))
    error = failure(raised.value)
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_REQUEST"
    assert [v.field for v in error.field_violations] == ["name"]
    assert error.message.startswith("invalid request: name:")


async def test_every_broken_field_is_reported(app: App, channel: grpc.aio.Channel) -> None:
    stub = user_grpc.UserServiceStub(channel)
    request = user_pb.CreateAddressRequest(
        parent="users/me",
        address=user_pb.Address(line1="x" * 201, city="", country_code="portugal"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateAddress(request, metadata=bearer(token_for(app)))
    error = failure(raised.value)
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field for v in error.field_violations}
    assert {"address.line1", "address.country_code", "address"} <= fields
    assert all(v.description for v in error.field_violations)


async def test_authentication_is_checked_before_validation(channel: grpc.aio.Channel) -> None:
    """An anonymous caller learns nothing about a USER RPC's rules."""
    stub = user_grpc.UserServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateAddress(user_pb.CreateAddressRequest(parent="bad"))
    assert failure(raised.value).code is grpc.StatusCode.UNAUTHENTICATED


async def test_valid_request_reaches_the_handler(app: App, channel: grpc.aio.Channel) -> None:
    stub = user_grpc.UserServiceStub(channel)
    request = user_pb.CreateAddressRequest(
        parent="users/me",
        address=user_pb.Address(line1="Rua das Flores 12", city="Lisboa", country_code="PT"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateAddress(request, metadata=bearer(token_for(app)))
    error = failure(raised.value)
    # The handler itself answers (the token names no account), so authentication and
    # validation both let the call through.
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")
