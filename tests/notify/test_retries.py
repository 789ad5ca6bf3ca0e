"""Retries with backoff and the dead letter, against an SMTP server that refuses mail."""

from __future__ import annotations

import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from server.app import App
from tests.notify.support import dispatcher, enqueue, make_due, outbox_row, smtp_sink
from tests.support import free_port
from tests.user.conftest import Account

TRANSIENT = "451 4.3.0 Mailbox busy, try again later"


def _reset(account: Account) -> dict[str, str]:
    return {"to": account.email, "language": "en", "token": "r" * 43}


async def test_temporary_smtp_failure_is_retried_after_backoff_then_dead_lettered(
    app: App, owner_engine: AsyncEngine, alice: Account
) -> None:
    message_id = await enqueue(
        app, topic="email.password_reset", payload=_reset(alice), user_id=alice.id, max_attempts=2
    )

    async with smtp_sink() as sink:
        sink.data_reply = TRANSIENT
        run = dispatcher(app, smtp_host="127.0.0.1", smtp_port=sink.port).run
        await run()
        first = await outbox_row(owner_engine, message_id)
        await run()  # not due yet: nothing happens
        assert sink.refused == 1
        await make_due(owner_engine, message_id)
        await run()
        last = await outbox_row(owner_engine, message_id)

    assert first["state"] == "PENDING"
    assert first["attempt_count"] == 1
    assert "451" in first["last_error"]
    # The first retry waits 30 s (server/core/outbox.py's retry_delay).
    assert datetime.timedelta(seconds=25) < first["wait"] <= datetime.timedelta(seconds=30)
    assert last["state"] == "DEAD"
    assert last["attempt_count"] == 2
    assert sink.received == []


async def test_retry_after_a_temporary_failure_delivers(
    app: App, owner_engine: AsyncEngine, alice: Account
) -> None:
    message_id = await enqueue(
        app, topic="email.password_reset", payload=_reset(alice), user_id=alice.id
    )

    async with smtp_sink() as sink:
        run = dispatcher(app, smtp_host="127.0.0.1", smtp_port=sink.port).run
        sink.data_reply = TRANSIENT
        await run()
        sink.data_reply = None
        await make_due(owner_engine, message_id)
        await run()

    row = await outbox_row(owner_engine, message_id)
    assert (row["state"], row["attempt_count"]) == ("DELIVERED", 2)
    assert len(sink.to(alice.email)) == 1


async def test_permanent_smtp_refusal_is_dead_lettered_at_once(
    app: App, owner_engine: AsyncEngine, alice: Account
) -> None:
    message_id = await enqueue(
        app, topic="email.password_reset", payload=_reset(alice), user_id=alice.id
    )

    async with smtp_sink() as sink:
        sink.rcpt_reply = "550 5.1.1 No such mailbox"
        await dispatcher(app, smtp_host="127.0.0.1", smtp_port=sink.port).run()

    row = await outbox_row(owner_engine, message_id)
    assert (row["state"], row["attempt_count"]) == ("DEAD", 1)
    assert "550" in row["last_error"]


async def test_unreachable_smtp_server_is_retried_later(
    app: App, owner_engine: AsyncEngine, alice: Account
) -> None:
    message_id = await enqueue(
        app, topic="email.password_reset", payload=_reset(alice), user_id=alice.id
    )

    await dispatcher(
        app, smtp_host="127.0.0.1", smtp_port=free_port(), smtp_timeout_seconds=2
    ).run()

    row = await outbox_row(owner_engine, message_id)
    assert (row["state"], row["attempt_count"]) == ("PENDING", 1)
    assert row["last_error"]


async def test_message_without_a_template_is_dead_lettered(
    app: App, owner_engine: AsyncEngine, alice: Account
) -> None:
    message_id = await enqueue(
        app,
        topic="email.email_change_requested",
        payload={"to": alice.email, "language": "en"},  # new_email missing
        user_id=alice.id,
    )

    await dispatcher(app).run()

    row = await outbox_row(owner_engine, message_id)
    assert row["state"] == "DEAD"
    assert "new_email" in row["last_error"]
