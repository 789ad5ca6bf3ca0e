"""Factories for AuthService tests: unique emails and client IPs, accounts made through
Register, and the outbox rows (emails, SMS) the server enqueued for a user."""

from __future__ import annotations

import ipaddress
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.type import date_pb2  # type: ignore[import-untyped]
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.auth.v1 import auth_service_pb2 as pb
from amesa.auth.v1 import auth_service_pb2_grpc
from server.auth.accounts import DEFAULT_TERMS_VERSION
from server.core.models import Outbox

PASSWORD = "correct horse battery staple"
TERMS = DEFAULT_TERMS_VERSION


def new_email() -> str:
    return f"person-{uuid.uuid4().hex[:12]}@Example.org"


def new_ip() -> str:
    """A random client address, so per-IP throttles of one test do not reach another."""
    return str(ipaddress.IPv4Address(random.randint(0x0B000000, 0xDEFFFFFF)))  # noqa: S311


def from_ip(ip: str, metadata: Sequence[tuple[str, str]] = ()) -> tuple[tuple[str, str], ...]:
    """Call metadata as if Envoy forwarded the call from `ip` (the test client is local)."""
    return (("x-forwarded-for", ip), *metadata)


def with_bearer(token: str, ip: str | None = None) -> tuple[tuple[str, str], ...]:
    return from_ip(ip or new_ip(), (("authorization", f"Bearer {token}"),))


def register_request(email: str | None = None, **overrides: Any) -> pb.RegisterRequest:
    fields: dict[str, Any] = {
        "email": email or new_email(),
        "password": PASSWORD,
        "given_name": "Ada",
        "family_name": "Lovelace",
        "birth_date": date_pb2.Date(year=1990, month=5, day=17),
        "language_code": "en",
        "accepted_terms_version": TERMS,
        "marketing_opt_in": False,
    }
    fields.update(overrides)
    return pb.RegisterRequest(**fields)


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    user_id: uuid.UUID
    tokens: pb.AuthTokens

    @property
    def session_id(self) -> uuid.UUID:
        return uuid.UUID(self.tokens.session.rsplit("/", 1)[1])

    def metadata(self, ip: str | None = None) -> tuple[tuple[str, str], ...]:
        return with_bearer(self.tokens.access_token, ip)


@pytest.fixture
def stub(channel: grpc.aio.Channel, languages: None) -> auth_service_pb2_grpc.AuthServiceAsyncStub:
    return auth_service_pb2_grpc.AuthServiceStub(channel)


async def register(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub,
    *,
    email: str | None = None,
    password: str = PASSWORD,
) -> Account:
    request = register_request(email, password=password)
    tokens = await stub.Register(request, metadata=from_ip(new_ip()))
    return Account(
        email=request.email,
        password=password,
        user_id=uuid.UUID(tokens.user.removeprefix("users/")),
        tokens=tokens,
    )


async def login(
    stub: auth_service_pb2_grpc.AuthServiceAsyncStub, account: Account, **second_factor: str
) -> pb.AuthTokens:
    tokens: pb.AuthTokens = await stub.Login(
        pb.LoginRequest(email=account.email, password=account.password, **second_factor),
        metadata=from_ip(new_ip()),
    )
    return tokens


async def outbox_payloads(
    owner_engine: AsyncEngine, *, user_id: uuid.UUID, topic: str
) -> list[dict[str, Any]]:
    """Payloads of the messages enqueued for the user under `topic`, oldest first."""
    async with owner_engine.connect() as connection:
        rows = await connection.execute(
            select(Outbox.payload)
            .where(Outbox.user_id == user_id, Outbox.topic == topic)
            .order_by(Outbox.create_time, Outbox.id)
        )
        return [dict(row[0]) for row in rows]


async def last_token(owner_engine: AsyncEngine, *, user_id: uuid.UUID, topic: str) -> str:
    payloads = await outbox_payloads(owner_engine, user_id=user_id, topic=topic)
    assert payloads, f"nothing enqueued under {topic}"
    return str(payloads[-1]["token"])
