"""Sign-in and linking through OAuth / OpenID Connect providers (LoginWithOAuth,
LinkOAuthIdentity).

`OAuthVerifier` turns a credential into a `VerifiedIdentity` before any transaction opens (it
may fetch the provider's JWKS or exchange an authorization code): an ID token is checked for its
signature (RS256/ES256 as the provider's key says; never `none` or HS*), issuer, audience (one
of our client ids), expiry and nonce. `login` and `link` are the rules, inside the transaction.

An identity joins an existing account only through `link` (signed in, password re-entered);
never by email match. OAUTH_SIGN_UP_REQUIRED, OAUTH_EMAIL_TAKEN, TOTP_REQUIRED and the other
errors a client fixes and retries carry an `oauth_ticket`: 256 random bits standing for the
verified identity, kept 10 minutes in Redis under its SHA-256 and deleted when redeemed.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import httpx
import jwt
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from amesa.auth.v1 import auth_service_pb2 as pb
from server.auth import second_factor
from server.auth.accounts import (
    SignedIn,
    account_state_error,
    check_current_password,
    check_sign_up_details,
    create_account,
    load_user,
    sign_in_tokens,
)
from server.auth.alerts import security_alert
from server.auth.jwks import ALLOWED_ALGORITHMS, TIMEOUT, JwksCache, provider_unavailable
from server.auth.models import UserIdentity
from server.auth.outcome import Outcome, failed, succeeded
from server.auth.sessions import start_session
from server.core.audit import record_activity, record_audit
from server.core.context import Principal
from server.core.crypto import PiiCipher
from server.core.errors import (
    AlreadyExists,
    AmesaError,
    FailedPrecondition,
    InvalidArgument,
)
from server.core.models import ActivityKind
from server.core.names import child_name
from server.core.settings import OAuthProvider
from server.core.tokens import AccessTokenSigner
from server.user.models import User

T = TypeVar("T")
# How an invalid token, code or ticket is answered: Unauthenticated (LoginWithOAuth) or
# InvalidArgument (LinkOAuthIdentity, where the caller is signed in).
Invalid = Callable[[str, str], AmesaError]

TICKET_LIFETIME = datetime.timedelta(minutes=10)
TICKET_PREFIX = "auth:oauth_ticket:"
LEEWAY = datetime.timedelta(seconds=60)  # clock skew between us and the provider
# LoginWithOAuth errors the client fixes and retries: they carry a fresh `oauth_ticket`.
LOGIN_TICKETED = frozenset(
    {
        "OAUTH_SIGN_UP_REQUIRED",
        "OAUTH_EMAIL_TAKEN",
        "TOTP_REQUIRED",
        "TOTP_INVALID",
        "UNDERAGE",
        "BIRTH_DATE_INVALID",
        "LANGUAGE_NOT_SUPPORTED",
        "TERMS_VERSION_OUTDATED",
    }
)
LINK_TICKETED = frozenset({"CURRENT_PASSWORD_INCORRECT"})


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """A provider identity whose proof the server checked."""

    provider: str
    subject: str
    email: str | None
    email_verified: bool
    given_name: str
    family_name: str

    @property
    def throttle_key(self) -> str:
        return hashlib.sha256(f"oauth:{self.provider}:{self.subject}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SignUp:
    given_name: str
    family_name: str
    birth_year: int
    birth_month: int
    birth_day: int
    language_code: str
    accepted_terms_version: str
    marketing_opt_in: bool


def sign_up_of(request: pb.LoginWithOAuthRequest) -> SignUp | None:
    if not request.HasField("sign_up"):
        return None
    sign_up = request.sign_up
    return SignUp(
        given_name=sign_up.given_name,
        family_name=sign_up.family_name,
        birth_year=sign_up.birth_date.year,
        birth_month=sign_up.birth_date.month,
        birth_day=sign_up.birth_date.day,
        language_code=sign_up.language_code,
        accepted_terms_version=sign_up.accepted_terms_version,
        marketing_opt_in=sign_up.marketing_opt_in,
    )


def _token_invalid(invalid: Invalid) -> AmesaError:
    return invalid(
        "OAUTH_TOKEN_INVALID",
        "the ID token's signature, issuer, audience, expiry or nonce is wrong",
    )


def _code_invalid(invalid: Invalid) -> AmesaError:
    return invalid(
        "OAUTH_CODE_INVALID",
        "the provider refused the authorization code, verifier or redirect URI",
    )


def _ticket_key(ticket: str) -> str:
    return TICKET_PREFIX + hashlib.sha256(ticket.encode()).hexdigest()


def _nonce_matches(claim: object, nonce: str) -> bool:
    """Equal to the nonce, or to its lowercase hex SHA-256 (Apple hashes it)."""
    if not isinstance(claim, str):
        return False
    hashed = hashlib.sha256(nonce.encode()).hexdigest()
    return hmac.compare_digest(claim.encode(), nonce.encode()) or hmac.compare_digest(
        claim.encode(), hashed.encode()
    )


def _claim_text(claims: dict[str, Any], name: str, limit: int) -> str:
    value = claims.get(name)
    return value[:limit] if isinstance(value, str) else ""


def _identity(provider: OAuthProvider, claims: dict[str, Any]) -> VerifiedIdentity:
    email = claims.get("email")
    verified = claims.get("email_verified")  # Apple sends the string "true"
    return VerifiedIdentity(
        provider=provider.id,
        subject=str(claims["sub"]),
        email=email.strip() if isinstance(email, str) and 3 <= len(email) <= 254 else None,
        email_verified=isinstance(email, str) and (verified is True or verified == "true"),
        given_name=_claim_text(claims, "given_name", 100),
        family_name=_claim_text(claims, "family_name", 100),
    )


class OAuthVerifier:
    """Configured providers, their cached keys, and the tickets (Redis)."""

    def __init__(self, providers: tuple[OAuthProvider, ...], redis: Redis) -> None:
        self._providers = {provider.id: provider for provider in providers}
        self._redis = redis
        self._jwks = JwksCache()

    def _provider(self, provider_id: str) -> OAuthProvider:
        provider = self._providers.get(provider_id)
        if provider is None:
            raise InvalidArgument(
                "OAUTH_PROVIDER_NOT_SUPPORTED",
                f"{provider_id!r} is not a configured sign-in provider",
            )
        return provider

    async def verify(self, credential: pb.OAuthCredential, *, invalid: Invalid) -> VerifiedIdentity:
        provider = self._provider(credential.provider)
        kind = credential.WhichOneof("kind")
        if kind == "oauth_ticket":
            return await self._redeem(provider, credential.oauth_ticket, invalid=invalid)
        if kind == "authorization_code":
            id_token = await self._exchange(provider, credential.authorization_code, invalid)
            return await self._verify_id_token(
                provider, id_token, nonce=credential.nonce or None, invalid=invalid
            )
        if not credential.nonce:  # also refused by the request validation
            raise _token_invalid(invalid)
        return await self._verify_id_token(
            provider, credential.id_token, nonce=credential.nonce, invalid=invalid
        )

    async def _verify_id_token(
        self, provider: OAuthProvider, token: str, *, nonce: str | None, invalid: Invalid
    ) -> VerifiedIdentity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _token_invalid(invalid) from None
        algorithm, kid = header.get("alg"), header.get("kid", "")
        if not isinstance(algorithm, str) or algorithm not in ALLOWED_ALGORITHMS:
            raise _token_invalid(invalid)
        if not isinstance(kid, str):
            raise _token_invalid(invalid)
        key = await self._jwks.key(provider.jwks_url, kid)
        if key is None or key.algorithm_name != algorithm:
            raise _token_invalid(invalid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=list(provider.client_ids),
                issuer=provider.issuer,
                leeway=LEEWAY,
                options={"require": ["iss", "aud", "exp", "iat", "sub"]},
            )
        except jwt.PyJWTError:
            raise _token_invalid(invalid) from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not 1 <= len(subject) <= 255:
            raise _token_invalid(invalid)
        if nonce is not None and not _nonce_matches(claims.get("nonce"), nonce):
            raise _token_invalid(invalid)
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") not in provider.client_ids:
            raise _token_invalid(invalid)  # OIDC Core 3.1.3.7: several audiences need our azp
        return _identity(provider, claims)

    async def _exchange(
        self, provider: OAuthProvider, code: pb.OAuthAuthorizationCode, invalid: Invalid
    ) -> str:
        """Redeems the code and PKCE verifier at the token endpoint; returns the ID token."""
        if provider.token_url is None or code.redirect_uri not in provider.redirect_uris:
            raise _code_invalid(invalid)
        form = {
            "grant_type": "authorization_code",
            "code": code.code,
            "code_verifier": code.code_verifier,
            "redirect_uri": code.redirect_uri,
            "client_id": provider.client_ids[0],
        }
        if provider.client_secret:
            form["client_secret"] = provider.client_secret
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT) as client:
                response = await client.post(
                    provider.token_url, data=form, headers={"accept": "application/json"}
                )
        except httpx.HTTPError:
            raise provider_unavailable() from None
        if response.status_code >= 500:
            raise provider_unavailable()
        try:
            id_token = response.json().get("id_token") if response.status_code == 200 else None
        except ValueError:
            id_token = None
        if not isinstance(id_token, str):
            raise _code_invalid(invalid)
        return id_token

    async def issue_ticket(self, identity: VerifiedIdentity) -> str:
        ticket = secrets.token_urlsafe(32)
        await self._redis.set(_ticket_key(ticket), json.dumps(asdict(identity)), ex=TICKET_LIFETIME)
        return ticket

    async def _redeem(
        self, provider: OAuthProvider, ticket: str, *, invalid: Invalid
    ) -> VerifiedIdentity:
        raw = await self._redis.getdel(_ticket_key(ticket))  # single use, even when it fails
        identity = VerifiedIdentity(**json.loads(raw)) if raw is not None else None
        if identity is None or identity.provider != provider.id:
            raise invalid(
                "OAUTH_TICKET_INVALID",
                "the ticket is unknown, used, expired or for another provider",
            )
        return identity

    async def settle(
        self, outcome: Outcome[T], identity: VerifiedIdentity, *, ticketed: frozenset[str]
    ) -> T:
        """The result, or its error — with a fresh `oauth_ticket` when the client may retry."""
        if outcome.error is not None and outcome.error.reason in ticketed:
            outcome.error.metadata["oauth_ticket"] = await self.issue_ticket(identity)
        return outcome.value()


async def _identity_row(session: AsyncSession, identity: VerifiedIdentity) -> UserIdentity | None:
    return await session.scalar(
        select(UserIdentity)
        .where(UserIdentity.provider == identity.provider, UserIdentity.subject == identity.subject)
        .with_for_update()
    )


async def login(
    session: AsyncSession,
    *,
    signer: AccessTokenSigner,
    cipher: PiiCipher,
    identity: VerifiedIdentity,
    sign_up: SignUp | None,
    totp_code: str | None,
    backup_code: str | None,
) -> Outcome[SignedIn]:
    """A linked identity signs its account in; an unknown one creates an account. Failures the
    client retries are returned, so their writes (activity, a spent code) commit."""
    row = await _identity_row(session, identity)
    if row is None:
        return await _sign_up(
            session, signer=signer, cipher=cipher, identity=identity, sign_up=sign_up
        )
    user = await load_user(session, row.user_id)
    factor_error = await second_factor.check_at_sign_in(
        session, cipher=cipher, user_id=user.id, totp_code=totp_code, backup_code=backup_code
    )
    if factor_error is not None:
        if factor_error.reason == "TOTP_INVALID":
            await record_activity(
                session, user_id=user.id, kind=ActivityKind.LOGIN_FAILED, details={"reason": "totp"}
            )
        return failed(factor_error)
    state_error = await account_state_error(session, user)
    if state_error is not None:
        return failed(state_error)
    refresh = await start_session(session, user_id=user.id)
    user.last_login_time = row.last_login_time = refresh.session.last_use_time
    row.email, row.email_verified = identity.email, identity.email_verified
    await record_activity(
        session,
        user_id=user.id,
        kind=ActivityKind.LOGIN_SUCCEEDED,
        details={"method": "oauth", "provider": identity.provider},
    )
    return succeeded(sign_in_tokens(signer, user=user, refresh=refresh, account_created=False))


def _oauth_email_taken() -> AlreadyExists:
    return AlreadyExists(
        "OAUTH_EMAIL_TAKEN",
        "an account already uses this email: sign in to it and link this provider",
    )


async def _sign_up(
    session: AsyncSession,
    *,
    signer: AccessTokenSigner,
    cipher: PiiCipher,
    identity: VerifiedIdentity,
    sign_up: SignUp | None,
) -> Outcome[SignedIn]:
    if identity.email is None:
        raise FailedPrecondition(
            "OAUTH_EMAIL_MISSING", "the provider did not give an email address for this account"
        )
    # Never linked by email match: the owner signs in and calls LinkOAuthIdentity.
    if await session.scalar(select(User.id).where(User.email == identity.email)) is not None:
        return failed(_oauth_email_taken())
    if sign_up is None:
        return failed(
            FailedPrecondition(
                "OAUTH_SIGN_UP_REQUIRED",
                "a new account needs a birth date and the accepted terms (sign_up)",
            )
        )
    try:
        birth_date = await check_sign_up_details(
            session,
            birth_year=sign_up.birth_year,
            birth_month=sign_up.birth_month,
            birth_day=sign_up.birth_day,
            language_code=sign_up.language_code,
            accepted_terms_version=sign_up.accepted_terms_version,
            field_prefix="sign_up.",
        )
    except AmesaError as error:  # nothing written yet; returned so the error carries a ticket
        return failed(error)
    user = await create_account(
        session,
        cipher=cipher,
        email=identity.email,
        password_hash=None,
        email_verified=identity.email_verified,
        given_name=sign_up.given_name or identity.given_name,
        family_name=sign_up.family_name or identity.family_name,
        birth_date=birth_date,
        language_code=sign_up.language_code,
        accepted_terms_version=sign_up.accepted_terms_version,
        marketing_opt_in=sign_up.marketing_opt_in,
        email_taken=_oauth_email_taken,
    )
    refresh = await start_session(session, user_id=user.id)
    user.last_login_time = refresh.session.last_use_time
    row = await _insert_identity(session, user_id=user.id, identity=identity)
    row.last_login_time = user.last_login_time
    await record_activity(
        session,
        user_id=user.id,
        kind=ActivityKind.LOGIN_SUCCEEDED,
        details={"method": "oauth_sign_up", "provider": identity.provider},
    )
    return succeeded(sign_in_tokens(signer, user=user, refresh=refresh, account_created=True))


def _linked_elsewhere() -> AlreadyExists:
    return AlreadyExists(
        "OAUTH_IDENTITY_LINKED_ELSEWHERE", "this provider account belongs to another account"
    )


async def _insert_identity(
    session: AsyncSession, *, user_id: uuid.UUID, identity: VerifiedIdentity
) -> UserIdentity:
    """The (provider, subject) pair is unique: a concurrent sign-up or link, or (under RLS,
    where other users' rows are invisible) an existing link elsewhere, fails the insert."""
    row = UserIdentity(
        id=uuid.uuid4(),
        user_id=user_id,
        provider=identity.provider,
        subject=identity.subject,
        email=identity.email,
        email_verified=identity.email_verified,
    )
    session.add(row)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise _linked_elsewhere() from None
    await session.refresh(row)
    await record_activity(
        session,
        user_id=user_id,
        kind=ActivityKind.OAUTH_IDENTITY_CHANGED,
        details={
            "change": "linked",
            "provider": identity.provider,
            "identity": child_name(user_id, "oauthIdentities", row.id),
        },
    )
    await security_alert(
        session,
        user_id=user_id,
        alert="oauth_identity_linked",
        details={"provider": identity.provider},
    )
    return row


async def link(
    session: AsyncSession,
    *,
    principal: Principal,
    user_id: uuid.UUID,
    identity: VerifiedIdentity,
    current_password: str,
) -> Outcome[UserIdentity]:
    user = await load_user(session, user_id, lock=True)
    if not identity.email_verified:
        raise FailedPrecondition(
            "OAUTH_EMAIL_NOT_VERIFIED", "the provider does not say this account's email is verified"
        )
    password_error = await check_current_password(user, current_password)
    if password_error is not None:
        return failed(password_error)
    existing = await _identity_row(session, identity)
    if existing is not None and existing.user_id != user_id:
        raise _linked_elsewhere()
    same_provider = await session.scalar(
        select(UserIdentity.id).where(
            UserIdentity.user_id == user_id, UserIdentity.provider == identity.provider
        )
    )
    if existing is not None or same_provider is not None:
        raise AlreadyExists(
            "OAUTH_PROVIDER_ALREADY_LINKED", f"you already linked a {identity.provider} account"
        )
    row = await _insert_identity(session, user_id=user_id, identity=identity)
    if user_id != principal.user_id:
        await record_audit(
            session,
            actor=principal,
            action="auth.link_oauth_identity",
            resource_name=child_name(user_id, "oauthIdentities", row.id),
        )
    return succeeded(row)
