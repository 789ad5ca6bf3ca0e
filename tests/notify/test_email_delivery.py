"""Email over SMTP: the dispatcher renders the template and an SMTP server receives it."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.auth.v1 import auth_service_pb2 as auth_pb
from amesa.auth.v1 import auth_service_pb2_grpc
from server.app import App
from tests.auth.conftest import from_ip, new_ip, register_request
from tests.notify.support import body_text, children, dispatcher, enqueue, outbox_row, smtp_sink
from tests.user.conftest import Account

WEB = "https://web.amesa.test"


async def test_verification_email_of_register_arrives_with_a_working_link(
    app: App, owner_engine: AsyncEngine, auth: auth_service_pb2_grpc.AuthServiceAsyncStub
) -> None:
    request = register_request(f"new-{uuid.uuid4().hex[:10]}@example.org")
    await auth.Register(request, metadata=from_ip(new_ip()))

    async with smtp_sink() as sink:
        await dispatcher(app, smtp_host="127.0.0.1", smtp_port=sink.port, web_base_url=WEB).run()

    (mail,) = sink.to(request.email)
    assert mail["Subject"] == "Confirm your email address"
    assert mail["From"] == "Amesa <no-reply@amesa.local>"
    match = re.search(re.escape(WEB) + r"/verify-email\?token=([A-Za-z0-9_-]+)", body_text(mail))
    assert match is not None
    await auth.VerifyEmail(auth_pb.VerifyEmailRequest(token=match.group(1)))
    async with owner_engine.connect() as connection:
        verified = await connection.scalar(
            text("SELECT email_verify_time IS NOT NULL FROM users WHERE email = :e"),
            {"e": request.email},
        )
    assert verified is True


async def test_email_html_part_escapes_values(
    app: App, owner_engine: AsyncEngine, alice: Account
) -> None:
    message_id = await enqueue(
        app,
        topic="email.email_change_requested",
        payload={"to": alice.email, "language": "en", "new_email": "<b>x</b>@example.org"},
        user_id=alice.id,
    )

    async with smtp_sink() as sink:
        await dispatcher(app, smtp_host="127.0.0.1", smtp_port=sink.port).run()

    (mail,) = sink.to(alice.email)
    html_part = mail.get_body(preferencelist=("html",))
    assert html_part is not None
    html = html_part.get_content()
    assert "&lt;b&gt;x&lt;/b&gt;@example.org" in html
    assert "<b>x</b>" not in html
    assert "<b>x</b>@example.org" in body_text(mail)  # the plain text keeps it as typed
    assert (await outbox_row(owner_engine, message_id))["state"] == "DELIVERED"


async def test_unknown_language_falls_back_to_english(app: App, alice: Account) -> None:
    await enqueue(
        app,
        topic="email.password_reset",
        payload={"to": alice.email, "language": "pt-BR", "token": "t" * 43},
        user_id=alice.id,
    )

    async with smtp_sink() as sink:
        await dispatcher(app, smtp_host="127.0.0.1", smtp_port=sink.port, web_base_url=WEB).run()

    (mail,) = sink.to(alice.email)
    assert mail["Subject"] == "Reset your Amesa password"
    assert f"{WEB}/reset-password?token={'t' * 43}" in body_text(mail)


async def test_security_alert_reaches_the_inbox_through_a_child_email_message(
    app: App, owner_engine: AsyncEngine, alice: Account
) -> None:
    message_id = await enqueue(
        app,
        topic="notify.security_alert",
        payload={"alert": "refresh_token_reused", "session": f"{alice.name}/sessions/x"},
        user_id=alice.id,
    )

    async with smtp_sink() as sink:
        await dispatcher(app, smtp_host="127.0.0.1", smtp_port=sink.port).run()

    (mail,) = sink.to(alice.email)
    assert mail["Subject"] == "Security alert on your Amesa account"
    assert "used twice" in body_text(mail)
    fanned = await children(owner_engine, message_id)
    assert set(fanned) == {"email"}
    assert fanned["email"]["state"] == "DELIVERED"
    assert (await outbox_row(owner_engine, message_id))["state"] == "DELIVERED"
