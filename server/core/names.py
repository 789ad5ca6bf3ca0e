"""AIP resource names: parsing, `users/me` resolution and the ownership rule.

The protos' validation rules already guarantee a name's shape before a handler runs; these
functions extract the ids and apply the rule every user-owned RPC shares: a caller may name
their own user (`me` or their id); only administrators may name another user (NOT_OWNER
otherwise — the same answer whether that user exists or not, so ids cannot be probed).
"""

from __future__ import annotations

import uuid

from server.core.context import Principal
from server.core.errors import FieldViolation, InvalidArgument, PermissionDenied

ME = "me"
ALL_USERS = "-"  # `users/-`: every user, in admin List calls that allow it


def parse_name(name: str, *collections: str, field: str = "name") -> list[str]:
    """The id segments of `name` for the collections given, e.g.
    parse_name("users/me/addresses/1f…", "users", "addresses") == ["me", "1f…"]."""
    parts = name.split("/")
    if len(parts) != 2 * len(collections) or parts[0::2] != list(collections):
        pattern = "/".join(f"{c}/{{{c[:-1] if c.endswith('s') else c}}}" for c in collections)
        raise InvalidArgument(
            "INVALID_REQUEST",
            f"{field} must look like {pattern}",
            violations=[FieldViolation(field, f"must look like {pattern}")],
        )
    return parts[1::2]


def parse_id(segment: str, *, field: str = "name") -> uuid.UUID:
    try:
        value = uuid.UUID(segment)
    except ValueError:
        value = None
    if value is None or str(value) != segment:  # canonical lower-case form only
        raise InvalidArgument(
            "INVALID_REQUEST",
            f"{field} must hold a lower-case UUID",
            violations=[FieldViolation(field, "must hold a lower-case UUID")],
        )
    return value


def resolve_user(segment: str, principal: Principal, *, field: str = "name") -> uuid.UUID:
    """The user a `users/{user}` segment names, enforcing the ownership rule."""
    if segment == ME:
        return principal.user_id
    user_id = parse_id(segment, field=field)
    if user_id != principal.user_id and not principal.is_admin:
        raise PermissionDenied("NOT_OWNER", "you may only access your own resources")
    return user_id


def user_name(user_id: uuid.UUID) -> str:
    return f"users/{user_id}"


def child_name(user_id: uuid.UUID, collection: str, child_id: uuid.UUID) -> str:
    return f"users/{user_id}/{collection}/{child_id}"
