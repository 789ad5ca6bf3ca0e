"""The password policy of Register, ChangePassword and ResetPassword: 10 to 128 characters (the
protos' validation rules) and not one of the bundled common passwords (common_passwords.txt)."""

from __future__ import annotations

import functools
from pathlib import Path

from server.core.errors import FieldViolation, InvalidArgument

_LIST = Path(__file__).with_name("common_passwords.txt")


@functools.cache
def _common_passwords() -> frozenset[str]:
    lines = _LIST.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def is_common_password(password: str) -> bool:
    return password.strip().casefold() in _common_passwords()


def check_new_password(password: str, *, field: str) -> None:
    """Raises PASSWORD_TOO_COMMON for a password in the common list."""
    if is_common_password(password):
        raise InvalidArgument(
            "PASSWORD_TOO_COMMON",
            "this password is too common; choose another",
            violations=[FieldViolation(field, "is in the list of common passwords")],
        )
