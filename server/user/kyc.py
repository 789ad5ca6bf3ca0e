"""Identity documents (KYC): upload (type detected from the bytes, file and number encrypted),
list, review by an administrator (the user's `kyc_status` follows the latest review) and the
administrators' access to the decrypted file, every time audited."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.audit import record_activity, record_audit
from server.core.context import Principal
from server.core.crypto import Encrypted, PiiCipher
from server.core.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from server.core.models import ActivityKind
from server.core.names import child_name
from server.core.outbox import enqueue
from server.core.pagination import Page, PageTokens, keyset_page
from server.user.accounts import MAX_IDENTITY_DOCUMENTS, load_open_user, load_user
from server.user.documents import DocumentStore, new_storage_name
from server.user.models import (
    MAX_IDENTITY_DOCUMENT_BYTES,
    IdentityDocumentContentType,
    IdentityDocumentState,
    IdentityDocumentType,
    KycStatus,
    UserIdentityDocument,
)

NUMBER_CONTEXT = "user_identity_documents.document_number"

_SIGNATURES = (
    (b"\xff\xd8\xff", IdentityDocumentContentType.JPEG),
    (b"\x89PNG\r\n\x1a\n", IdentityDocumentContentType.PNG),
    (b"%PDF-", IdentityDocumentContentType.PDF),
)


def detect_content_type(content: bytes) -> IdentityDocumentContentType:
    """The file type from its leading bytes (magic numbers), never from a name."""
    for signature, content_type in _SIGNATURES:
        if content.startswith(signature):
            return content_type
    raise InvalidArgument(
        "UNSUPPORTED_FILE_TYPE",
        "the file is not a JPEG, PNG or PDF",
        violations=[FieldViolation("content", "must be a JPEG, PNG or PDF file")],
    )


def normalise_number(number: str) -> str:
    return "".join(number.split()).upper()


@dataclass(frozen=True, slots=True)
class Upload:
    document_type: str
    issuing_country: str
    document_number: str
    content: bytes
    request_id: uuid.UUID | None


def _not_found(document_id: uuid.UUID) -> NotFound:
    return NotFound(
        "IDENTITY_DOCUMENT_NOT_FOUND",
        "the user has no identity document with this id",
        metadata={"identity_document": str(document_id)},
    )


async def list_identity_documents(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    requested_size: int,
    token: str,
    tokens: PageTokens,
) -> Page[UserIdentityDocument]:
    await load_user(session, user_id)
    return await keyset_page(
        session,
        select(UserIdentityDocument).where(UserIdentityDocument.user_id == user_id),
        keys=[UserIdentityDocument.create_time, UserIdentityDocument.id],
        key_of=lambda d: [d.create_time, d.id],
        descending=True,
        requested_size=requested_size,
        token=token,
        tokens=tokens,
        filters={"list": "identityDocuments", "user": str(user_id)},
    )


async def upload_identity_document(
    session: AsyncSession,
    *,
    principal: Principal,
    user_id: uuid.UUID,
    upload: Upload,
    cipher: PiiCipher,
    store: DocumentStore,
) -> UserIdentityDocument:
    if len(upload.content) > MAX_IDENTITY_DOCUMENT_BYTES:
        raise InvalidArgument(
            "INVALID_REQUEST",
            "the file is larger than 10 MiB",
            violations=[FieldViolation("content", "at most 10485760 bytes")],
        )
    content_type = detect_content_type(upload.content)
    number = normalise_number(upload.document_number)
    number_index = cipher.blind_index(number, context=NUMBER_CONTEXT)
    digest = hashlib.sha256(upload.content).digest()
    user = await load_open_user(session, user_id, for_update=True)
    if upload.request_id is not None:
        first = await session.scalar(
            select(UserIdentityDocument).where(
                UserIdentityDocument.user_id == user_id,
                UserIdentityDocument.request_id == upload.request_id,
            )
        )
        if first is not None:
            same = (
                first.document_type.value == upload.document_type
                and first.issuing_country == upload.issuing_country
                and first.document_number_blind_index == number_index
                and first.file_sha256 == digest
            )
            if not same:
                raise InvalidArgument(
                    "REQUEST_ID_REUSED",
                    "request_id was already used with different parameters",
                    violations=[FieldViolation("request_id", "already used for another upload")],
                )
            return first
    count = await session.scalar(
        select(func.count())
        .select_from(UserIdentityDocument)
        .where(UserIdentityDocument.user_id == user_id)
    )
    if (count or 0) >= MAX_IDENTITY_DOCUMENTS:
        raise ResourceExhausted(
            "DOCUMENT_QUOTA_EXCEEDED",
            f"a user can upload at most {MAX_IDENTITY_DOCUMENTS} identity documents",
            metadata={"limit": str(MAX_IDENTITY_DOCUMENTS)},
        )
    sealed_number = cipher.encrypt(upload.document_number, context=NUMBER_CONTEXT)
    storage_name = new_storage_name()
    # Local disk, not the network: written before the row so the row never names a missing
    # file. A rolled-back transaction leaves an orphan encrypted file (swept by a cleanup job).
    file_key_id = await store.write(storage_name, upload.content)
    document = UserIdentityDocument(
        user_id=user_id,
        document_type=IdentityDocumentType(upload.document_type),
        issuing_country=upload.issuing_country,
        document_number_ciphertext=sealed_number.ciphertext,
        document_number_key_id=sealed_number.key_id,
        document_number_blind_index=number_index,
        document_number_last4=number[-4:],
        file_storage_name=storage_name,
        file_key_id=file_key_id,
        file_sha256=digest,
        content_type=content_type,
        size_bytes=len(upload.content),
        request_id=upload.request_id,
    )
    session.add(document)
    before = user.kyc_status.value
    if user.kyc_status is not KycStatus.APPROVED:
        user.kyc_status = KycStatus.PENDING
    await session.flush()
    await session.refresh(document)
    name = child_name(user_id, "identityDocuments", document.id)
    await record_activity(
        session,
        user_id=user_id,
        kind=ActivityKind.IDENTITY_DOCUMENT,
        details={"change": "uploaded", "identity_document": name},
    )
    await record_audit(
        session,
        actor=principal,
        action="user.identity_document.upload",
        resource_name=name,
        before={"kyc_status": before},
        after={"kyc_status": user.kyc_status.value, "content_type": content_type.value},
    )
    return document


async def _load(
    session: AsyncSession, user_id: uuid.UUID, document_id: uuid.UUID, *, for_update: bool = False
) -> UserIdentityDocument:
    query = select(UserIdentityDocument).where(
        UserIdentityDocument.id == document_id, UserIdentityDocument.user_id == user_id
    )
    if for_update:
        query = query.with_for_update()
    document = await session.scalar(query)
    if document is None:
        raise _not_found(document_id)
    return document


async def review_identity_document(
    session: AsyncSession,
    *,
    principal: Principal,
    user_id: uuid.UUID,
    document_id: uuid.UUID,
    approve: bool,
    reason: str,
) -> UserIdentityDocument:
    if user_id == principal.user_id:
        raise PermissionDenied(
            "OWN_DOCUMENT_REVIEW", "an administrator cannot review their own documents"
        )
    user = await load_open_user(session, user_id, for_update=True)
    document = await _load(session, user_id, document_id, for_update=True)
    if document.state is not IdentityDocumentState.PENDING:
        raise FailedPrecondition(
            "DOCUMENT_ALREADY_REVIEWED",
            "the document was already reviewed",
            metadata={"state": document.state.value},
        )
    state = IdentityDocumentState.APPROVED if approve else IdentityDocumentState.REJECTED
    before = {"state": document.state.value, "kyc_status": user.kyc_status.value}
    document.state = state
    document.review_reason = reason or None
    document.reviewer_id = principal.user_id
    document.review_time = func.now()
    user.kyc_status = KycStatus.APPROVED if approve else KycStatus.REJECTED
    await session.flush()
    await session.refresh(document)
    name = child_name(user_id, "identityDocuments", document.id)
    await record_audit(
        session,
        actor=principal,
        action="user.identity_document.review",
        resource_name=name,
        before=before,
        after={"state": state.value, "kyc_status": user.kyc_status.value, "reason": reason},
    )
    await record_activity(
        session,
        user_id=user_id,
        kind=ActivityKind.IDENTITY_DOCUMENT,
        details={"change": state.value.lower(), "identity_document": name, "by": "admin"},
    )
    await enqueue(
        session,
        topic="notify.identity_document_reviewed",
        payload={"identity_document": name, "state": state.value, "reason": reason},
        user_id=user_id,
    )
    return document


@dataclass(frozen=True, slots=True)
class DocumentFile:
    content: bytes
    content_type: str
    document_number: str


async def get_identity_document_file(
    session: AsyncSession,
    *,
    principal: Principal,
    user_id: uuid.UUID,
    document_id: uuid.UUID,
    cipher: PiiCipher,
    store: DocumentStore,
) -> DocumentFile:
    user = await load_user(session, user_id)
    document = await _load(session, user_id, document_id)
    content = None
    if user.anonymize_time is None:
        content = await store.read(document.file_storage_name, document.file_key_id)
    if content is None or hashlib.sha256(content).digest() != document.file_sha256:
        raise FailedPrecondition("IDENTITY_DOCUMENT_PURGED", "the file was erased")
    number = cipher.decrypt(
        Encrypted(document.document_number_ciphertext, document.document_number_key_id),
        context=NUMBER_CONTEXT,
    )
    await record_audit(
        session,
        actor=principal,
        action="user.identity_document.read_file",
        resource_name=child_name(user_id, "identityDocuments", document.id),
    )
    return DocumentFile(
        content=content, content_type=document.content_type.value, document_number=number
    )
