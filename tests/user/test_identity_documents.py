"""KYC: UploadIdentityDocument, ListIdentityDocuments, ReviewIdentityDocument and
GetIdentityDocumentFile."""

from __future__ import annotations

import uuid

import grpc

from amesa.user.v1 import user_service_pb2 as pb
from amesa.user.v1 import user_service_pb2_grpc
from server.app import App
from server.user.accounts import MAX_IDENTITY_DOCUMENTS
from tests.user.conftest import Account, Accounts, rpc_failure

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(20)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(32)


def upload(
    content: bytes = PDF,
    *,
    parent: str = "users/me",
    number: str = "12 ab 34567",
    request_id: str = "",
) -> pb.UploadIdentityDocumentRequest:
    return pb.UploadIdentityDocumentRequest(
        parent=parent,
        document_type=pb.IDENTITY_DOCUMENT_TYPE_PASSPORT,
        issuing_country="FR",
        document_number=number,
        content=content,
        request_id=request_id,
    )


def review(
    name: str, decision: pb.ReviewDecision.ValueType, reason: str = ""
) -> pb.ReviewIdentityDocumentRequest:
    return pb.ReviewIdentityDocumentRequest(name=name, decision=decision, reason=reason)


async def test_upload_detects_the_type_from_content_and_sets_kyc_pending(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    for content, content_type in (
        (PDF, "application/pdf"),
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
    ):
        document = await stub.UploadIdentityDocument(upload(content), metadata=alice.metadata)
        assert document.content_type == content_type
        assert document.size_bytes == len(content)
        assert document.state == pb.IDENTITY_DOCUMENT_STATE_PENDING
        assert document.document_number_last4 == "4567"
        assert document.name.startswith(f"{alice.name}/identityDocuments/")
    user = await stub.GetUser(pb.GetUserRequest(name="users/me"), metadata=alice.metadata)
    assert user.kyc_status == pb.KYC_STATUS_PENDING
    listed = await stub.ListIdentityDocuments(
        pb.ListIdentityDocumentsRequest(parent="users/me"), metadata=alice.metadata
    )
    assert listed.total_size == 3
    assert [d.content_type for d in listed.identity_documents] == [
        "image/jpeg",
        "image/png",
        "application/pdf",
    ]


async def test_forged_extension_or_type_is_unsupported_file_type(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    # Content claiming to be a PDF/JPEG by name only: an HTML page, a script, a GIF, an ELF binary.
    for content in (
        b"<html>passport.pdf</html>",
        b"#!/bin/sh\necho passport.jpg",
        b"GIF89a....",
        b"\x7fELF\x02",
    ):
        failed = await rpc_failure(
            stub.UploadIdentityDocument(upload(content), metadata=alice.metadata)
        )
        assert (failed.code, failed.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "UNSUPPORTED_FILE_TYPE",
        )
        assert [v.field for v in failed.field_violations] == ["content"]


async def test_file_and_number_are_encrypted_at_rest(
    app: App,
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    alice: Account,
    accounts: Accounts,
) -> None:
    document = await stub.UploadIdentityDocument(
        upload(number="ZX9988776"), metadata=alice.metadata
    )
    document_id = uuid.UUID(document.name.rsplit("/", 1)[1])
    number = await accounts.fetch(
        "SELECT document_number_ciphertext FROM user_identity_documents WHERE id = :id",
        id=document_id,
    )
    assert b"ZX9988776" not in number
    assert b"8776" not in number
    storage_name = await accounts.fetch(
        "SELECT file_storage_name FROM user_identity_documents WHERE id = :id", id=document_id
    )
    stored = (app.settings.document_dir / storage_name).read_bytes()
    assert b"%PDF" not in stored
    assert b"Catalog" not in stored


async def test_retry_with_the_same_request_id_returns_the_first_document(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    request_id = str(uuid.uuid4())
    first = await stub.UploadIdentityDocument(
        upload(request_id=request_id), metadata=alice.metadata
    )
    again = await stub.UploadIdentityDocument(
        upload(request_id=request_id), metadata=alice.metadata
    )
    assert again == first
    failed = await rpc_failure(
        stub.UploadIdentityDocument(upload(PNG, request_id=request_id), metadata=alice.metadata)
    )
    assert (failed.code, failed.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_REUSED")


async def test_quota_is_document_quota_exceeded(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    for _ in range(MAX_IDENTITY_DOCUMENTS):
        await stub.UploadIdentityDocument(upload(), metadata=alice.metadata)
    failed = await rpc_failure(stub.UploadIdentityDocument(upload(), metadata=alice.metadata))
    assert (failed.code, failed.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "DOCUMENT_QUOTA_EXCEEDED",
    )
    assert failed.error_info.metadata["limit"] == str(MAX_IDENTITY_DOCUMENTS)


async def test_file_of_10_mib_is_accepted_and_one_byte_more_is_invalid_argument(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account
) -> None:
    largest = PDF + bytes(10 * 1024 * 1024 - len(PDF))
    document = await stub.UploadIdentityDocument(upload(largest), metadata=alice.metadata)
    assert document.size_bytes == 10 * 1024 * 1024
    failed = await rpc_failure(
        stub.UploadIdentityDocument(upload(largest + b"x"), metadata=alice.metadata)
    )
    assert failed.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in failed.field_violations] == ["content"]


async def test_review_approves_and_kyc_follows_the_latest_review(
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    alice: Account,
    admin: Account,
    accounts: Accounts,
) -> None:
    first = await stub.UploadIdentityDocument(upload(), metadata=alice.metadata)
    approved = await stub.ReviewIdentityDocument(
        review(first.name, pb.REVIEW_DECISION_APPROVE), metadata=admin.metadata
    )
    assert approved.state == pb.IDENTITY_DOCUMENT_STATE_APPROVED
    assert approved.HasField("review_time")
    user = await stub.GetUser(pb.GetUserRequest(name="users/me"), metadata=alice.metadata)
    assert user.kyc_status == pb.KYC_STATUS_APPROVED
    second = await stub.UploadIdentityDocument(upload(PNG), metadata=alice.metadata)
    user = await stub.GetUser(pb.GetUserRequest(name="users/me"), metadata=alice.metadata)
    assert user.kyc_status == pb.KYC_STATUS_APPROVED  # stays approved until the new review
    rejected = await stub.ReviewIdentityDocument(
        review(second.name, pb.REVIEW_DECISION_REJECT, "blurred"), metadata=admin.metadata
    )
    assert (rejected.state, rejected.review_reason) == (
        pb.IDENTITY_DOCUMENT_STATE_REJECTED,
        "blurred",
    )
    user = await stub.GetUser(pb.GetUserRequest(name="users/me"), metadata=alice.metadata)
    assert user.kyc_status == pb.KYC_STATUS_REJECTED
    audited = await accounts.fetch(
        "SELECT count(*) FROM audit_log"
        " WHERE action = 'user.identity_document.review' AND resource_name IN (:a, :b)",
        a=first.name,
        b=second.name,
    )
    assert audited == 2
    failed = await rpc_failure(
        stub.ReviewIdentityDocument(
            review(first.name, pb.REVIEW_DECISION_REJECT, "x"), metadata=admin.metadata
        )
    )
    assert (failed.code, failed.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "DOCUMENT_ALREADY_REVIEWED",
    )
    assert failed.error_info.metadata["state"] == "APPROVED"


async def test_review_errors(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, admin: Account
) -> None:
    own = await stub.UploadIdentityDocument(upload(), metadata=admin.metadata)
    failed = await rpc_failure(
        stub.ReviewIdentityDocument(
            review(own.name, pb.REVIEW_DECISION_APPROVE), metadata=admin.metadata
        )
    )
    assert (failed.code, failed.reason) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "OWN_DOCUMENT_REVIEW",
    )
    missing = f"{alice.name}/identityDocuments/{uuid.uuid4()}"
    failed = await rpc_failure(
        stub.ReviewIdentityDocument(
            review(missing, pb.REVIEW_DECISION_APPROVE), metadata=admin.metadata
        )
    )
    assert (failed.code, failed.reason) == (
        grpc.StatusCode.NOT_FOUND,
        "IDENTITY_DOCUMENT_NOT_FOUND",
    )
    mine = await stub.UploadIdentityDocument(upload(), metadata=alice.metadata)
    failed = await rpc_failure(
        stub.ReviewIdentityDocument(
            review(mine.name, pb.REVIEW_DECISION_REJECT), metadata=admin.metadata
        )
    )
    assert failed.code is grpc.StatusCode.INVALID_ARGUMENT  # a rejection needs a reason
    failed = await rpc_failure(
        stub.ReviewIdentityDocument(
            review(mine.name, pb.REVIEW_DECISION_APPROVE), metadata=alice.metadata
        )
    )
    assert failed.code is grpc.StatusCode.PERMISSION_DENIED  # admins only


async def test_admin_reads_the_decrypted_file_and_every_read_is_audited(
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    alice: Account,
    admin: Account,
    accounts: Accounts,
) -> None:
    document = await stub.UploadIdentityDocument(
        upload(JPEG, number="ab-123/45"), metadata=alice.metadata
    )
    file = await stub.GetIdentityDocumentFile(
        pb.GetIdentityDocumentFileRequest(name=document.name), metadata=admin.metadata
    )
    assert file.content == JPEG
    assert file.content_type == "image/jpeg"
    assert file.document_number == "ab-123/45"
    reads = await accounts.fetch(
        "SELECT count(*) FROM audit_log"
        " WHERE action = 'user.identity_document.read_file' AND resource_name = :n",
        n=document.name,
    )
    assert reads == 1
    failed = await rpc_failure(
        stub.GetIdentityDocumentFile(
            pb.GetIdentityDocumentFileRequest(name=document.name), metadata=alice.metadata
        )
    )
    assert failed.code is grpc.StatusCode.PERMISSION_DENIED


async def test_erased_file_is_identity_document_purged(
    app: App,
    stub: user_service_pb2_grpc.UserServiceAsyncStub,
    alice: Account,
    admin: Account,
    accounts: Accounts,
) -> None:
    document = await stub.UploadIdentityDocument(upload(), metadata=alice.metadata)
    storage_name = await accounts.fetch(
        "SELECT file_storage_name FROM user_identity_documents WHERE id = :id",
        id=uuid.UUID(document.name.rsplit("/", 1)[1]),
    )
    (app.settings.document_dir / storage_name).unlink()
    failed = await rpc_failure(
        stub.GetIdentityDocumentFile(
            pb.GetIdentityDocumentFileRequest(name=document.name), metadata=admin.metadata
        )
    )
    assert (failed.code, failed.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "IDENTITY_DOCUMENT_PURGED",
    )


async def test_another_users_documents_are_out_of_reach(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, alice: Account, bob: Account
) -> None:
    await stub.UploadIdentityDocument(upload(), metadata=bob.metadata)
    for parent in (bob.name, f"users/{uuid.uuid4()}"):
        for call in (
            stub.ListIdentityDocuments(
                pb.ListIdentityDocumentsRequest(parent=parent), metadata=alice.metadata
            ),
            stub.UploadIdentityDocument(upload(parent=parent), metadata=alice.metadata),
        ):
            failed = await rpc_failure(call)
            assert (failed.code, failed.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")
    listed = await stub.ListIdentityDocuments(
        pb.ListIdentityDocumentsRequest(parent="users/me"), metadata=alice.metadata
    )
    assert listed.total_size == 0


async def test_closed_account_cannot_upload(
    stub: user_service_pb2_grpc.UserServiceAsyncStub, accounts: Accounts
) -> None:
    closed = await accounts.create()
    await stub.DeleteUser(pb.DeleteUserRequest(name="users/me"), metadata=closed.metadata)
    failed = await rpc_failure(stub.UploadIdentityDocument(upload(), metadata=closed.metadata))
    assert (failed.code, failed.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ACCOUNT_DELETED")
