"""Resource names: `users/me`, ownership, and malformed names."""

from __future__ import annotations

import uuid

import pytest

from server.core.context import Principal
from server.core.errors import InvalidArgument, PermissionDenied
from server.core.names import child_name, parse_id, parse_name, resolve_user

ALICE = Principal(user_id=uuid.uuid4(), session_id=uuid.uuid4(), roles=frozenset({"user"}))
ADMIN = Principal(user_id=uuid.uuid4(), session_id=uuid.uuid4(), roles=frozenset({"admin"}))


def test_me_and_own_id_resolve_to_the_caller() -> None:
    assert resolve_user("me", ALICE) == ALICE.user_id
    assert resolve_user(str(ALICE.user_id), ALICE) == ALICE.user_id


def test_another_users_id_is_not_owner_for_users_and_allowed_for_admins() -> None:
    other = uuid.uuid4()
    with pytest.raises(PermissionDenied) as raised:
        resolve_user(str(other), ALICE)
    assert raised.value.reason == "NOT_OWNER"
    assert resolve_user(str(other), ADMIN) == other


def test_child_names_round_trip() -> None:
    address = uuid.uuid4()
    name = child_name(ALICE.user_id, "addresses", address)
    user, child = parse_name(name, "users", "addresses")
    assert (resolve_user(user, ALICE), parse_id(child)) == (ALICE.user_id, address)


@pytest.mark.parametrize(
    "name", ["users/me", "houses/x/addresses/y", "users/me/addresses", "users/me/phones/1"]
)
def test_wrong_shape_is_invalid(name: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_name(name, "users", "addresses")


@pytest.mark.parametrize("segment", ["not-a-uuid", str(uuid.uuid4()).upper(), ""])
def test_non_canonical_ids_are_invalid(segment: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_id(segment)
