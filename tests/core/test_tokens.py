"""Forged, expired and misdirected access tokens are refused before any handler runs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.app import SERVICE_DESCRIPTORS, App
from server.core.tokens import AccessTokenSigner, key_id
from tests.support import bearer, call_method, failure, token_for

GET_USER = next(s for s in SERVICE_DESCRIPTORS if s.name == "UserService").methods_by_name[
    "GetUser"
]
LIST_LANGUAGES = next(s for s in SERVICE_DESCRIPTORS if s.name == "ContentService").methods_by_name[
    "ListLanguages"
]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(app: App, **overrides: object) -> dict[str, object]:
    now = int(datetime.now(UTC).timestamp())
    claims: dict[str, object] = {
        "iss": app.settings.jwt_issuer,
        "aud": app.settings.jwt_audience,
        "sub": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "roles": ["user", "admin"],
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return claims


def _kid(app: App) -> str:
    return key_id(app.signer.public_key)


def expired(app: App, _key: Ed25519PrivateKey) -> str:
    past = datetime.now(UTC) - timedelta(hours=1)
    return app.signer.issue(user_id=uuid.uuid4(), session_id=uuid.uuid4(), roles=[], now=past).token


def wrong_audience(app: App, signing_key: Ed25519PrivateKey) -> str:
    signer = AccessTokenSigner(signing_key, issuer=app.settings.jwt_issuer, audience="other")
    return signer.issue(user_id=uuid.uuid4(), session_id=uuid.uuid4(), roles=[]).token


def wrong_issuer(app: App, signing_key: Ed25519PrivateKey) -> str:
    signer = AccessTokenSigner(
        signing_key, issuer="https://evil", audience=app.settings.jwt_audience
    )
    return signer.issue(user_id=uuid.uuid4(), session_id=uuid.uuid4(), roles=[]).token


def alg_none(app: App, _key: Ed25519PrivateKey) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": _kid(app)}).encode())
    return f"{header}.{_b64(json.dumps(_claims(app)).encode())}."


def hs256_with_public_key(app: App, _key: Ed25519PrivateKey) -> str:
    """The classic confusion attack: HMAC keyed with the server's published public key."""
    public_pem = app.signer.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": _kid(app)}).encode())
    payload = _b64(json.dumps(_claims(app)).encode())
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def tampered(app: App, _key: Ed25519PrivateKey) -> str:
    """A genuine user token whose payload was edited to add the admin role."""
    header, _payload, signature = token_for(app).split(".")
    payload = _b64(json.dumps(_claims(app)).encode())
    return f"{header}.{payload}.{signature}"


def foreign_key_same_kid(app: App, _key: Ed25519PrivateKey) -> str:
    other = Ed25519PrivateKey.generate()
    return jwt.encode(_claims(app), other, algorithm="EdDSA", headers={"kid": _kid(app)})


def not_a_jwt(_app: App, _key: Ed25519PrivateKey) -> str:
    return "not-a-token"


ATTACKS: dict[str, tuple[Callable[[App, Ed25519PrivateKey], str], str]] = {
    "expired": (expired, "TOKEN_EXPIRED"),
    "wrong_audience": (wrong_audience, "TOKEN_INVALID"),
    "wrong_issuer": (wrong_issuer, "TOKEN_INVALID"),
    "alg_none": (alg_none, "TOKEN_INVALID"),
    "hs256_with_public_key": (hs256_with_public_key, "TOKEN_INVALID"),
    "tampered_payload": (tampered, "TOKEN_INVALID"),
    "signed_by_another_key": (foreign_key_same_kid, "TOKEN_INVALID"),
    "not_a_jwt": (not_a_jwt, "TOKEN_INVALID"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_bad_token_is_unauthenticated(
    app: App, channel: grpc.aio.Channel, signing_key: Ed25519PrivateKey, attack: str
) -> None:
    make_token, reason = ATTACKS[attack]
    for method in (GET_USER, LIST_LANGUAGES):  # refused on USER and PUBLIC RPCs alike
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call_method(channel, method, metadata=bearer(make_token(app, signing_key)))
        error = failure(raised.value)
        assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, reason)


async def test_authorization_header_must_be_a_bearer_token(
    app: App, channel: grpc.aio.Channel
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call_method(channel, GET_USER, metadata=(("authorization", "Basic dXNlcjpwYXNz"),))
    error = failure(raised.value)
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")


async def test_valid_token_gets_past_authentication(app: App, channel: grpc.aio.Channel) -> None:
    code = grpc.StatusCode.OK
    try:
        await call_method(channel, GET_USER, metadata=bearer(token_for(app)))
    except grpc.aio.AioRpcError as raised:
        code = raised.code()
    assert code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
