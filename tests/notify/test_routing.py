"""Routing by category and preferences: security always, marketing only when wanted and never
to self-excluded users."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.app import App
from server.user.models import NotificationPreferences
from tests.notify.support import children, dispatcher, enqueue, outbox_row, smtp_sink
from tests.user.conftest import Account, Accounts

PROMOTION = {"headline": "New house in Lisbon", "message": "Tickets on sale now.", "house": ""}


async def _set_preferences(owner_engine: AsyncEngine, user_id: uuid.UUID, **columns: bool) -> None:
    async with owner_engine.begin() as connection:
        await connection.execute(insert(NotificationPreferences).values(user_id=user_id, **columns))


async def _in_app(owner_engine: AsyncEngine, user_id: uuid.UUID) -> list[Any]:
    async with owner_engine.connect() as connection:
        return list(
            (
                await connection.execute(
                    text(
                        "SELECT kind, category, title, body, resource FROM notifications "
                        "WHERE user_id = :u"
                    ),
                    {"u": user_id},
                )
            ).all()
        )


async def _deliver(
    app: App, topic: str, payload: dict[str, Any], user_id: uuid.UUID
) -> tuple[uuid.UUID, Any]:
    message_id = await enqueue(app, topic=topic, payload=payload, user_id=user_id)
    async with smtp_sink() as sink:
        await dispatcher(app, smtp_host="127.0.0.1", smtp_port=sink.port).run()
    return message_id, sink


async def test_marketing_is_not_sent_with_default_preferences(
    app: App, owner_engine: AsyncEngine, accounts: Accounts
) -> None:
    account = await accounts.create(marketing_opt_in=True)

    message_id, sink = await _deliver(app, "notify.promotion", PROMOTION, account.id)

    assert (await outbox_row(owner_engine, message_id))["state"] == "DELIVERED"
    assert await children(owner_engine, message_id) == {}
    assert await _in_app(owner_engine, account.id) == []
    assert sink.to(account.email) == []


async def test_marketing_is_sent_when_turned_on_and_opted_in(
    app: App, owner_engine: AsyncEngine, accounts: Accounts
) -> None:
    account = await accounts.create(marketing_opt_in=True)
    await _set_preferences(owner_engine, account.id, marketing_email=True, marketing_in_app=True)

    _, sink = await _deliver(app, "notify.promotion", PROMOTION, account.id)

    (mail,) = sink.to(account.email)
    assert mail["Subject"] == "New house in Lisbon"
    (row,) = await _in_app(owner_engine, account.id)
    assert (row.kind, row.category, row.title) == (
        "marketing.promotion",
        "MARKETING",
        "New house in Lisbon",
    )


async def test_marketing_needs_the_account_opt_in(
    app: App, owner_engine: AsyncEngine, accounts: Accounts
) -> None:
    account = await accounts.create(marketing_opt_in=False)
    await _set_preferences(owner_engine, account.id, marketing_email=True, marketing_in_app=True)

    _, sink = await _deliver(app, "notify.promotion", PROMOTION, account.id)

    assert sink.to(account.email) == []
    assert await _in_app(owner_engine, account.id) == []


async def test_marketing_never_reaches_a_self_excluded_user(
    app: App, owner_engine: AsyncEngine, accounts: Accounts
) -> None:
    account = await accounts.create(marketing_opt_in=True)
    await _set_preferences(owner_engine, account.id, marketing_email=True, marketing_in_app=True)
    async with owner_engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO self_exclusions (user_id, start_time, end_time) "
                "VALUES (:u, now() - interval '1 minute', now() + interval '180 days')"
            ),
            {"u": account.id},
        )

    message_id, sink = await _deliver(app, "notify.promotion", PROMOTION, account.id)

    assert sink.to(account.email) == []
    assert await _in_app(owner_engine, account.id) == []
    assert await children(owner_engine, message_id) == {}


async def test_security_alert_is_sent_by_email_and_in_app_whatever_the_preferences(
    app: App, owner_engine: AsyncEngine, alice: Account
) -> None:
    await _set_preferences(
        owner_engine, alice.id, account_email=False, account_in_app=False, account_sms=False
    )
    session = f"{alice.name}/sessions/{uuid.uuid4()}"

    _, sink = await _deliver(
        app,
        "notify.security_alert",
        {"alert": "refresh_token_reused", "session": session},
        alice.id,
    )

    assert len(sink.to(alice.email)) == 1
    (row,) = await _in_app(owner_engine, alice.id)
    assert (row.kind, row.category, row.resource) == (
        "security.refresh_token_reused",
        "ACCOUNT",
        session,
    )


async def test_account_notice_follows_the_preferences(
    app: App, owner_engine: AsyncEngine, alice: Account
) -> None:
    await _set_preferences(owner_engine, alice.id, account_email=False)
    document = f"{alice.name}/identityDocuments/{uuid.uuid4()}"

    message_id, sink = await _deliver(
        app,
        "notify.identity_document_reviewed",
        {"identity_document": document, "state": "REJECTED", "reason": "blurred photo"},
        alice.id,
    )

    assert sink.to(alice.email) == []
    assert set(await children(owner_engine, message_id)) == set()
    (row,) = await _in_app(owner_engine, alice.id)
    assert row.body == "Your identity document was rejected. Reason: blurred photo"
    assert row.resource == document


async def test_redelivered_notification_is_stored_once(
    app: App, owner_engine: AsyncEngine, alice: Account
) -> None:
    message_id = await enqueue(
        app, topic="notify.security_alert", payload={"alert": "password_changed"}, user_id=alice.id
    )
    run = dispatcher(app).run
    await run()
    # As if the dispatcher died after its work but before recording it: claimed again.
    async with owner_engine.begin() as connection:
        await connection.execute(
            text("UPDATE outbox SET state = 'PENDING', available_time = now() WHERE id = :id"),
            {"id": message_id},
        )
    await run()

    assert len(await _in_app(owner_engine, alice.id)) == 1
    assert set(await children(owner_engine, message_id)) == {"email"}
