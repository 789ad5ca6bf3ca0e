"""Small helpers the tests share: reading rich error details and calling RPCs generically."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2, status_pb2

from server.app import App, build_server
from server.core.settings import Settings


@dataclass(frozen=True)
class RpcFailure:
    """What a client sees of a failed RPC: the code, the message and the decoded details."""

    code: grpc.StatusCode
    message: str
    status: status_pb2.Status

    @property
    def error_info(self) -> error_details_pb2.ErrorInfo:
        for detail in self.status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return info
        raise AssertionError(f"no ErrorInfo in {self.status}")

    @property
    def reason(self) -> str:
        return self.error_info.reason

    @property
    def field_violations(self) -> list[error_details_pb2.BadRequest.FieldViolation]:
        for detail in self.status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                return list(bad_request.field_violations)
        return []


def failure(error: grpc.aio.AioRpcError) -> RpcFailure:
    status = status_pb2.Status()
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status.ParseFromString(value)
    return RpcFailure(code=error.code(), message=error.details() or "", status=status)


def bearer(token: str) -> Sequence[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def token_for(
    app: App, *, roles: Sequence[str] = ("user",), user_id: uuid.UUID | None = None
) -> str:
    """An access token signed by the server's own key (what Login will hand out)."""
    return app.signer.issue(
        user_id=user_id or uuid.uuid4(), session_id=uuid.uuid4(), roles=roles
    ).token


async def call_method(
    channel: grpc.aio.Channel,
    method: MethodDescriptor,
    request: Message | None = None,
    *,
    metadata: Sequence[tuple[str, str]] = (),
    deadline: float = 10.0,
) -> Any:
    """Calls any RPC by descriptor; for server streams returns the first message (or None)."""
    request_class = GetMessageClass(method.input_type)
    response_class = GetMessageClass(method.output_type)
    path = f"/{method.containing_service.full_name}/{method.name}"
    message = request if request is not None else request_class()
    if method.server_streaming:
        stream = channel.unary_stream(
            path,
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )(message, metadata=metadata, timeout=deadline)
        async for response in stream:
            stream.cancel()
            return response
        return None
    unary = channel.unary_unary(
        path,
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    return await unary(message, metadata=metadata, timeout=deadline)


@asynccontextmanager
async def separate_server(
    settings: Settings,
    *,
    extra_handlers: Sequence[grpc.GenericRpcHandler] = (),
    **overrides: Any,
) -> AsyncIterator[App]:
    """A second production server (own port, own keys), e.g. with a broken dependency."""
    app = build_server(replace(settings, **overrides), address="127.0.0.1:0")
    if extra_handlers:
        app.server.add_generic_rpc_handlers(tuple(extra_handlers))
    await app.start()
    try:
        yield app
    finally:
        await app.stop(grace=0)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a process that needs its port chosen up front
    (a separate server, Envoy, localstripe; aiosmtpd cannot bind port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
