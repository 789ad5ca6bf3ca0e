"""AuthService rows and results → protos, field by field."""

from __future__ import annotations

import datetime
import uuid

from google.protobuf.timestamp_pb2 import Timestamp

from amesa.auth.v1 import auth_service_pb2 as pb
from server.auth.accounts import SignedIn
from server.auth.models import UserIdentity, UserSession
from server.auth.phones import StartedVerification
from server.auth.second_factor import Enrollment
from server.core.names import child_name, user_name


def timestamp(value: datetime.datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(value)
    return result


def session_name(user_id: uuid.UUID, session_id: uuid.UUID) -> str:
    return child_name(user_id, "sessions", session_id)


def auth_tokens_to_proto(signed_in: SignedIn) -> pb.AuthTokens:
    user_session = signed_in.refresh.session
    return pb.AuthTokens(
        access_token=signed_in.access.token,
        access_token_expire_time=timestamp(signed_in.access.expire_time),
        refresh_token=signed_in.refresh.refresh_token,
        refresh_token_expire_time=timestamp(signed_in.refresh.expire_time),
        token_type="Bearer",  # noqa: S106 - the OAuth token type, not a secret
        user=user_name(signed_in.user_id),
        session=session_name(signed_in.user_id, user_session.id),
        account_created=signed_in.account_created,
    )


def session_to_proto(user_session: UserSession, *, current_session_id: uuid.UUID) -> pb.Session:
    return pb.Session(
        name=session_name(user_session.user_id, user_session.id),
        device=user_session.device or "",
        user_agent=user_session.user_agent or "",
        ip_address=str(user_session.ip_address) if user_session.ip_address else "",
        create_time=timestamp(user_session.create_time),
        last_use_time=timestamp(user_session.last_use_time),
        expire_time=timestamp(
            min(user_session.idle_expire_time, user_session.absolute_expire_time)
        ),
        current=user_session.id == current_session_id,
    )


def json_web_key_to_proto(key: dict[str, str]) -> pb.JsonWebKey:
    return pb.JsonWebKey(
        kty=key.get("kty", ""),
        crv=key.get("crv", ""),
        x=key.get("x", ""),
        y=key.get("y", ""),
        kid=key.get("kid", ""),
        alg=key.get("alg", ""),
        use=key.get("use", ""),
    )


def enrollment_to_proto(enrollment: Enrollment) -> pb.EnrollTotpResponse:
    return pb.EnrollTotpResponse(
        secret=enrollment.secret,
        otpauth_uri=enrollment.otpauth_uri,
        expire_time=timestamp(enrollment.expire_time),
    )


def phone_verification_to_proto(started: StartedVerification) -> pb.StartPhoneVerificationResponse:
    return pb.StartPhoneVerificationResponse(
        expire_time=timestamp(started.expire_time), max_attempts=started.max_attempts
    )


def oauth_identity_to_proto(identity: UserIdentity) -> pb.OAuthIdentity:
    result = pb.OAuthIdentity(
        name=child_name(identity.user_id, "oauthIdentities", identity.id),
        provider=identity.provider,
        subject=identity.subject,
        email=identity.email or "",
        email_verified=identity.email_verified,
        create_time=timestamp(identity.create_time),
    )
    if identity.last_login_time is not None:
        result.last_login_time.CopyFrom(timestamp(identity.last_login_time))
    return result
