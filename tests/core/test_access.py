"""The access matrix over every RPC of every service, read from the protos themselves."""

from __future__ import annotations

import grpc
import pytest
from google.api.annotations_pb2 import http as http_rule
from google.protobuf.descriptor import MethodDescriptor

from amesa.options.v1 import options_pb2
from server.app import SERVICE_DESCRIPTORS, App
from server.core.access import AccessLevel
from tests.support import bearer, call_method, failure, token_for

METHODS = [method for service in SERVICE_DESCRIPTORS for method in service.methods]


def level(method: MethodDescriptor) -> AccessLevel:
    return AccessLevel(method.GetOptions().Extensions[options_pb2.access])


def by_level(wanted: AccessLevel) -> list[MethodDescriptor]:
    return [m for m in METHODS if level(m) is wanted]


def test_every_rpc_declares_an_access_level_and_an_http_rule() -> None:
    undeclared = [m.full_name for m in METHODS if level(m) is AccessLevel.UNSPECIFIED]
    without_http = [m.full_name for m in METHODS if not m.GetOptions().HasExtension(http_rule)]
    assert undeclared == []
    assert without_http == []
    assert {s.full_name for s in SERVICE_DESCRIPTORS} == {
        "amesa.auth.v1.AuthService",
        "amesa.user.v1.UserService",
        "amesa.lottery.v1.LotteryService",
        "amesa.payment.v1.PaymentService",
        "amesa.content.v1.ContentService",
    }


@pytest.mark.parametrize(
    "method",
    by_level(AccessLevel.USER) + by_level(AccessLevel.ADMIN),
    ids=lambda m: m.full_name,
)
async def test_anonymous_call_to_protected_rpc_is_unauthenticated(
    channel: grpc.aio.Channel, method: MethodDescriptor
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call_method(channel, method)
    error = failure(raised.value)
    assert error.code is grpc.StatusCode.UNAUTHENTICATED
    assert error.reason == "TOKEN_MISSING"


@pytest.mark.parametrize("method", by_level(AccessLevel.ADMIN), ids=lambda m: m.full_name)
async def test_plain_user_call_to_admin_rpc_is_permission_denied(
    app: App, channel: grpc.aio.Channel, method: MethodDescriptor
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call_method(channel, method, metadata=bearer(token_for(app)))
    error = failure(raised.value)
    assert error.code is grpc.StatusCode.PERMISSION_DENIED
    assert error.reason == "ADMIN_REQUIRED"


async def _auth_outcome(
    channel: grpc.aio.Channel, method: MethodDescriptor, metadata: tuple[tuple[str, str], ...]
) -> str:
    """'passed' when the call got past authentication, else the refusing reason."""
    try:
        await call_method(channel, method, metadata=metadata)
    except grpc.aio.AioRpcError as raised:
        error = failure(raised)
        if error.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return error.reason
    return "passed"


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
async def test_caller_with_enough_rights_gets_past_authentication(
    app: App, channel: grpc.aio.Channel, method: MethodDescriptor
) -> None:
    # An empty request then fails validation or reaches the handler: either way, not auth.
    admin = tuple(bearer(token_for(app, roles=("user", "admin"))))
    user = tuple(bearer(token_for(app)))
    assert await _auth_outcome(channel, method, admin) == "passed"
    if level(method) is not AccessLevel.ADMIN:
        assert await _auth_outcome(channel, method, user) == "passed"
    if level(method) is AccessLevel.PUBLIC:
        assert await _auth_outcome(channel, method, ()) == "passed"
