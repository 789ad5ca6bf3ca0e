"""Per-call context (request id and principal) carried in ContextVars by the interceptors."""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from dataclasses import dataclass

from server.core.errors import Unauthenticated

ADMIN_ROLE = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller of an RPC: who (user id), through which session, with which roles."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


_principal: ContextVar[Principal | None] = ContextVar("amesa_principal", default=None)
_request_id: ContextVar[str] = ContextVar("amesa_request_id", default="-")


def current_principal() -> Principal | None:
    """The caller, or None on an anonymous call to a PUBLIC RPC."""
    return _principal.get()


def require_principal() -> Principal:
    """The caller of a USER or ADMIN RPC (the auth interceptor guarantees one is set)."""
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("TOKEN_MISSING", "this call needs an access token")
    return principal


def current_request_id() -> str:
    return _request_id.get()


def bind_principal(principal: Principal | None) -> None:
    _principal.set(principal)


def bind_request_id(request_id: str) -> None:
    _request_id.set(request_id)
