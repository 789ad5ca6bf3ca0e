"""AuthService.GetJwks: the public keys that verify access tokens, for anyone."""

from __future__ import annotations

import jwt

from amesa.auth.v1 import auth_service_pb2 as pb
from amesa.auth.v1 import auth_service_pb2_grpc
from server.app import App
from tests.auth.conftest import register


async def test_get_jwks_serves_the_key_that_signs_access_tokens(
    app: App, stub: auth_service_pb2_grpc.AuthServiceAsyncStub
) -> None:
    response = await stub.GetJwks(pb.GetJwksRequest())
    account = await register(stub)
    header_kid = app.verifier.jwks[0]["kid"]
    assert response.keys[0] == pb.JsonWebKey(
        kty="OKP",
        crv="Ed25519",
        x=app.verifier.jwks[0]["x"],
        kid=header_kid,
        alg="EdDSA",
        use="sig",
    )
    assert jwt.get_unverified_header(account.tokens.access_token)["kid"] == header_kid
