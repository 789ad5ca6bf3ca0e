"""The Python SDK's client against the real server: it attaches the current access token to
every call, and a signed-out client calls public RPCs only.

(grpcio-testing's scripted channel cannot host this test: its `with_call` rejects the
`wait_for_ready` argument that grpc.intercept_channel passes, so the client's interceptor would
never reach it.)
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from amesa_sdk import AmesaClient

from amesa.content.v1 import content_service_pb2 as content_pb
from amesa.user.v1 import user_service_pb2 as user_pb
from server.app import App
from tests.support import token_for


def _get_me(client: AmesaClient) -> grpc.StatusCode:
    try:
        client.user.GetUser(user_pb.GetUserRequest(name="users/me"), timeout=10)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_client_sends_the_current_token_on_every_call(app: App, languages: None) -> None:
    tokens: list[str | None] = [None, token_for(app)]
    client = AmesaClient.connect(f"127.0.0.1:{app.port}", token=lambda: tokens[-1])
    try:
        signed_in = await asyncio.to_thread(_get_me, client)
        tokens.append(None)  # signed out: the next call carries no token
        signed_out = await asyncio.to_thread(_get_me, client)
        response = await asyncio.to_thread(
            client.content.ListLanguages, content_pb.ListLanguagesRequest(), timeout=10
        )
    finally:
        client.channel.close()
    assert signed_in not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
    assert signed_out is grpc.StatusCode.UNAUTHENTICATED
    assert "en" in {language.language_code for language in response.languages}


@pytest.mark.parametrize("token", ["", None])
async def test_client_without_token_sends_no_authorization(app: App, token: str | None) -> None:
    client = AmesaClient.connect(f"127.0.0.1:{app.port}", token=lambda: token)
    try:
        assert await asyncio.to_thread(_get_me, client) is grpc.StatusCode.UNAUTHENTICATED
    finally:
        client.channel.close()
