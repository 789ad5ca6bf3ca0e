"""Per-call context (request id and principal) carried in ContextVars by the interceptors."""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Client:
    """Where a call came from, for the activity and audit logs and per-IP rate limits."""

    ip: str | None
    user_agent: str | None


_principal: ContextVar[Principal | None] = ContextVar("amesa_principal", default=None)
_request_id: ContextVar[str] = ContextVar("amesa_request_id", default="-")
_call: ContextVar[Any] = ContextVar("amesa_call", default=None)

# Envoy runs beside the server and appends the real client address to x-forwarded-for
# (use_remote_address), so the last entry is trusted only when the peer is such a local proxy.
_TRUSTED_PROXY_PEERS = ("ipv4:127.", "ipv6:[::1]", "ipv6:%5B::1%5D")


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


def bind_call(context: Any) -> None:
    """Remembers the grpc ServicerContext; the client is worked out only when asked for."""
    _call.set(context)


def current_client() -> Client:
    context = _call.get()
    if context is None:
        return Client(ip=None, user_agent=None)
    metadata = {key: value for key, value in context.invocation_metadata() or ()}
    peer: str = context.peer() or ""
    forwarded = metadata.get("x-forwarded-for")
    if forwarded and peer.startswith(_TRUSTED_PROXY_PEERS):
        ip: str | None = str(forwarded).split(",")[-1].strip()
    elif peer.startswith("ipv4:"):
        ip = peer[5:].rsplit(":", 1)[0]
    elif peer.startswith("ipv6:"):
        ip = peer[5:].rsplit(":", 1)[0].strip("[]").replace("%5B", "").replace("%5D", "")
    else:
        ip = None
    agent = metadata.get("x-user-agent") or metadata.get("user-agent")
    return Client(ip=ip or None, user_agent=str(agent)[:512] if agent else None)
