"""gRPC adapter of UserService.

The notification RPCs (ListNotifications, MarkNotificationsRead, WatchNotifications,
Get/UpdateNotificationPreferences) still inherit the generated base implementation, answered
with UNIMPLEMENTED / NOT_IMPLEMENTED.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2

from amesa.user.v1 import user_service_pb2 as pb
from amesa.user.v1 import user_service_pb2_grpc
from server.core.context import require_principal
from server.core.deps import Deps
from server.core.names import parse_id, parse_name, resolve_user
from server.user import activity, addresses, admin, kyc, mapping, phones, play, profile
from server.user.documents import DocumentStore
from server.user.notifications_servicer import NotificationRpcs

Context = grpc.aio.ServicerContext[Any, Any]


class UserServicer(NotificationRpcs, user_service_pb2_grpc.UserServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self._deps = deps  # the notification RPCs (NotificationRpcs) reach everything through it
        self._database = deps.database
        self._cipher = deps.cipher
        self._tokens = deps.page_tokens
        self._store = DocumentStore(deps.cipher, deps.settings.document_dir)

    # Users ---------------------------------------------------------------------------------------

    async def GetUser(self, request: pb.GetUserRequest, context: Context) -> pb.User:
        principal = require_principal()
        (segment,) = parse_name(request.name, "users")
        user_id = resolve_user(segment, principal)
        async with self._database.session(principal) as session:
            view = await profile.get_user(session, user_id=user_id, cipher=self._cipher)
        return mapping.user_to_proto(view)

    async def UpdateUser(self, request: pb.UpdateUserRequest, context: Context) -> pb.User:
        principal = require_principal()
        (segment,) = parse_name(request.user.name, "users", field="user.name")
        user_id = resolve_user(segment, principal, field="user.name")
        async with self._database.session(principal) as session:
            view = await profile.update_user(
                session,
                principal=principal,
                user_id=user_id,
                change=mapping.profile_change_from_proto(request),
                cipher=self._cipher,
            )
        return mapping.user_to_proto(view)

    async def DeleteUser(self, request: pb.DeleteUserRequest, context: Context) -> empty_pb2.Empty:
        principal = require_principal()
        (segment,) = parse_name(request.name, "users")
        user_id = resolve_user(segment, principal)
        async with self._database.session(principal) as session:
            await profile.delete_user(session, principal=principal, user_id=user_id)
        return empty_pb2.Empty()

    # Addresses -----------------------------------------------------------------------------------

    async def ListAddresses(
        self, request: pb.ListAddressesRequest, context: Context
    ) -> pb.ListAddressesResponse:
        principal = require_principal()
        (segment,) = parse_name(request.parent, "users", field="parent")
        user_id = resolve_user(segment, principal, field="parent")
        async with self._database.session(principal) as session:
            page = await addresses.list_addresses(
                session,
                user_id=user_id,
                requested_size=request.page_size,
                token=request.page_token,
                tokens=self._tokens,
            )
        return pb.ListAddressesResponse(
            addresses=[mapping.address_to_proto(a) for a in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def CreateAddress(self, request: pb.CreateAddressRequest, context: Context) -> pb.Address:
        principal = require_principal()
        (segment,) = parse_name(request.parent, "users", field="parent")
        user_id = resolve_user(segment, principal, field="parent")
        async with self._database.session(principal) as session:
            address = await addresses.create_address(
                session,
                principal=principal,
                user_id=user_id,
                fields=mapping.address_fields_from_proto(request.address),
            )
        return mapping.address_to_proto(address)

    async def UpdateAddress(self, request: pb.UpdateAddressRequest, context: Context) -> pb.Address:
        principal = require_principal()
        segment, address = parse_name(
            request.address.name, "users", "addresses", field="address.name"
        )
        user_id = resolve_user(segment, principal, field="address.name")
        async with self._database.session(principal) as session:
            updated = await addresses.update_address(
                session,
                principal=principal,
                user_id=user_id,
                address_id=parse_id(address, field="address.name"),
                paths=frozenset(request.update_mask.paths),
                fields=mapping.address_fields_from_proto(request.address),
            )
        return mapping.address_to_proto(updated)

    async def DeleteAddress(
        self, request: pb.DeleteAddressRequest, context: Context
    ) -> empty_pb2.Empty:
        principal = require_principal()
        segment, address = parse_name(request.name, "users", "addresses")
        user_id = resolve_user(segment, principal)
        async with self._database.session(principal) as session:
            await addresses.delete_address(
                session, principal=principal, user_id=user_id, address_id=parse_id(address)
            )
        return empty_pb2.Empty()

    # Phones --------------------------------------------------------------------------------------

    async def ListPhones(
        self, request: pb.ListPhonesRequest, context: Context
    ) -> pb.ListPhonesResponse:
        principal = require_principal()
        (segment,) = parse_name(request.parent, "users", field="parent")
        user_id = resolve_user(segment, principal, field="parent")
        async with self._database.session(principal) as session:
            page = await phones.list_phones(
                session,
                user_id=user_id,
                requested_size=request.page_size,
                token=request.page_token,
                tokens=self._tokens,
                cipher=self._cipher,
            )
        return pb.ListPhonesResponse(
            phones=[mapping.phone_to_proto(v.phone, v.number) for v in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def CreatePhone(self, request: pb.CreatePhoneRequest, context: Context) -> pb.Phone:
        principal = require_principal()
        (segment,) = parse_name(request.parent, "users", field="parent")
        user_id = resolve_user(segment, principal, field="parent")
        async with self._database.session(principal) as session:
            view = await phones.create_phone(
                session,
                principal=principal,
                user_id=user_id,
                number=request.phone.phone_number,
                primary=request.phone.primary,
                cipher=self._cipher,
            )
        return mapping.phone_to_proto(view.phone, view.number)

    async def UpdatePhone(self, request: pb.UpdatePhoneRequest, context: Context) -> pb.Phone:
        principal = require_principal()
        segment, phone = parse_name(request.phone.name, "users", "phones", field="phone.name")
        user_id = resolve_user(segment, principal, field="phone.name")
        async with self._database.session(principal) as session:
            view = await phones.update_phone(
                session,
                principal=principal,
                user_id=user_id,
                phone_id=parse_id(phone, field="phone.name"),
                paths=frozenset(request.update_mask.paths),
                number=request.phone.phone_number,
                primary=request.phone.primary,
                cipher=self._cipher,
            )
        return mapping.phone_to_proto(view.phone, view.number)

    async def DeletePhone(
        self, request: pb.DeletePhoneRequest, context: Context
    ) -> empty_pb2.Empty:
        principal = require_principal()
        segment, phone = parse_name(request.name, "users", "phones")
        user_id = resolve_user(segment, principal)
        async with self._database.session(principal) as session:
            await phones.delete_phone(
                session, principal=principal, user_id=user_id, phone_id=parse_id(phone)
            )
        return empty_pb2.Empty()

    # Administration ------------------------------------------------------------------------------

    async def ListUsers(
        self, request: pb.ListUsersRequest, context: Context
    ) -> pb.ListUsersResponse:
        principal = require_principal()
        async with self._database.session(principal) as session:
            page = await admin.list_users(
                session,
                filters=mapping.user_filter_from_proto(request),
                requested_size=request.page_size,
                token=request.page_token,
                tokens=self._tokens,
                cipher=self._cipher,
            )
        return pb.ListUsersResponse(
            users=[mapping.user_to_proto(view) for view in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def UpdateUserStatus(
        self, request: pb.UpdateUserStatusRequest, context: Context
    ) -> pb.User:
        principal = require_principal()
        (segment,) = parse_name(request.name, "users")
        user_id = resolve_user(segment, principal)
        async with self._database.session(principal) as session:
            view = await admin.update_user_status(
                session,
                principal=principal,
                user_id=user_id,
                status=mapping.status_from_proto(request.status),
                reason=request.reason,
                cipher=self._cipher,
            )
        return mapping.user_to_proto(view)

    async def SetUserRoles(self, request: pb.SetUserRolesRequest, context: Context) -> pb.User:
        principal = require_principal()
        (segment,) = parse_name(request.name, "users")
        user_id = resolve_user(segment, principal)
        async with self._database.session(principal) as session:
            view = await admin.set_user_roles(
                session,
                principal=principal,
                user_id=user_id,
                roles=[mapping.role_from_proto(role) for role in request.roles],
                cipher=self._cipher,
            )
        return mapping.user_to_proto(view)

    # Identity documents --------------------------------------------------------------------------

    async def ListIdentityDocuments(
        self, request: pb.ListIdentityDocumentsRequest, context: Context
    ) -> pb.ListIdentityDocumentsResponse:
        principal = require_principal()
        (segment,) = parse_name(request.parent, "users", field="parent")
        user_id = resolve_user(segment, principal, field="parent")
        async with self._database.session(principal) as session:
            page = await kyc.list_identity_documents(
                session,
                user_id=user_id,
                requested_size=request.page_size,
                token=request.page_token,
                tokens=self._tokens,
            )
        return pb.ListIdentityDocumentsResponse(
            identity_documents=[mapping.identity_document_to_proto(d) for d in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def UploadIdentityDocument(
        self, request: pb.UploadIdentityDocumentRequest, context: Context
    ) -> pb.IdentityDocument:
        principal = require_principal()
        (segment,) = parse_name(request.parent, "users", field="parent")
        user_id = resolve_user(segment, principal, field="parent")
        async with self._database.session(principal) as session:
            document = await kyc.upload_identity_document(
                session,
                principal=principal,
                user_id=user_id,
                upload=mapping.upload_from_proto(request),
                cipher=self._cipher,
                store=self._store,
            )
        return mapping.identity_document_to_proto(document)

    async def ReviewIdentityDocument(
        self, request: pb.ReviewIdentityDocumentRequest, context: Context
    ) -> pb.IdentityDocument:
        principal = require_principal()
        segment, document = parse_name(request.name, "users", "identityDocuments")
        user_id = resolve_user(segment, principal)
        async with self._database.session(principal) as session:
            reviewed = await kyc.review_identity_document(
                session,
                principal=principal,
                user_id=user_id,
                document_id=parse_id(document),
                approve=request.decision == pb.REVIEW_DECISION_APPROVE,
                reason=request.reason,
            )
        return mapping.identity_document_to_proto(reviewed)

    async def GetIdentityDocumentFile(
        self, request: pb.GetIdentityDocumentFileRequest, context: Context
    ) -> pb.GetIdentityDocumentFileResponse:
        principal = require_principal()
        segment, document = parse_name(request.name, "users", "identityDocuments")
        user_id = resolve_user(segment, principal)
        async with self._database.session(principal) as session:
            file = await kyc.get_identity_document_file(
                session,
                principal=principal,
                user_id=user_id,
                document_id=parse_id(document),
                cipher=self._cipher,
                store=self._store,
            )
        return pb.GetIdentityDocumentFileResponse(
            content=file.content,
            content_type=file.content_type,
            document_number=file.document_number,
        )

    # Responsible play ----------------------------------------------------------------------------

    async def GetPlayLimits(
        self, request: pb.GetPlayLimitsRequest, context: Context
    ) -> pb.PlayLimits:
        principal = require_principal()
        (segment,) = parse_name(request.name.removesuffix("/playLimits"), "users")
        user_id = resolve_user(segment, principal)
        async with self._database.session(principal) as session:
            view = await play.get_play_limits(session, user_id=user_id)
        return mapping.play_limits_to_proto(view)

    async def UpdatePlayLimits(
        self, request: pb.UpdatePlayLimitsRequest, context: Context
    ) -> pb.PlayLimits:
        principal = require_principal()
        field = "play_limits.name"
        (segment,) = parse_name(
            request.play_limits.name.removesuffix("/playLimits"), "users", field=field
        )
        user_id = resolve_user(segment, principal, field=field)
        async with self._database.session(principal) as session:
            view = await play.update_play_limits(
                session,
                principal=principal,
                user_id=user_id,
                changes=mapping.limit_changes_from_proto(request),
            )
        return mapping.play_limits_to_proto(view)

    async def SelfExclude(
        self, request: pb.SelfExcludeRequest, context: Context
    ) -> pb.SelfExcludeResponse:
        principal = require_principal()
        (segment,) = parse_name(request.name, "users")
        user_id = resolve_user(segment, principal)
        async with self._database.session(principal) as session:
            result = await play.self_exclude(
                session,
                principal=principal,
                user_id=user_id,
                months=request.months if request.WhichOneof("period") == "months" else None,
            )
        return pb.SelfExcludeResponse(
            end_time=mapping.timestamp(result.end_time), permanent=result.permanent
        )

    # Activity ------------------------------------------------------------------------------------

    async def ListActivity(
        self, request: pb.ListActivityRequest, context: Context
    ) -> pb.ListActivityResponse:
        principal = require_principal()
        (segment,) = parse_name(request.parent, "users", field="parent")
        user_id = resolve_user(segment, principal, field="parent")
        async with self._database.session(principal) as session:
            page = await activity.list_activity(
                session,
                user_id=user_id,
                kinds=[mapping.activity_kind_from_proto(kind) for kind in request.kinds],
                start_time=mapping.optional_time(request, "start_time"),
                end_time=mapping.optional_time(request, "end_time"),
                requested_size=request.page_size,
                token=request.page_token,
                tokens=self._tokens,
            )
        return pb.ListActivityResponse(
            activities=[mapping.activity_to_proto(entry) for entry in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )
