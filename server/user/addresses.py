"""Postal addresses: at most MAX_ADDRESSES per user, exactly one of them primary."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy import Integer, cast, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.context import Principal
from server.core.errors import FailedPrecondition, NotFound, ResourceExhausted
from server.core.names import child_name
from server.core.pagination import Page, PageTokens, keyset_page
from server.user.accounts import MAX_ADDRESSES, audit_for_other_user, load_open_user, load_user
from server.user.models import UserAddress

_EDITABLE = ("label", "line1", "line2", "city", "region", "postal_code", "country_code")


def _not_found(address_id: uuid.UUID) -> NotFound:
    return NotFound(
        "ADDRESS_NOT_FOUND",
        "the user has no address with this id",
        metadata={"address": str(address_id)},
    )


async def _load(session: AsyncSession, user_id: uuid.UUID, address_id: uuid.UUID) -> UserAddress:
    address = await session.scalar(
        select(UserAddress)
        .where(UserAddress.id == address_id, UserAddress.user_id == user_id)
        .with_for_update()
    )
    if address is None:
        raise _not_found(address_id)
    return address


def _snapshot(address: UserAddress) -> dict[str, str | bool | None]:
    return {field: getattr(address, field) for field in _EDITABLE} | {"primary": address.is_primary}


async def _clear_primary(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(
        update(UserAddress)
        .where(UserAddress.user_id == user_id, UserAddress.is_primary)
        .values(is_primary=False)
    )


async def list_addresses(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    requested_size: int,
    token: str,
    tokens: PageTokens,
) -> Page[UserAddress]:
    await load_user(session, user_id)
    return await keyset_page(
        session,
        select(UserAddress).where(UserAddress.user_id == user_id),
        keys=[cast(UserAddress.is_primary, Integer), UserAddress.create_time, UserAddress.id],
        key_of=lambda a: [int(a.is_primary), a.create_time, a.id],
        descending=True,
        requested_size=requested_size,
        token=token,
        tokens=tokens,
        filters={"list": "addresses", "user": str(user_id)},
    )


async def create_address(
    session: AsyncSession,
    *,
    principal: Principal,
    user_id: uuid.UUID,
    fields: Mapping[str, str | bool | None],
) -> UserAddress:
    # The user row lock serialises concurrent creations, so the limit and the primary rule hold.
    await load_open_user(session, user_id, for_update=True)
    count = await session.scalar(
        select(func.count()).select_from(UserAddress).where(UserAddress.user_id == user_id)
    )
    if (count or 0) >= MAX_ADDRESSES:
        raise ResourceExhausted(
            "ADDRESS_LIMIT_REACHED",
            f"a user can keep at most {MAX_ADDRESSES} addresses",
            metadata={"limit": str(MAX_ADDRESSES)},
        )
    primary = count == 0 or bool(fields["is_primary"])
    if primary:
        await _clear_primary(session, user_id)
    address = UserAddress(user_id=user_id, **{k: fields[k] for k in _EDITABLE}, is_primary=primary)
    session.add(address)
    await session.flush()
    await session.refresh(address)
    await audit_for_other_user(
        session,
        principal=principal,
        user_id=user_id,
        action="user.address.create",
        resource_name=child_name(user_id, "addresses", address.id),
        after=_snapshot(address),
    )
    return address


async def update_address(
    session: AsyncSession,
    *,
    principal: Principal,
    user_id: uuid.UUID,
    address_id: uuid.UUID,
    paths: frozenset[str],
    fields: Mapping[str, str | bool | None],
) -> UserAddress:
    await load_user(session, user_id, for_update=True)
    address = await _load(session, user_id, address_id)
    before = _snapshot(address)
    if "primary" in paths:
        if fields["is_primary"] and not address.is_primary:
            await _clear_primary(session, user_id)
            address.is_primary = True
        elif not fields["is_primary"] and address.is_primary:
            raise FailedPrecondition(
                "PRIMARY_ADDRESS_REQUIRED",
                "the primary mark cannot be cleared; make another address primary instead",
            )
    for field in _EDITABLE:
        if field in paths:
            setattr(address, field, fields[field])
    await session.flush()
    await session.refresh(address)
    await audit_for_other_user(
        session,
        principal=principal,
        user_id=user_id,
        action="user.address.update",
        resource_name=child_name(user_id, "addresses", address.id),
        before=before,
        after=_snapshot(address),
    )
    return address


async def delete_address(
    session: AsyncSession, *, principal: Principal, user_id: uuid.UUID, address_id: uuid.UUID
) -> None:
    await load_user(session, user_id, for_update=True)
    address = await _load(session, user_id, address_id)
    was_primary = address.is_primary
    await audit_for_other_user(
        session,
        principal=principal,
        user_id=user_id,
        action="user.address.delete",
        resource_name=child_name(user_id, "addresses", address.id),
        before=_snapshot(address),
    )
    await session.execute(delete(UserAddress).where(UserAddress.id == address.id))
    if was_primary:
        newest = await session.scalar(
            select(UserAddress.id)
            .where(UserAddress.user_id == user_id)
            .order_by(UserAddress.create_time.desc(), UserAddress.id.desc())
            .limit(1)
        )
        if newest is not None:
            await session.execute(
                update(UserAddress).where(UserAddress.id == newest).values(is_primary=True)
            )
