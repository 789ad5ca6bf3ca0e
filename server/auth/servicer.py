"""gRPC adapter of AuthService.

Every AuthService RPC: Register, Login, LoginWithOAuth, RefreshToken, Logout, the session RPCs,
GetJwks, the password RPCs, email and phone verification, TOTP, and the OAuth identity RPCs.

Failures that must keep their writes (a failed login's activity entry, a spent attempt) come
back as an `Outcome` whose `value()` raises after the transaction committed.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2

from amesa.auth.v1 import auth_service_pb2 as pb
from amesa.auth.v1 import auth_service_pb2_grpc
from server.auth import (
    accounts,
    identities,
    mapping,
    oauth,
    phones,
    second_factor,
    sessions,
    verification,
)
from server.auth.throttling import Throttle, email_key
from server.core.context import current_client, require_principal
from server.core.deps import Deps
from server.core.errors import InvalidArgument, Unauthenticated
from server.core.names import parse_id, parse_name, resolve_user
from server.core.pagination import page_size

Context = grpc.aio.ServicerContext[Any, Any]


class AuthServicer(auth_service_pb2_grpc.AuthServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._database = deps.database
        self._throttle = Throttle(deps.rate_limiter)
        self._oauth = oauth.OAuthVerifier(deps.settings.oauth_providers, deps.redis)

    async def Register(self, request: pb.RegisterRequest, context: Context) -> pb.AuthTokens:
        await self._throttle.registration(ip=current_client().ip)
        async with self._database.session(system=True) as session:
            signed_in = await accounts.register(
                session,
                signer=self._deps.signer,
                cipher=self._deps.cipher,
                email=request.email,
                password=request.password,
                given_name=request.given_name,
                family_name=request.family_name,
                birth_year=request.birth_date.year,
                birth_month=request.birth_date.month,
                birth_day=request.birth_date.day,
                language_code=request.language_code,
                accepted_terms_version=request.accepted_terms_version,
                marketing_opt_in=request.marketing_opt_in,
            )
        return mapping.auth_tokens_to_proto(signed_in)

    async def Login(self, request: pb.LoginRequest, context: Context) -> pb.AuthTokens:
        account = email_key(request.email)
        await self._throttle.credential_attempt(account=account, ip=current_client().ip)
        async with self._database.session(system=True) as session:
            outcome = await accounts.login(
                session,
                signer=self._deps.signer,
                cipher=self._deps.cipher,
                email=request.email,
                password=request.password,
                totp_code=request.totp_code or None,
                backup_code=request.backup_code or None,
            )
        signed_in = outcome.value()
        await self._throttle.credential_succeeded(account=account)
        return mapping.auth_tokens_to_proto(signed_in)

    async def LoginWithOAuth(
        self, request: pb.LoginWithOAuthRequest, context: Context
    ) -> pb.AuthTokens:
        identity = await self._oauth.verify(request.credential, invalid=Unauthenticated)
        await self._throttle.credential_attempt(
            account=identity.throttle_key, ip=current_client().ip
        )
        async with self._database.session(system=True) as session:
            outcome = await oauth.login(
                session,
                signer=self._deps.signer,
                cipher=self._deps.cipher,
                identity=identity,
                sign_up=oauth.sign_up_of(request),
                totp_code=request.totp_code or None,
                backup_code=request.backup_code or None,
            )
        signed_in = await self._oauth.settle(outcome, identity, ticketed=oauth.LOGIN_TICKETED)
        await self._throttle.credential_succeeded(account=identity.throttle_key)
        return mapping.auth_tokens_to_proto(signed_in)

    async def RefreshToken(
        self, request: pb.RefreshTokenRequest, context: Context
    ) -> pb.AuthTokens:
        async with self._database.session(system=True) as session:
            outcome = await accounts.refresh(
                session, signer=self._deps.signer, refresh_token=request.refresh_token
            )
        return mapping.auth_tokens_to_proto(outcome.value())

    async def Logout(self, request: pb.LogoutRequest, context: Context) -> empty_pb2.Empty:
        principal = require_principal()
        async with self._database.session(principal) as session:
            await sessions.logout(session, principal=principal)
        return empty_pb2.Empty()

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: Context
    ) -> pb.ListSessionsResponse:
        principal = require_principal()
        user_id = resolve_user(parse_name(request.parent, "users", field="parent")[0], principal)
        async with self._database.session(principal) as session:
            page = await sessions.list_sessions(
                session,
                page_tokens=self._deps.page_tokens,
                user_id=user_id,
                page_size=page_size(request.page_size),
                page_token=request.page_token,
            )
        return pb.ListSessionsResponse(
            sessions=[
                mapping.session_to_proto(row, current_session_id=principal.session_id)
                for row in page.items
            ],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def RevokeSession(
        self, request: pb.RevokeSessionRequest, context: Context
    ) -> empty_pb2.Empty:
        principal = require_principal()
        user, session_id = parse_name(request.name, "users", "sessions")
        user_id = resolve_user(user, principal)
        async with self._database.session(principal) as session:
            await sessions.revoke_named_session(
                session, principal=principal, user_id=user_id, session_id=parse_id(session_id)
            )
        return empty_pb2.Empty()

    async def RevokeAllSessions(
        self, request: pb.RevokeAllSessionsRequest, context: Context
    ) -> pb.RevokeAllSessionsResponse:
        principal = require_principal()
        user_id = resolve_user(parse_name(request.parent, "users", field="parent")[0], principal)
        async with self._database.session(principal) as session:
            count = await sessions.revoke_sessions_of(
                session,
                principal=principal,
                user_id=user_id,
                include_current=request.include_current,
            )
        return pb.RevokeAllSessionsResponse(revoked_count=count)

    async def ListOAuthIdentities(
        self, request: pb.ListOAuthIdentitiesRequest, context: Context
    ) -> pb.ListOAuthIdentitiesResponse:
        principal = require_principal()
        user_id = resolve_user(parse_name(request.parent, "users", field="parent")[0], principal)
        async with self._database.session(principal) as session:
            page = await identities.list_identities(
                session,
                page_tokens=self._deps.page_tokens,
                user_id=user_id,
                page_size=page_size(request.page_size),
                page_token=request.page_token,
            )
        return pb.ListOAuthIdentitiesResponse(
            oauth_identities=[mapping.oauth_identity_to_proto(row) for row in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def LinkOAuthIdentity(
        self, request: pb.LinkOAuthIdentityRequest, context: Context
    ) -> pb.OAuthIdentity:
        principal = require_principal()
        user_id = resolve_user(parse_name(request.parent, "users", field="parent")[0], principal)
        identity = await self._oauth.verify(request.credential, invalid=InvalidArgument)
        await self._throttle.credential_attempt(account=str(user_id), ip=current_client().ip)
        async with self._database.session(principal) as session:
            outcome = await oauth.link(
                session,
                principal=principal,
                user_id=user_id,
                identity=identity,
                current_password=request.current_password,
            )
        linked = await self._oauth.settle(outcome, identity, ticketed=oauth.LINK_TICKETED)
        await self._throttle.credential_succeeded(account=str(user_id))
        return mapping.oauth_identity_to_proto(linked)

    async def UnlinkOAuthIdentity(
        self, request: pb.UnlinkOAuthIdentityRequest, context: Context
    ) -> empty_pb2.Empty:
        principal = require_principal()
        user, identity_id = parse_name(request.name, "users", "oauthIdentities")
        user_id = resolve_user(user, principal)
        async with self._database.session(principal) as session:
            await identities.unlink_identity(
                session, principal=principal, user_id=user_id, identity_id=parse_id(identity_id)
            )
        return empty_pb2.Empty()

    async def GetJwks(self, request: pb.GetJwksRequest, context: Context) -> pb.GetJwksResponse:
        return pb.GetJwksResponse(
            keys=[mapping.json_web_key_to_proto(key) for key in self._deps.verifier.jwks]
        )

    async def ChangePassword(
        self, request: pb.ChangePasswordRequest, context: Context
    ) -> empty_pb2.Empty:
        principal = require_principal()
        user_id = resolve_user(parse_name(request.name, "users")[0], principal)
        await self._throttle.credential_attempt(account=str(user_id), ip=current_client().ip)
        async with self._database.session(principal) as session:
            outcome = await accounts.change_password(
                session,
                user_id=user_id,
                current_session_id=principal.session_id,
                current_password=request.current_password,
                new_password=request.new_password,
            )
        outcome.value()
        await self._throttle.credential_succeeded(account=str(user_id))
        return empty_pb2.Empty()

    async def RequestPasswordReset(
        self, request: pb.RequestPasswordResetRequest, context: Context
    ) -> empty_pb2.Empty:
        ip = current_client().ip
        if await self._throttle.password_reset_request(email=request.email, ip=ip):
            async with self._database.session(system=True) as session:
                await accounts.request_password_reset(session, email=request.email)
        return empty_pb2.Empty()

    async def ResetPassword(
        self, request: pb.ResetPasswordRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._throttle.password_reset(ip=current_client().ip)
        async with self._database.session(system=True) as session:
            await accounts.reset_password(
                session, token=request.token, new_password=request.new_password
            )
        return empty_pb2.Empty()

    async def VerifyEmail(
        self, request: pb.VerifyEmailRequest, context: Context
    ) -> empty_pb2.Empty:
        async with self._database.session(system=True) as session:
            await verification.verify_email(session, token=request.token)
        return empty_pb2.Empty()

    async def ResendEmailVerification(
        self, request: pb.ResendEmailVerificationRequest, context: Context
    ) -> empty_pb2.Empty:
        principal = require_principal()
        user_id = resolve_user(parse_name(request.name, "users")[0], principal)
        await self._throttle.email_verification(user_id=user_id)
        async with self._database.session(principal) as session:
            await accounts.resend_email_verification(session, user_id=user_id)
        return empty_pb2.Empty()

    async def EnrollTotp(
        self, request: pb.EnrollTotpRequest, context: Context
    ) -> pb.EnrollTotpResponse:
        principal = require_principal()
        user_id = resolve_user(parse_name(request.name, "users")[0], principal)
        await self._throttle.credential_attempt(account=str(user_id), ip=current_client().ip)
        async with self._database.session(principal) as session:
            outcome = await accounts.enroll_totp(
                session,
                cipher=self._deps.cipher,
                user_id=user_id,
                current_password=request.current_password,
            )
        enrollment = outcome.value()
        await self._throttle.credential_succeeded(account=str(user_id))
        return mapping.enrollment_to_proto(enrollment)

    async def ConfirmTotp(
        self, request: pb.ConfirmTotpRequest, context: Context
    ) -> pb.ConfirmTotpResponse:
        principal = require_principal()
        user_id = resolve_user(parse_name(request.name, "users")[0], principal)
        await self._throttle.credential_attempt(account=str(user_id), ip=current_client().ip)
        async with self._database.session(principal) as session:
            codes = await second_factor.confirm(
                session, cipher=self._deps.cipher, user_id=user_id, code=request.totp_code
            )
        await self._throttle.credential_succeeded(account=str(user_id))
        return pb.ConfirmTotpResponse(backup_codes=codes)

    async def DisableTotp(
        self, request: pb.DisableTotpRequest, context: Context
    ) -> empty_pb2.Empty:
        principal = require_principal()
        user_id = resolve_user(parse_name(request.name, "users")[0], principal)
        await self._throttle.credential_attempt(account=str(user_id), ip=current_client().ip)
        async with self._database.session(principal) as session:
            await second_factor.disable(
                session,
                cipher=self._deps.cipher,
                user_id=user_id,
                totp_code=request.totp_code or None,
                backup_code=request.backup_code or None,
            )
        await self._throttle.credential_succeeded(account=str(user_id))
        return empty_pb2.Empty()

    async def StartPhoneVerification(
        self, request: pb.StartPhoneVerificationRequest, context: Context
    ) -> pb.StartPhoneVerificationResponse:
        principal = require_principal()
        user_id = resolve_user(parse_name(request.name, "users")[0], principal)
        phone_id = phones.phone_of(request.phone, user_id=user_id, principal=principal)
        await self._throttle.phone_code(user_id=user_id)
        async with self._database.session(principal) as session:
            started = await phones.start(
                session, cipher=self._deps.cipher, user_id=user_id, phone_id=phone_id
            )
        return mapping.phone_verification_to_proto(started)

    async def VerifyPhone(
        self, request: pb.VerifyPhoneRequest, context: Context
    ) -> empty_pb2.Empty:
        principal = require_principal()
        user_id = resolve_user(parse_name(request.name, "users")[0], principal)
        phone_id = phones.phone_of(request.phone, user_id=user_id, principal=principal)
        async with self._database.session(principal) as session:
            outcome = await phones.verify(
                session,
                cipher=self._deps.cipher,
                user_id=user_id,
                phone_id=phone_id,
                code=request.code,
            )
        outcome.value()
        return empty_pb2.Empty()
