"""Errors reach clients as google.rpc.Status with ErrorInfo, and internals never leak."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from amesa.content.v1 import content_service_pb2, content_service_pb2_grpc
from server.core.settings import Settings
from tests.support import bearer, failure, separate_server, token_for

UNDECLARED_SERVICE = "amesa.test.v1.UndeclaredService"


async def _echo(request: bytes, context: Any) -> bytes:
    return request


async def test_rpc_without_access_option_cannot_be_called(settings: Settings) -> None:
    handler = grpc.method_handlers_generic_handler(
        UNDECLARED_SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    async with (
        separate_server(settings, extra_handlers=[handler]) as app,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel,
    ):
        echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            f"/{UNDECLARED_SERVICE}/Echo"
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await echo(b"hello", metadata=bearer(token_for(app, roles=("user", "admin"))))
    error = failure(raised.value)
    assert error.code is grpc.StatusCode.PERMISSION_DENIED
    assert error.reason == "ACCESS_NOT_DECLARED"
    assert error.error_info.domain == "amesa.io"


async def test_unexpected_failure_is_internal_with_only_a_request_id(settings: Settings) -> None:
    # A database nobody listens on: the driver raises a connection error with host and port in
    # its text. The client must see none of it.
    broken_url = "postgresql://amesa:secret-password@127.0.0.1:1/nowhere"
    async with (
        separate_server(settings, database_url=broken_url) as app,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel,
    ):
        stub = content_service_pb2_grpc.ContentServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ListLanguages(
                content_service_pb2.ListLanguagesRequest(),
                metadata=(("x-request-id", "req-internal-1"),),
            )
    error = failure(raised.value)
    assert error.code is grpc.StatusCode.INTERNAL
    assert error.reason == "INTERNAL"
    assert error.message == "internal error (request id req-internal-1)"
    assert dict(error.error_info.metadata) == {"request_id": "req-internal-1"}
    text = str(error.status)
    for secret in ("secret-password", "127.0.0.1", "Traceback", "asyncpg", "nowhere", "SELECT"):
        assert secret not in text
        assert secret not in error.message
