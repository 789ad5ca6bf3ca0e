"""Stand-ins for the outside world of the dispatcher (an SMTP sink, a Twilio-like HTTP API) and
helpers to run the real dispatcher from a test: the test holds the dispatch job's lease, so the
server's own background round cannot take the messages first."""

from __future__ import annotations

import asyncio
import base64
import datetime
import email
import email.policy
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller
from sqlalchemy import insert as plain_insert
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from server.app import App
from server.core import outbox
from server.core.models import JobLease
from server.core.settings import NotifyConfig, load_notify_config
from server.notify import channels
from server.notify.dispatcher import JOB_NAME, Dispatcher
from server.user.models import Notification, NotificationCategory
from tests.support import free_port


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self._sink.rcpt_reply is not None:
            return self._sink.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self._sink.data_reply is not None:
            self._sink.refused += 1
            return self._sink.data_reply
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self._sink.received.append(message)
        return "250 OK"


@dataclass
class SmtpSink:
    """An SMTP server on 127.0.0.1 that keeps what it receives (or refuses it when told to)."""

    port: int = 0
    received: list[EmailMessage] = field(default_factory=list)
    # e.g. "451 4.3.0 try again later" (transient) or "550 5.1.1 no such user" (permanent).
    data_reply: str | None = None
    rcpt_reply: str | None = None
    refused: int = 0

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.received if m["To"] == address]


def body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    content: str = part.get_content()
    return content


@asynccontextmanager
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink(port=free_port())
    controller = Controller(_Handler(sink), hostname="127.0.0.1", port=sink.port)
    await asyncio.to_thread(controller.start)
    try:
        yield sink
    finally:
        await asyncio.to_thread(controller.stop)


@dataclass
class SmsRequest:
    path: str
    authorization: str
    form: dict[str, str]

    @property
    def basic_auth(self) -> tuple[str, str]:
        scheme, _, encoded = self.authorization.partition(" ")
        assert scheme == "Basic"
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        return user, password


@dataclass
class TwilioStandIn:
    """A local HTTP server answering Twilio's Messages API the way Twilio does (201 + JSON)."""

    port: int = 0
    requests: list[SmsRequest] = field(default_factory=list)
    status: int = 201

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *header_lines = head.split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines if line)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        _, path, _ = request_line.split(" ", 2)
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        self.requests.append(
            SmsRequest(path=path, authorization=headers.get("authorization", ""), form=form)
        )
        reply = b'{"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}'
        if self.status >= 400:
            reply = b'{"code": 21211, "message": "The \'To\' number is not valid."}'
        writer.write(
            f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(reply)}\r\nConnection: close\r\n\r\n".encode()
            + reply
        )
        await writer.drain()
        writer.close()


@asynccontextmanager
async def twilio_stand_in() -> AsyncIterator[TwilioStandIn]:
    stand_in = TwilioStandIn()
    server = await asyncio.start_server(stand_in.handle, "127.0.0.1", 0)
    stand_in.port = server.sockets[0].getsockname()[1]
    try:
        yield stand_in
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def dispatch_lease(owner_engine: AsyncEngine) -> AsyncIterator[None]:
    """Keeps the server's own dispatch job from running while the block runs."""
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    holder = f"tests-{uuid.uuid4().hex[:8]}"
    async with owner_engine.begin() as connection:
        await connection.execute(
            insert(JobLease)
            .values(name=JOB_NAME, owner=holder, lease_expire_time=until)
            .on_conflict_do_update(
                index_elements=[JobLease.name],
                set_={"owner": holder, "lease_expire_time": until},
            )
        )
    await asyncio.sleep(0.3)  # a round that started before the lease finishes
    try:
        yield
    finally:
        async with owner_engine.begin() as connection:
            await connection.execute(
                text(
                    "UPDATE job_leases SET lease_expire_time = now() WHERE name = :n AND owner = :o"
                ),
                {"n": JOB_NAME, "o": holder},
            )


def dispatcher(app: App, **config: Any) -> Dispatcher:
    """The production dispatcher with `config` overriding the development defaults."""
    settings: NotifyConfig = replace(load_notify_config({}), **config)
    return Dispatcher(
        database=app.deps.database,
        events=app.deps.events,
        cipher=app.deps.cipher,
        config=settings,
        email=channels.email_sender(settings),
        sms=channels.sms_provider(settings),
    )


async def enqueue(
    app: App,
    *,
    topic: str,
    payload: Mapping[str, Any],
    user_id: uuid.UUID | None,
    max_attempts: int | None = None,
) -> uuid.UUID:
    async with app.deps.database.session(system=True) as session:
        message_id = await outbox.enqueue(
            session, topic=topic, payload=payload, user_id=user_id, max_attempts=max_attempts
        )
    assert message_id is not None
    return message_id


async def outbox_row(owner_engine: AsyncEngine, message_id: uuid.UUID) -> dict[str, Any]:
    async with owner_engine.connect() as connection:
        row = (
            await connection.execute(
                text(
                    "SELECT state, attempt_count, last_error, available_time - now() AS wait "
                    "FROM outbox WHERE id = :id"
                ),
                {"id": message_id},
            )
        ).one()
    return dict(row._mapping)


async def children(owner_engine: AsyncEngine, message_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    """The email/sms messages a notify.* message fanned out to, by channel."""
    async with owner_engine.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT dedupe_key, topic, payload, state FROM outbox WHERE dedupe_key LIKE :k"
                ),
                {"k": f"{message_id}:%"},
            )
        ).all()
    return {row.dedupe_key.split(":", 1)[1]: dict(row._mapping) for row in rows}


async def make_due(owner_engine: AsyncEngine, message_id: uuid.UUID) -> None:
    async with owner_engine.begin() as connection:
        await connection.execute(
            text("UPDATE outbox SET available_time = now() WHERE id = :id"), {"id": message_id}
        )


async def add_notifications(
    owner_engine: AsyncEngine, user_id: uuid.UUID, count: int, *, read: bool = False
) -> list[uuid.UUID]:
    """`count` notifications a second apart, newest last; returns their ids, oldest first."""
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10)
    rows = [
        {
            "user_id": user_id,
            "category": NotificationCategory.PURCHASES,
            "kind": "order.paid",
            "title": f"Receipt {index}",
            "body": f"Order {index} is paid.",
            "resource": None,
            "create_time": start + datetime.timedelta(seconds=index),
            "read_time": start if read else None,
        }
        for index in range(count)
    ]
    async with owner_engine.begin() as connection:
        ids = (
            await connection.execute(plain_insert(Notification).returning(Notification.id), rows)
        ).scalars()
        return list(ids)
