"""AuthService.LinkOAuthIdentity: the only way a provider identity joins an existing account."""

from __future__ import annotations

import uuid
from typing import Any, TypeAlias

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.auth.v1 import auth_service_pb2 as pb
from amesa.auth.v1 import auth_service_pb2_grpc
from tests.auth.conftest import Account, from_ip, new_ip, register, with_bearer
from tests.auth.oidc_issuer import (  # noqa: F401 - fixtures
    PROVIDER,
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


def _credential(
    issuer: OidcIssuer, subject: str | None = None, **claims: Any
) -> pb.OAuthCredential:
    nonce = new_nonce()
    return id_token_credential(issuer.issue(issuer.claims(subject, nonce=nonce, **claims)), nonce)


async def _link(
    stub: Stub, account: Account, credential: pb.OAuthCredential, password: str | None = None
) -> pb.OAuthIdentity:
    identity: pb.OAuthIdentity = await stub.LinkOAuthIdentity(
        pb.LinkOAuthIdentityRequest(
            parent="users/me",
            credential=credential,
            current_password=account.password if password is None else password,
        ),
        metadata=account.metadata(),
    )
    return identity


async def _link_fails(
    stub: Stub, account: Account, credential: pb.OAuthCredential, password: str | None = None
) -> RpcFailure:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _link(stub, account, credential, password)
    return failure(raised.value)


async def _linked(owner_engine: AsyncEngine, user_id: uuid.UUID) -> list[str]:
    async with owner_engine.connect() as connection:
        return list(
            await connection.scalars(
                text("SELECT subject FROM user_identities WHERE user_id = :id"), {"id": user_id}
            )
        )


async def test_email_taken_then_the_signed_in_owner_links_with_the_ticket(
    oauth_stub: Stub, oidc_issuer: OidcIssuer, owner_engine: AsyncEngine
) -> None:
    account = await register(oauth_stub)
    subject = uuid.uuid4().hex
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await oauth_stub.LoginWithOAuth(
            pb.LoginWithOAuthRequest(
                credential=_credential(oidc_issuer, subject, email=account.email),
                sign_up=sign_up(),
            ),
            metadata=from_ip(new_ip()),
        )
    error = failure(raised.value)
    assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "OAUTH_EMAIL_TAKEN")
    assert await _linked(owner_engine, account.user_id) == []

    identity = await _link(
        oauth_stub, account, ticket_credential(error.error_info.metadata["oauth_ticket"])
    )
    assert identity.name.startswith(f"users/{account.user_id}/oauthIdentities/")
    assert (identity.provider, identity.subject) == (PROVIDER, subject)
    assert identity.email_verified
    assert await _linked(owner_engine, account.user_id) == [subject]
    # From now on the provider signs in to that account.
    tokens = await oauth_stub.LoginWithOAuth(
        pb.LoginWithOAuthRequest(credential=_credential(oidc_issuer, subject)),
        metadata=from_ip(new_ip()),
    )
    assert tokens.user == f"users/{account.user_id}"
    assert not tokens.account_created
    async with owner_engine.connect() as connection:
        kinds = list(
            await connection.scalars(
                text(
                    "SELECT details->>'change' FROM activity_log WHERE user_id = :id AND kind = "
                    "'OAUTH_IDENTITY_CHANGED'"
                ),
                {"id": account.user_id},
            )
        )
    assert kinds == ["linked"]


async def test_a_wrong_password_is_current_password_incorrect(
    oauth_stub: Stub, oidc_issuer: OidcIssuer, owner_engine: AsyncEngine
) -> None:
    account = await register(oauth_stub)
    for password in ("", "not the password"):
        error = await _link_fails(oauth_stub, account, _credential(oidc_issuer), password)
        assert (error.code, error.reason) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "CURRENT_PASSWORD_INCORRECT",
        )
    # The identity was verified: the retry may use the ticket instead of a new provider flow.
    ticket = error.error_info.metadata["oauth_ticket"]
    assert await _linked(owner_engine, account.user_id) == []
    identity = await _link(oauth_stub, account, ticket_credential(ticket))
    assert await _linked(owner_engine, account.user_id) == [identity.subject]


async def test_an_identity_linked_to_another_account_is_refused(
    oauth_stub: Stub, oidc_issuer: OidcIssuer, owner_engine: AsyncEngine
) -> None:
    subject = uuid.uuid4().hex
    other = await oauth_stub.LoginWithOAuth(
        pb.LoginWithOAuthRequest(credential=_credential(oidc_issuer, subject), sign_up=sign_up()),
        metadata=from_ip(new_ip()),
    )
    assert other.account_created
    account = await register(oauth_stub)
    error = await _link_fails(oauth_stub, account, _credential(oidc_issuer, subject))
    assert (error.code, error.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "OAUTH_IDENTITY_LINKED_ELSEWHERE",
    )
    assert await _linked(owner_engine, account.user_id) == []


async def test_a_second_identity_of_the_same_provider_is_refused(
    oauth_stub: Stub, oidc_issuer: OidcIssuer
) -> None:
    account = await register(oauth_stub)
    await _link(oauth_stub, account, _credential(oidc_issuer))
    error = await _link_fails(oauth_stub, account, _credential(oidc_issuer))
    assert (error.code, error.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "OAUTH_PROVIDER_ALREADY_LINKED",
    )


async def test_an_unverified_provider_email_is_refused(
    oauth_stub: Stub, oidc_issuer: OidcIssuer
) -> None:
    account = await register(oauth_stub)
    error = await _link_fails(oauth_stub, account, _credential(oidc_issuer, email_verified=False))
    assert (error.code, error.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "OAUTH_EMAIL_NOT_VERIFIED",
    )


async def test_an_oauth_only_account_links_without_a_password(
    oauth_stub: Stub, oidc_issuer: OidcIssuer, owner_engine: AsyncEngine
) -> None:
    tokens = await oauth_stub.LoginWithOAuth(
        pb.LoginWithOAuthRequest(credential=_credential(oidc_issuer), sign_up=sign_up()),
        metadata=from_ip(new_ip()),
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:  # one identity per provider
        await oauth_stub.LinkOAuthIdentity(
            pb.LinkOAuthIdentityRequest(parent="users/me", credential=_credential(oidc_issuer)),
            metadata=with_bearer(tokens.access_token),
        )
    assert failure(raised.value).reason == "OAUTH_PROVIDER_ALREADY_LINKED"


async def test_a_bad_token_or_ticket_is_invalid_argument(
    oauth_stub: Stub, oidc_issuer: OidcIssuer
) -> None:
    account = await register(oauth_stub)
    forged = _credential(oidc_issuer, aud="someone-else")
    error = await _link_fails(oauth_stub, account, forged)
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "OAUTH_TOKEN_INVALID")
    error = await _link_fails(oauth_stub, account, ticket_credential("y" * 43))
    assert (error.code, error.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "OAUTH_TICKET_INVALID",
    )
    error = await _link_fails(
        oauth_stub, account, pb.OAuthCredential(provider="google", oauth_ticket="y" * 43)
    )
    assert (error.code, error.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "OAUTH_PROVIDER_NOT_SUPPORTED",
    )


async def test_linking_for_another_user_is_not_owner(
    oauth_stub: Stub, oidc_issuer: OidcIssuer
) -> None:
    account, other = await register(oauth_stub), await register(oauth_stub)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await oauth_stub.LinkOAuthIdentity(
            pb.LinkOAuthIdentityRequest(
                parent=f"users/{other.user_id}",
                credential=_credential(oidc_issuer),
                current_password=account.password,
            ),
            metadata=account.metadata(),
        )
    error = failure(raised.value)
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")
