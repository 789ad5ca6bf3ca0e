"""Rows ↔ UserService messages, field by field."""

from __future__ import annotations

import datetime
import uuid

from google.protobuf import timestamp_pb2

from amesa.type.v1 import money_pb2
from amesa.user.v1 import user_service_pb2 as pb
from server.core.models import ActivityLog
from server.core.money import optional_money
from server.core.names import child_name, user_name
from server.user.admin import UserFilter
from server.user.kyc import Upload
from server.user.models import Role, UserAddress, UserIdentityDocument, UserPhone
from server.user.play import LimitsView, PendingChange
from server.user.profile import ProfileChange, UserView


def timestamp(value: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value)
    return message


def user_to_proto(view: UserView) -> pb.User:
    user = view.user
    message = pb.User(
        name=user_name(user.id),
        email=user.email,
        email_verified=user.email_verify_time is not None,
        pending_email=user.pending_email or "",
        given_name=user.given_name,
        family_name=user.family_name,
        preferred_language=user.preferred_language,
        status=pb.UserStatus.Value(f"USER_STATUS_{view.status}"),
        status_reason=user.status_reason or "",
        kyc_status=pb.KycStatus.Value(f"KYC_STATUS_{user.kyc_status.value}"),
        roles=[pb.Role.Value(f"ROLE_{role}") for role in user.roles],
        marketing_opt_in=user.marketing_opt_in,
        totp_enabled=view.totp_enabled,
        create_time=timestamp(user.create_time),
        update_time=timestamp(user.update_time),
        self_exclusion_end_time=timestamp(view.exclusion.end_time) if view.exclusion else None,
        delete_time=timestamp(user.delete_time),
    )
    if view.birth_date is not None:
        message.birth_date.year = view.birth_date.year
        message.birth_date.month = view.birth_date.month
        message.birth_date.day = view.birth_date.day
    return message


def profile_change_from_proto(request: pb.UpdateUserRequest) -> ProfileChange:
    user = request.user
    return ProfileChange(
        paths=frozenset(request.update_mask.paths),
        email=user.email,
        given_name=user.given_name,
        family_name=user.family_name,
        birth_date=(
            (user.birth_date.year, user.birth_date.month, user.birth_date.day)
            if user.HasField("birth_date")
            else None
        ),
        preferred_language=user.preferred_language,
        marketing_opt_in=user.marketing_opt_in,
    )


def status_from_proto(status: pb.UserStatus.ValueType) -> str:
    return pb.UserStatus.Name(status).removeprefix("USER_STATUS_")


def kyc_status_from_proto(status: pb.KycStatus.ValueType) -> str:
    return pb.KycStatus.Name(status).removeprefix("KYC_STATUS_")


def role_from_proto(role: pb.Role.ValueType) -> Role:
    return Role(pb.Role.Name(role).removeprefix("ROLE_"))


def address_to_proto(address: UserAddress) -> pb.Address:
    return pb.Address(
        name=child_name(address.user_id, "addresses", address.id),
        label=address.label or "",
        line1=address.line1,
        line2=address.line2 or "",
        city=address.city,
        region=address.region or "",
        postal_code=address.postal_code or "",
        country_code=address.country_code,
        primary=address.is_primary,
        create_time=timestamp(address.create_time),
        update_time=timestamp(address.update_time),
    )


def address_fields_from_proto(address: pb.Address) -> dict[str, str | bool | None]:
    """Column values of an Address message (empty optional text stored as NULL)."""
    return {
        "label": address.label or None,
        "line1": address.line1,
        "line2": address.line2 or None,
        "city": address.city,
        "region": address.region or None,
        "postal_code": address.postal_code or None,
        "country_code": address.country_code,
        "is_primary": address.primary,
    }


def phone_to_proto(phone: UserPhone, number: str) -> pb.Phone:
    return pb.Phone(
        name=child_name(phone.user_id, "phones", phone.id),
        phone_number=number,
        verified=phone.verify_time is not None,
        verify_time=timestamp(phone.verify_time),
        primary=phone.is_primary,
        create_time=timestamp(phone.create_time),
        update_time=timestamp(phone.update_time),
    )


def identity_document_to_proto(document: UserIdentityDocument) -> pb.IdentityDocument:
    return pb.IdentityDocument(
        name=child_name(document.user_id, "identityDocuments", document.id),
        document_type=pb.IdentityDocumentType.Value(
            f"IDENTITY_DOCUMENT_TYPE_{document.document_type.value}"
        ),
        issuing_country=document.issuing_country,
        document_number_last4=document.document_number_last4,
        state=pb.IdentityDocumentState.Value(f"IDENTITY_DOCUMENT_STATE_{document.state.value}"),
        content_type=document.content_type.value,
        size_bytes=document.size_bytes,
        review_reason=document.review_reason or "",
        create_time=timestamp(document.create_time),
        review_time=timestamp(document.review_time),
    )


def document_type_from_proto(value: pb.IdentityDocumentType.ValueType) -> str:
    return pb.IdentityDocumentType.Name(value).removeprefix("IDENTITY_DOCUMENT_TYPE_")


def _pending(change: PendingChange | None, currency: str) -> pb.PendingLimitChange | None:
    if change is None:
        return None
    return pb.PendingLimitChange(
        limit=optional_money(change.amount_minor, currency),
        effective_time=timestamp(change.effective_time),
    )


def play_limits_to_proto(view: LimitsView) -> pb.PlayLimits:
    currency = view.currency
    return pb.PlayLimits(
        name=f"{user_name(view.user_id)}/playLimits",
        daily_limit=optional_money(view.daily.amount_minor, currency),
        weekly_limit=optional_money(view.weekly.amount_minor, currency),
        monthly_limit=optional_money(view.monthly.amount_minor, currency),
        pending_daily_limit=_pending(view.daily.pending, currency),
        pending_weekly_limit=_pending(view.weekly.pending, currency),
        pending_monthly_limit=_pending(view.monthly.pending, currency),
        daily_spent=optional_money(view.daily.spent_minor, currency),
        weekly_spent=optional_money(view.weekly.spent_minor, currency),
        monthly_spent=optional_money(view.monthly.spent_minor, currency),
        update_time=timestamp(view.update_time),
    )


def limit_from_proto(limit: money_pb2.Money | None) -> tuple[int, str] | None:
    """(amount, currency) of a masked limit; None when unset (a removal)."""
    if limit is None:
        return None
    return limit.amount_minor, limit.currency_code


def activity_to_proto(entry: ActivityLog) -> pb.Activity:
    return pb.Activity(
        name=child_name(entry.user_id, "activities", entry.id),
        kind=pb.ActivityKind.Value(f"ACTIVITY_KIND_{entry.kind.value}"),
        create_time=timestamp(entry.create_time),
        ip_address=str(entry.ip_address) if entry.ip_address is not None else "",
        user_agent=entry.user_agent or "",
        details={str(key): str(value) for key, value in entry.details.items()},
    )


def activity_kind_from_proto(kind: pb.ActivityKind.ValueType) -> str:
    return pb.ActivityKind.Name(kind).removeprefix("ACTIVITY_KIND_")


def optional_time(request: pb.ListActivityRequest, field: str) -> datetime.datetime | None:
    if not request.HasField(field):  # type: ignore[arg-type]
        return None
    value: timestamp_pb2.Timestamp = getattr(request, field)
    return value.ToDatetime(tzinfo=datetime.UTC)


def user_filter_from_proto(request: pb.ListUsersRequest) -> UserFilter:
    return UserFilter(
        email_prefix=request.email,
        statuses=[status_from_proto(status) for status in request.statuses],
        kyc_statuses=[kyc_status_from_proto(status) for status in request.kyc_statuses],
        roles=[role_from_proto(role).value for role in request.roles],
        order_by=request.order_by,
    )


def upload_from_proto(request: pb.UploadIdentityDocumentRequest) -> Upload:
    return Upload(
        document_type=document_type_from_proto(request.document_type),
        issuing_country=request.issuing_country,
        document_number=request.document_number,
        content=request.content,
        request_id=uuid.UUID(request.request_id) if request.request_id else None,
    )


def limit_changes_from_proto(
    request: pb.UpdatePlayLimitsRequest,
) -> dict[str, tuple[int, str] | None]:
    """Masked limit field → (amount, currency), or None for a removal."""
    limits = request.play_limits
    changes: dict[str, tuple[int, str] | None] = {}
    for path in request.update_mask.paths:
        value = getattr(limits, path) if limits.HasField(path) else None  # type: ignore[arg-type]
        changes[path] = limit_from_proto(value)
    return changes
