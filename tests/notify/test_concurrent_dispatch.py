"""Two dispatchers (as on two replicas) draining one queue deliver every message exactly once."""

from __future__ import annotations

import asyncio
import re

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.app import App
from tests.notify.support import body_text, dispatcher, enqueue, smtp_sink
from tests.user.conftest import Account


async def test_concurrent_dispatchers_deliver_each_message_once(
    app: App, owner_engine: AsyncEngine, alice: Account
) -> None:
    tokens = [f"token{index:03d}" + "x" * 30 for index in range(30)]
    for token in tokens:
        await enqueue(
            app,
            topic="email.password_reset",
            payload={"to": alice.email, "language": "en", "token": token},
            user_id=alice.id,
        )

    async with smtp_sink() as sink:
        replicas = [
            dispatcher(app, smtp_host="127.0.0.1", smtp_port=sink.port, dispatch_batch_size=4)
            for _ in range(2)
        ]
        await asyncio.gather(*(replica.run() for replica in replicas))

    sent = [re.search(r"token=(\S+)", body_text(mail)) for mail in sink.to(alice.email)]
    assert sorted(match.group(1) for match in sent if match) == tokens
    async with owner_engine.connect() as connection:
        states = (
            await connection.execute(
                text(
                    "SELECT state, attempt_count, count(*) FROM outbox "
                    "WHERE user_id = :u AND topic = 'email.password_reset' GROUP BY 1, 2"
                ),
                {"u": alice.id},
            )
        ).all()
    assert [tuple(row) for row in states] == [("DELIVERED", 1, 30)]
