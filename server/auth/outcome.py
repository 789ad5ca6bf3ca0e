"""A result that must commit before its error is raised.

Raising inside `database.session()` rolls the transaction back. Some failures must keep what
they wrote — a failed login's activity entry, a spent code attempt, the revocation that follows
refresh-token reuse — so the service returns them as an `Outcome` and the servicer raises the
error with `value()` after the block committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from server.core.errors import AmesaError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    result: T | None = None
    error: AmesaError | None = None

    def value(self) -> T:
        if self.error is not None:
            raise self.error
        return cast(T, self.result)  # None only for Outcome[None]


def succeeded(result: T) -> Outcome[T]:
    return Outcome(result=result)


def failed(error: AmesaError) -> Outcome[T]:
    return Outcome(error=error)
