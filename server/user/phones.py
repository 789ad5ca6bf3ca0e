"""Phone numbers: E.164, encrypted at rest with a blind index for equality; at most MAX_PHONES per
user; only a verified phone can be primary, and a changed number is unverified again."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Integer, cast, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.audit import record_activity
from server.core.context import Principal
from server.core.crypto import Encrypted, PiiCipher
from server.core.errors import AlreadyExists, FailedPrecondition, NotFound, ResourceExhausted
from server.core.models import ActivityKind
from server.core.names import child_name
from server.core.pagination import Page, PageTokens, keyset_page
from server.user.accounts import MAX_PHONES, audit_for_other_user, load_open_user, load_user
from server.user.models import UserPhone

PHONE_CONTEXT = "user_phones.phone"


@dataclass(frozen=True, slots=True)
class PhoneView:
    phone: UserPhone
    number: str


def _view(phone: UserPhone, cipher: PiiCipher) -> PhoneView:
    number = cipher.decrypt(
        Encrypted(phone.phone_ciphertext, phone.phone_key_id), context=PHONE_CONTEXT
    )
    return PhoneView(phone=phone, number=number)


def _snapshot(phone: UserPhone) -> dict[str, bool]:
    """What an audit row may say about a phone: never the number itself."""
    return {"verified": phone.verify_time is not None, "primary": phone.is_primary}


async def _audit(
    session: AsyncSession,
    principal: Principal,
    phone: UserPhone,
    verb: str,
    *,
    before: dict[str, bool] | None = None,
    after: dict[str, bool] | None = None,
) -> None:
    await audit_for_other_user(
        session,
        principal=principal,
        user_id=phone.user_id,
        action=f"user.phone.{verb}",
        resource_name=child_name(phone.user_id, "phones", phone.id),
        before=before,
        after=after,
    )


def _not_verified() -> FailedPrecondition:
    return FailedPrecondition("PHONE_NOT_VERIFIED", "only a verified phone can be primary")


async def _load(session: AsyncSession, user_id: uuid.UUID, phone_id: uuid.UUID) -> UserPhone:
    phone = await session.scalar(
        select(UserPhone)
        .where(UserPhone.id == phone_id, UserPhone.user_id == user_id)
        .with_for_update()
    )
    if phone is None:
        raise NotFound(
            "PHONE_NOT_FOUND",
            "the user has no phone with this id",
            metadata={"phone": str(phone_id)},
        )
    return phone


async def _refuse_duplicate(
    session: AsyncSession, user_id: uuid.UUID, index: bytes, *, except_id: uuid.UUID | None = None
) -> None:
    query = select(UserPhone.id).where(
        UserPhone.user_id == user_id, UserPhone.phone_blind_index == index
    )
    if except_id is not None:
        query = query.where(UserPhone.id != except_id)
    if await session.scalar(query) is not None:
        raise AlreadyExists("PHONE_ALREADY_EXISTS", "the user already has this number")


async def list_phones(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    requested_size: int,
    token: str,
    tokens: PageTokens,
    cipher: PiiCipher,
) -> Page[PhoneView]:
    await load_user(session, user_id)
    page = await keyset_page(
        session,
        select(UserPhone).where(UserPhone.user_id == user_id),
        keys=[cast(UserPhone.is_primary, Integer), UserPhone.create_time, UserPhone.id],
        key_of=lambda p: [int(p.is_primary), p.create_time, p.id],
        descending=True,
        requested_size=requested_size,
        token=token,
        tokens=tokens,
        filters={"list": "phones", "user": str(user_id)},
    )
    return Page(
        items=[_view(phone, cipher) for phone in page.items],
        next_page_token=page.next_page_token,
        total_size=page.total_size,
    )


async def create_phone(
    session: AsyncSession,
    *,
    principal: Principal,
    user_id: uuid.UUID,
    number: str,
    primary: bool,
    cipher: PiiCipher,
) -> PhoneView:
    await load_open_user(session, user_id, for_update=True)
    index = cipher.blind_index(number, context=PHONE_CONTEXT)
    await _refuse_duplicate(session, user_id, index)
    count = await session.scalar(
        select(func.count()).select_from(UserPhone).where(UserPhone.user_id == user_id)
    )
    if (count or 0) >= MAX_PHONES:
        raise ResourceExhausted(
            "PHONE_LIMIT_REACHED",
            f"a user can keep at most {MAX_PHONES} phones",
            metadata={"limit": str(MAX_PHONES)},
        )
    if primary:
        raise _not_verified()  # a new number is never verified yet
    sealed = cipher.encrypt(number, context=PHONE_CONTEXT)
    phone = UserPhone(
        user_id=user_id,
        phone_ciphertext=sealed.ciphertext,
        phone_key_id=sealed.key_id,
        phone_blind_index=index,
        is_primary=False,
    )
    session.add(phone)
    await session.flush()
    await session.refresh(phone)
    await record_activity(
        session, user_id=user_id, kind=ActivityKind.PHONE_CHANGED, details={"change": "added"}
    )
    await _audit(session, principal, phone, "create", after=_snapshot(phone))
    return PhoneView(phone=phone, number=number)


async def update_phone(
    session: AsyncSession,
    *,
    principal: Principal,
    user_id: uuid.UUID,
    phone_id: uuid.UUID,
    paths: frozenset[str],
    number: str,
    primary: bool,
    cipher: PiiCipher,
) -> PhoneView:
    await load_user(session, user_id, for_update=True)
    phone = await _load(session, user_id, phone_id)
    before = _snapshot(phone)
    if "phone_number" in paths:
        index = cipher.blind_index(number, context=PHONE_CONTEXT)
        if index != phone.phone_blind_index:
            await _refuse_duplicate(session, user_id, index, except_id=phone.id)
            sealed = cipher.encrypt(number, context=PHONE_CONTEXT)
            phone.phone_ciphertext = sealed.ciphertext
            phone.phone_key_id = sealed.key_id
            phone.phone_blind_index = index
            phone.verify_time = None
            phone.is_primary = False
            await record_activity(
                session,
                user_id=user_id,
                kind=ActivityKind.PHONE_CHANGED,
                details={"change": "number_changed"},
            )
    if "primary" in paths:
        if primary and not phone.is_primary:
            if phone.verify_time is None:
                raise _not_verified()
            await session.execute(
                update(UserPhone)
                .where(UserPhone.user_id == user_id, UserPhone.is_primary)
                .values(is_primary=False)
            )
            phone.is_primary = True
        elif not primary:
            phone.is_primary = False
    await session.flush()
    await session.refresh(phone)
    await _audit(session, principal, phone, "update", before=before, after=_snapshot(phone))
    return _view(phone, cipher)


async def delete_phone(
    session: AsyncSession, *, principal: Principal, user_id: uuid.UUID, phone_id: uuid.UUID
) -> None:
    await load_user(session, user_id, for_update=True)
    phone = await _load(session, user_id, phone_id)
    await _audit(session, principal, phone, "delete", before=_snapshot(phone))
    await session.execute(delete(UserPhone).where(UserPhone.id == phone.id))
    await record_activity(
        session, user_id=user_id, kind=ActivityKind.PHONE_CHANGED, details={"change": "removed"}
    )
