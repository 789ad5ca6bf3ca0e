"""AuthService.LoginWithOAuth against a local OpenID Connect provider (tests/auth/oidc_issuer)."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from typing import Any, TypeAlias

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.type import date_pb2  # type: ignore[import-untyped]
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.auth.v1 import auth_service_pb2 as pb
from amesa.auth.v1 import auth_service_pb2_grpc
from server.auth import totp
from server.core.settings import SettingsError, load_oauth_providers
from tests.auth.conftest import from_ip, new_ip, register, with_bearer
from tests.auth.oidc_issuer import (  # noqa: F401 - fixtures
    DOWN_PROVIDER,
    PROVIDER,
    REDIRECT_URI,
    OidcIssuer,
    id_token_credential,
    new_nonce,
    oauth_app_fixture,
    oauth_stub_fixture,
    oidc_issuer_fixture,
    sign_up,
    ticket_credential,
)
from tests.support import RpcFailure, failure

Stub: TypeAlias = "auth_service_pb2_grpc.AuthServiceAsyncStub"


async def _login(stub: Stub, credential: pb.OAuthCredential, **fields: Any) -> pb.AuthTokens:
    tokens: pb.AuthTokens = await stub.LoginWithOAuth(
        pb.LoginWithOAuthRequest(credential=credential, **fields), metadata=from_ip(new_ip())
    )
    return tokens


async def _login_fails(stub: Stub, credential: pb.OAuthCredential, **fields: Any) -> RpcFailure:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _login(stub, credential, **fields)
    return failure(raised.value)


def _fresh(issuer: OidcIssuer, **claims: Any) -> tuple[pb.OAuthCredential, dict[str, Any]]:
    """An ID-token credential with a fresh nonce, and its claims."""
    nonce = new_nonce()
    values = issuer.claims(nonce=nonce, **claims)
    return id_token_credential(issuer.issue(values), nonce), values


def _user_id(tokens: pb.AuthTokens) -> uuid.UUID:
    return uuid.UUID(tokens.user.removeprefix("users/"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    payload = {
        k: int(v.timestamp()) if isinstance(v, datetime.datetime) else v for k, v in claims.items()
    }
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"


def _alg_none(issuer: OidcIssuer, claims: dict[str, Any]) -> str:
    # Compact JWS needs three non-empty parts (the request pattern), so a junk signature.
    return _unsigned({"alg": "none", "kid": issuer.kid, "typ": "JWT"}, claims) + ".AA"


def _hs256_with_public_key(issuer: OidcIssuer, claims: dict[str, Any]) -> str:
    """The key-confusion attack: HMAC keyed with the provider's public key (PyJWT refuses to
    make one, so it is built by hand)."""
    secret = issuer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = _unsigned({"alg": "HS256", "kid": issuer.kid, "typ": "JWT"}, claims)
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


ATTACKS: dict[str, Callable[[OidcIssuer, dict[str, Any]], str]] = {
    "wrong_issuer": lambda i, c: i.issue({**c, "iss": "https://evil.example"}),
    "wrong_audience": lambda i, c: i.issue({**c, "aud": "someone-else"}),
    "expired": lambda i, c: i.issue(
        {**c, "exp": datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)}
    ),
    "signed_by_another_key": lambda i, c: i.issue(c, key=_other_key()),
    "alg_none": _alg_none,
    "alg_not_a_string": lambda i, c: _unsigned({"alg": ["RS256"], "kid": i.kid}, c) + ".AA",
    "hs256_with_the_public_key": _hs256_with_public_key,
    "nonce_mismatch": lambda i, c: i.issue({**c, "nonce": new_nonce()}),
    "missing_nonce": lambda i, c: i.issue({k: v for k, v in c.items() if k != "nonce"}),
    "unknown_kid": lambda i, c: i.issue(c, kid="rotated-away"),
    "unknown_kid_signed_by_another_key": lambda i, c: i.issue(c, key=_other_key(), kid="evil"),
    "several_audiences_without_our_azp": lambda i, c: i.issue(
        {**c, "aud": ["amesa-web", "someone-else"], "azp": "someone-else"}
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_a_forged_or_wrong_id_token_is_oauth_token_invalid(
    oauth_stub: Stub, oidc_issuer: OidcIssuer, owner_engine: AsyncEngine, attack: str
) -> None:
    nonce = new_nonce()
    claims = oidc_issuer.claims(nonce=nonce)
    token = ATTACKS[attack](oidc_issuer, claims)
    error = await _login_fails(oauth_stub, id_token_credential(token, nonce), sign_up=sign_up())
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "OAUTH_TOKEN_INVALID")
    assert "oauth_ticket" not in error.error_info.metadata
    async with owner_engine.connect() as connection:
        created = await connection.scalar(
            text("SELECT count(*) FROM users WHERE email = :email"), {"email": claims["email"]}
        )
    assert created == 0


async def test_unknown_kids_refetch_the_jwks_at_most_once_in_a_while(
    oauth_stub: Stub, oidc_issuer: OidcIssuer
) -> None:
    before = oidc_issuer.jwks_requests
    for _ in range(3):
        nonce = new_nonce()
        token = oidc_issuer.issue(oidc_issuer.claims(nonce=nonce), kid=f"kid-{uuid.uuid4().hex}")
        error = await _login_fails(oauth_stub, id_token_credential(token, nonce))
        assert error.reason == "OAUTH_TOKEN_INVALID"
    assert oidc_issuer.jwks_requests - before <= 1


async def test_a_new_identity_creates_an_account_and_signs_in(
    oauth_stub: Stub, oidc_issuer: OidcIssuer, owner_engine: AsyncEngine
) -> None:
    credential, claims = _fresh(oidc_issuer)
    tokens = await _login(oauth_stub, credential, sign_up=sign_up(marketing_opt_in=True))
    assert tokens.account_created
    assert tokens.token_type == "Bearer"
    assert tokens.access_token
    assert tokens.refresh_token
    user_id = _user_id(tokens)
    listed = await oauth_stub.ListOAuthIdentities(
        pb.ListOAuthIdentitiesRequest(parent="users/me"),
        metadata=with_bearer(tokens.access_token),
    )
    [identity] = listed.oauth_identities
    assert (identity.provider, identity.subject) == (PROVIDER, claims["sub"])
    assert (identity.email, identity.email_verified) == (claims["email"], True)
    assert identity.name.startswith(f"users/{user_id}/oauthIdentities/")
    assert identity.HasField("last_login_time")
    async with owner_engine.connect() as connection:
        row = (
            await connection.execute(
                text(
                    "SELECT email, password_hash, given_name, family_name, email_verify_time, "
                    "marketing_opt_in FROM users WHERE id = :id"
                ),
                {"id": user_id},
            )
        ).one()
    assert row.email == claims["email"]
    assert row.password_hash is None
    assert (row.given_name, row.family_name) == ("Grace", "Hopper")
    assert row.email_verify_time is not None  # the provider said verified
    assert row.marketing_opt_in


async def test_a_returning_identity_signs_in_to_the_same_account(
    oauth_stub: Stub, oidc_issuer: OidcIssuer
) -> None:
    credential, claims = _fresh(oidc_issuer)
    first = await _login(oauth_stub, credential, sign_up=sign_up())
    nonce = new_nonce()
    again = oidc_issuer.issue(oidc_issuer.claims(claims["sub"], nonce=nonce, email=claims["email"]))
    second = await _login(oauth_stub, id_token_credential(again, nonce))
    assert _user_id(second) == _user_id(first)
    assert not second.account_created
    assert second.session != first.session


async def test_a_nonce_hashed_by_the_provider_is_accepted(
    oauth_stub: Stub, oidc_issuer: OidcIssuer
) -> None:
    nonce = new_nonce()
    hashed = hashlib.sha256(nonce.encode()).hexdigest()
    token = oidc_issuer.issue(oidc_issuer.claims(nonce=hashed))
    tokens = await _login(oauth_stub, id_token_credential(token, nonce), sign_up=sign_up())
    assert tokens.account_created


async def test_a_new_identity_without_sign_up_gets_a_single_use_ticket(
    oauth_stub: Stub, oidc_issuer: OidcIssuer
) -> None:
    credential, _ = _fresh(oidc_issuer)
    error = await _login_fails(oauth_stub, credential)
    assert (error.code, error.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "OAUTH_SIGN_UP_REQUIRED",
    )
    ticket = error.error_info.metadata["oauth_ticket"]
    # A sign-up the rules refuse hands back a fresh ticket; the spent one is gone.
    underage = datetime.date.today().replace(year=datetime.date.today().year - 10)
    young = sign_up(birth_date=date_pb2.Date(year=underage.year, month=1, day=1))
    error = await _login_fails(oauth_stub, ticket_credential(ticket), sign_up=young)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "UNDERAGE")
    retry = error.error_info.metadata["oauth_ticket"]
    assert retry != ticket
    spent = await _login_fails(oauth_stub, ticket_credential(ticket), sign_up=sign_up())
    assert (spent.code, spent.reason) == (grpc.StatusCode.UNAUTHENTICATED, "OAUTH_TICKET_INVALID")
    tokens = await _login(oauth_stub, ticket_credential(retry), sign_up=sign_up())
    assert tokens.account_created


async def test_a_ticket_for_another_provider_or_an_unknown_one_is_ticket_invalid(
    oauth_stub: Stub,
) -> None:
    error = await _login_fails(oauth_stub, ticket_credential("x" * 43))
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "OAUTH_TICKET_INVALID")


async def test_an_unconfigured_provider_is_not_supported(
    oauth_stub: Stub, stub: Stub, oidc_issuer: OidcIssuer
) -> None:
    credential, _ = _fresh(oidc_issuer)
    credential.provider = "google"
    error = await _login_fails(oauth_stub, credential)
    assert (error.code, error.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "OAUTH_PROVIDER_NOT_SUPPORTED",
    )
    # The default server has no providers configured at all.
    credential.provider = PROVIDER
    error = await _login_fails(stub, credential)
    assert error.reason == "OAUTH_PROVIDER_NOT_SUPPORTED"


async def test_an_identity_whose_email_has_an_account_is_email_taken_and_changes_nothing(
    oauth_stub: Stub, oidc_issuer: OidcIssuer, owner_engine: AsyncEngine
) -> None:
    account = await register(oauth_stub)
    credential, _ = _fresh(oidc_issuer, email=account.email.upper())
    error = await _login_fails(oauth_stub, credential, sign_up=sign_up())
    assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "OAUTH_EMAIL_TAKEN")
    assert error.error_info.metadata["oauth_ticket"]
    async with owner_engine.connect() as connection:
        linked = await connection.scalar(
            text("SELECT count(*) FROM user_identities WHERE user_id = :id"),
            {"id": account.user_id},
        )
    assert linked == 0


async def test_an_identity_without_email_is_email_missing(
    oauth_stub: Stub, oidc_issuer: OidcIssuer
) -> None:
    credential, _ = _fresh(oidc_issuer, email=None, email_verified=None)
    error = await _login_fails(oauth_stub, credential, sign_up=sign_up())
    assert (error.code, error.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "OAUTH_EMAIL_MISSING",
    )


async def test_an_unverified_provider_email_leaves_the_account_email_unverified(
    oauth_stub: Stub, oidc_issuer: OidcIssuer, owner_engine: AsyncEngine
) -> None:
    credential, _ = _fresh(oidc_issuer, email_verified=False)
    tokens = await _login(oauth_stub, credential, sign_up=sign_up())
    async with owner_engine.connect() as connection:
        verified = await connection.scalar(
            text("SELECT email_verify_time FROM users WHERE id = :id"), {"id": _user_id(tokens)}
        )
    assert verified is None


async def test_a_totp_account_still_needs_the_second_factor(
    oauth_stub: Stub, oidc_issuer: OidcIssuer
) -> None:
    credential, claims = _fresh(oidc_issuer)
    tokens = await _login(oauth_stub, credential, sign_up=sign_up())
    metadata = with_bearer(tokens.access_token)
    enrollment = await oauth_stub.EnrollTotp(
        pb.EnrollTotpRequest(name="users/me"), metadata=metadata
    )
    await oauth_stub.ConfirmTotp(
        pb.ConfirmTotpRequest(name="users/me", totp_code=totp.code_at(enrollment.secret)),
        metadata=metadata,
    )
    nonce = new_nonce()
    again = oidc_issuer.issue(oidc_issuer.claims(claims["sub"], nonce=nonce))
    error = await _login_fails(oauth_stub, id_token_credential(again, nonce))
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOTP_REQUIRED")
    ticket = error.error_info.metadata["oauth_ticket"]
    code = totp.hotp(enrollment.secret, totp.current_step() + 1)
    signed_in = await _login(oauth_stub, ticket_credential(ticket), totp_code=code)
    assert _user_id(signed_in) == _user_id(tokens)
    assert not signed_in.account_created


async def test_an_authorization_code_is_exchanged_once(
    oauth_stub: Stub, oidc_issuer: OidcIssuer
) -> None:
    nonce = new_nonce()
    code, verifier = oidc_issuer.authorize(oidc_issuer.claims(nonce=nonce))
    credential = pb.OAuthCredential(
        provider=PROVIDER,
        nonce=nonce,
        authorization_code=pb.OAuthAuthorizationCode(
            code=code, code_verifier=verifier, redirect_uri=REDIRECT_URI
        ),
    )
    tokens = await _login(oauth_stub, credential, sign_up=sign_up())
    assert tokens.account_created
    error = await _login_fails(oauth_stub, credential, sign_up=sign_up())
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "OAUTH_CODE_INVALID")


@pytest.mark.parametrize("wrong", ["verifier", "redirect_uri"])
async def test_a_wrong_verifier_or_redirect_uri_is_oauth_code_invalid(
    oauth_stub: Stub, oidc_issuer: OidcIssuer, wrong: str
) -> None:
    code, verifier = oidc_issuer.authorize(oidc_issuer.claims())
    redirect_uri = REDIRECT_URI
    if wrong == "verifier":
        verifier = verifier[::-1]
    elif wrong == "redirect_uri":
        redirect_uri = "https://evil.example/callback"
    credential = pb.OAuthCredential(
        provider=PROVIDER,
        authorization_code=pb.OAuthAuthorizationCode(
            code=code, code_verifier=verifier, redirect_uri=redirect_uri
        ),
    )
    error = await _login_fails(oauth_stub, credential, sign_up=sign_up())
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "OAUTH_CODE_INVALID")


async def test_an_unreachable_provider_is_unavailable(
    oauth_stub: Stub, oidc_issuer: OidcIssuer
) -> None:
    credential, _ = _fresh(oidc_issuer)
    credential.provider = DOWN_PROVIDER
    error = await _login_fails(oauth_stub, credential)
    assert (error.code, error.reason) == (
        grpc.StatusCode.UNAVAILABLE,
        "OAUTH_PROVIDER_UNAVAILABLE",
    )
    code = pb.OAuthAuthorizationCode(code="abc", code_verifier="v" * 43, redirect_uri=REDIRECT_URI)
    error = await _login_fails(
        oauth_stub, pb.OAuthCredential(provider=DOWN_PROVIDER, authorization_code=code)
    )
    assert (error.code, error.reason) == (
        grpc.StatusCode.UNAVAILABLE,
        "OAUTH_PROVIDER_UNAVAILABLE",
    )


async def test_a_ticket_is_bound_to_its_provider(oauth_stub: Stub, oidc_issuer: OidcIssuer) -> None:
    credential, _ = _fresh(oidc_issuer)
    error = await _login_fails(oauth_stub, credential)
    ticket = error.error_info.metadata["oauth_ticket"]
    error = await _login_fails(
        oauth_stub, ticket_credential(ticket, provider=DOWN_PROVIDER), sign_up=sign_up()
    )
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "OAUTH_TICKET_INVALID")


async def test_a_ticket_redeemed_concurrently_signs_in_once(
    oauth_stub: Stub, oidc_issuer: OidcIssuer, owner_engine: AsyncEngine
) -> None:
    credential, claims = _fresh(oidc_issuer)
    ticket = (await _login_fails(oauth_stub, credential)).error_info.metadata["oauth_ticket"]
    results = await asyncio.gather(
        *(_login(oauth_stub, ticket_credential(ticket), sign_up=sign_up()) for _ in range(5)),
        return_exceptions=True,
    )
    signed_in = [result for result in results if isinstance(result, pb.AuthTokens)]
    refused = [failure(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(signed_in) == 1
    assert [error.reason for error in refused] == ["OAUTH_TICKET_INVALID"] * 4
    async with owner_engine.connect() as connection:
        users = await connection.scalar(
            text("SELECT count(*) FROM users WHERE email = :email"), {"email": claims["email"]}
        )
    assert users == 1


async def test_concurrent_first_sign_ins_of_one_identity_create_one_account(
    oauth_stub: Stub, oidc_issuer: OidcIssuer, owner_engine: AsyncEngine
) -> None:
    subject = uuid.uuid4().hex
    email = f"race-{subject[:12]}@example.org"
    credentials = []
    for _ in range(4):
        nonce = new_nonce()
        token = oidc_issuer.issue(oidc_issuer.claims(subject, nonce=nonce, email=email))
        credentials.append(id_token_credential(token, nonce))
    results = await asyncio.gather(
        *(_login(oauth_stub, credential, sign_up=sign_up()) for credential in credentials),
        return_exceptions=True,
    )
    signed_in = [result for result in results if isinstance(result, pb.AuthTokens)]
    refused = [failure(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(signed_in) + len(refused) == 4
    assert sum(tokens.account_created for tokens in signed_in) == 1
    assert {_user_id(tokens) for tokens in signed_in} == {_user_id(signed_in[0])}
    # A loser of the race is told the email is taken (by the winner); its retry signs in.
    assert {error.reason for error in refused} <= {"OAUTH_EMAIL_TAKEN"}
    async with owner_engine.connect() as connection:
        identities = await connection.scalar(
            text("SELECT count(*) FROM user_identities WHERE provider = :p AND subject = :s"),
            {"p": PROVIDER, "s": subject},
        )
    assert identities == 1


def test_providers_are_read_from_one_json_variable() -> None:
    assert load_oauth_providers({}) == ()
    [google] = load_oauth_providers(
        {
            "AMESA_OAUTH_PROVIDERS": json.dumps(
                [
                    {
                        "id": "google",
                        "issuer": "https://accounts.google.com",
                        "jwks_url": "https://www.googleapis.com/oauth2/v3/certs",
                        "client_ids": ["web", "ios"],
                    }
                ]
            )
        }
    )
    assert (google.id, google.client_ids, google.token_url) == ("google", ("web", "ios"), None)


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        '[{"id": "google"}]',
        '[{"id": "g", "issuer": "i", "jwks_url": "j", "client_ids": []}]',
        '[{"id": "g", "issuer": "i", "jwks_url": "j", "client_ids": ["a"]},'
        ' {"id": "g", "issuer": "i", "jwks_url": "j", "client_ids": ["a"]}]',
    ],
)
def test_a_malformed_provider_list_is_a_settings_error(raw: str) -> None:
    with pytest.raises(SettingsError, match="AMESA_OAUTH_PROVIDERS"):
        load_oauth_providers({"AMESA_OAUTH_PROVIDERS": raw})
