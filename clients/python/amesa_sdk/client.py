"""A synchronous convenience client over a gRPC channel.

    client = AmesaClient.connect("127.0.0.1:50051", token=lambda: session.access_token)
    languages = client.content.ListLanguages(ListLanguagesRequest()).languages

`token` is called before every call, so a refreshed access token is picked up without
re-creating the client. Async code uses the generated stubs directly with a grpc.aio channel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from amesa.auth.v1 import auth_service_pb2_grpc
from amesa.content.v1 import content_service_pb2_grpc
from amesa.lottery.v1 import lottery_service_pb2_grpc
from amesa.payment.v1 import payment_service_pb2_grpc
from amesa.user.v1 import user_service_pb2_grpc

TokenSource = Callable[[], str | None]


class _CallDetails(grpc.ClientCallDetails):
    def __init__(
        self, base: grpc.ClientCallDetails, metadata: tuple[tuple[str, str | bytes], ...]
    ) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


class BearerTokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` when the token source has a token."""

    def __init__(self, token: TokenSource) -> None:
        self._token = token

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        token = self._token()
        metadata = [(k, v) for k, v in (details.metadata or ()) if k != "authorization"]
        if token:
            metadata.append(("authorization", f"Bearer {token}"))
        return _CallDetails(details, tuple(metadata))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


class AmesaClient:
    def __init__(self, channel: grpc.Channel, *, token: TokenSource | None = None) -> None:
        if token is not None:
            channel = grpc.intercept_channel(channel, BearerTokenInterceptor(token))
        self.channel = channel
        self.auth = auth_service_pb2_grpc.AuthServiceStub(channel)
        self.user = user_service_pb2_grpc.UserServiceStub(channel)
        self.lottery = lottery_service_pb2_grpc.LotteryServiceStub(channel)
        self.payment = payment_service_pb2_grpc.PaymentServiceStub(channel)
        self.content = content_service_pb2_grpc.ContentServiceStub(channel)

    @classmethod
    def connect(
        cls, target: str, *, token: TokenSource | None = None, secure: bool = False
    ) -> AmesaClient:
        channel = (
            grpc.secure_channel(target, grpc.ssl_channel_credentials())
            if secure
            else grpc.insecure_channel(target)
        )
        return cls(channel, token=token)
