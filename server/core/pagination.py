"""AIP-158 pagination: page sizes, opaque signed keyset page tokens, and keyset pages.

A page token carries the keyset cursor (the sort key of the last row served) and a digest of
the request's filters, signed with HMAC-SHA256 under AMESA_PAGE_TOKEN_SECRET: a client can
neither forge a cursor nor reuse a token with other filters (PAGE_TOKEN_INVALID).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from server.core.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
_SIGNATURE_BYTES = 16


def page_size(requested: int) -> int:
    """0 means the default; anything above the maximum is clamped, not refused."""
    if requested <= 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def _invalid() -> InvalidArgument:
    return InvalidArgument(
        "PAGE_TOKEN_INVALID",
        "page_token is not valid for this request; start again without it",
        violations=[FieldViolation("page_token", "not a token issued for this request")],
    )


class PageTokens:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"amesa-page-token\x00" + secret.encode()).digest()

    @staticmethod
    def _filters_digest(filters: Mapping[str, Any]) -> str:
        canonical = json.dumps(filters, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_SIGNATURE_BYTES]

    def encode(self, cursor: Mapping[str, Any], *, filters: Mapping[str, Any]) -> str:
        """A token resuming after `cursor` (JSON-serialisable) for the same `filters`."""
        body = json.dumps(
            {"c": cursor, "f": self._filters_digest(filters)},
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        ).encode()
        return base64.urlsafe_b64encode(self._sign(body) + body).rstrip(b"=").decode()

    def decode(self, token: str, *, filters: Mapping[str, Any]) -> dict[str, Any] | None:
        """The cursor of a token (None for an empty token); PAGE_TOKEN_INVALID if tampered."""
        if not token:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise _invalid() from None
        signature, body = raw[:_SIGNATURE_BYTES], raw[_SIGNATURE_BYTES:]
        if not hmac.compare_digest(signature, self._sign(body)):
            raise _invalid()
        payload = json.loads(body)
        if payload.get("f") != self._filters_digest(filters) or not isinstance(
            payload.get("c"), dict
        ):
            raise _invalid()
        return dict(payload["c"])


# Keyset pages over SQLAlchemy queries ---------------------------------------------------------

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str
    total_size: int


def _encode(value: Any) -> list[Any]:
    if isinstance(value, datetime.datetime):
        return ["d", value.isoformat()]
    if isinstance(value, uuid.UUID):
        return ["u", str(value)]
    if isinstance(value, bool):
        return ["i", int(value)]
    if isinstance(value, int):
        return ["i", value]
    return ["s", str(value)]


def _decode(item: Any) -> Any:
    if not isinstance(item, list) or len(item) != 2:
        raise _invalid()
    tag, raw = item
    if tag == "d":
        return datetime.datetime.fromisoformat(raw)
    if tag == "u":
        return uuid.UUID(raw)
    return raw


async def keyset_page(
    session: AsyncSession,
    query: Select[T],
    *,
    keys: Sequence[ColumnElement[Any] | InstrumentedAttribute[Any]],
    key_of: Callable[[T], Sequence[Any]],
    descending: bool,
    requested_size: int,
    token: str,
    tokens: PageTokens,
    filters: Mapping[str, Any],
) -> Page[T]:
    """One page of `query` (already filtered) ordered by `keys` (the last one unique)."""
    cursor = tokens.decode(token, filters=filters)
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    size = page_size(requested_size)
    paged = query
    if cursor is not None:
        values = [_decode(item) for item in cursor.get("k", [])]
        if len(values) != len(keys):
            raise _invalid()
        row_key = tuple_(*keys)
        paged = paged.where(row_key < tuple_(*values) if descending else row_key > tuple_(*values))
    ordered = [key.desc() if descending else key.asc() for key in keys]
    rows = list((await session.scalars(paged.order_by(*ordered).limit(size + 1))).all())
    next_token = ""
    if len(rows) > size:
        rows = rows[:size]
        next_token = tokens.encode(
            {"k": [_encode(value) for value in key_of(rows[-1])]}, filters=filters
        )
    return Page(items=rows, next_page_token=next_token, total_size=int(total or 0))
