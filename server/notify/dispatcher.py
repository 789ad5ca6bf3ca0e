"""The outbox dispatcher: delivers notification messages by channel, once per cluster.

Topics it owns (every other outbox topic, e.g. payment calls, is left to its own worker):
- `notify.<kind>`: a business event for a user. Routed by the kind's category, the user's
  preferences (security alerts always go by email and in-app; marketing needs the opt-in and
  never reaches self-excluded users) into an in-app row (published live on
  `notifications:{user}` after commit) plus one child message per external channel,
  `email.<kind>` / `sms.<kind>`, each retried on its own. The fan-out is one transaction.
- `email.<key>`: an email to `payload["to"]` (verification and reset links, account notices:
  always sent); `sms.<key>`: an SMS to the phone `payload["phone_id"]` (verification codes).

Each message: claim (short transaction) → read what the send needs (short transaction) → send,
outside any transaction → record the outcome (short transaction). Transient failures retry
with the outbox's backoff and end DEAD after the last attempt; a message that can never be
delivered (unknown phone, missing template, refused address) goes DEAD at once.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.core import outbox
from server.core.crypto import Encrypted, PiiCipher
from server.core.db import Database
from server.core.deps import Deps
from server.core.events import EventBus
from server.core.outbox import OutboxMessage
from server.core.settings import NotifyConfig
from server.notify import inbox, templates
from server.notify.channels import (
    EmailSender,
    PermanentDeliveryError,
    SmsProvider,
    email_sender,
    sms_provider,
)
from server.notify.mapping import watch_event
from server.notify.watch import announce
from server.user.accounts import active_exclusion
from server.user.models import NotificationCategory, User, UserPhone, UserStatus

log = logging.getLogger("amesa.notify")

JOB_NAME: Final = "notify.dispatch"
JOB_TIMEOUT: Final = timedelta(seconds=60)
_ROUND_BUDGET: Final = timedelta(seconds=40)
PHONE_CONTEXT: Final = "user_phones.phone"  # as server/user/phones.py encrypts numbers
_EVENT_PART = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True, slots=True)
class Kind:
    """How a `notify.<kind>` event is presented and routed."""

    category: NotificationCategory
    # The Notification.kind clients switch on; `{alert}` is filled from the payload.
    event: str
    # The payload key holding the resource name it is about, if any.
    resource_key: str | None = None
    # Security alerts: email and in-app whatever the preferences.
    security: bool = False


NOTIFY_KINDS: Final[Mapping[str, Kind]] = {
    "security_alert": Kind(
        NotificationCategory.ACCOUNT, "security.{alert}", resource_key="session", security=True
    ),
    "identity_document_reviewed": Kind(
        NotificationCategory.ACCOUNT, "kyc.document_reviewed", resource_key="identity_document"
    ),
    "promotion": Kind(NotificationCategory.MARKETING, "marketing.promotion", resource_key="house"),
    "draw_won": Kind(NotificationCategory.DRAWS, "draw.won", resource_key="ticket"),
    "draw_result": Kind(NotificationCategory.DRAWS, "draw.result", resource_key="draw"),
    "purchase_receipt": Kind(
        NotificationCategory.PURCHASES, "purchase.receipt", resource_key="order"
    ),
    "refund_issued": Kind(NotificationCategory.PURCHASES, "purchase.refund", resource_key="order"),
}
# Email templates whose body carries a one-time link to the web app, and the link's path.
LINKS: Final[Mapping[str, str]] = {
    "verify_email": "/verify-email?token=",
    "password_reset": "/reset-password?token=",
}


class Undeliverable(Exception):
    """Retrying cannot help (no such phone, no template): dead-letter at once."""


def owned_topics() -> list[str]:
    keys = {key for key, _ in templates.EMAIL}
    sms = {key for key, _ in templates.SMS}
    return sorted(
        [f"notify.{kind}" for kind in NOTIFY_KINDS]
        + [f"email.{key}" for key in keys]
        + [f"sms.{key}" for key in sms]
    )


class Dispatcher:
    def __init__(
        self,
        *,
        database: Database,
        events: EventBus,
        cipher: PiiCipher,
        config: NotifyConfig,
        email: EmailSender,
        sms: SmsProvider,
    ) -> None:
        self._database = database
        self._events = events
        self._cipher = cipher
        self._config = config
        self._email = email
        self._sms = sms
        self._topics = owned_topics()

    async def run(self) -> None:
        """One round (the job): delivers due messages batch after batch until none is due, so
        the email/SMS messages a notification fans out to leave in the same round. It stops
        claiming after `_ROUND_BUDGET`, well inside the job's timeout, so a long queue is never
        cut off mid-send (the next round goes on)."""
        loop = asyncio.get_running_loop()
        stop_claiming = loop.time() + _ROUND_BUDGET.total_seconds()
        while loop.time() < stop_claiming:
            async with self._database.session(system=True) as session:
                messages = await outbox.claim_due(
                    session, limit=self._config.dispatch_batch_size, topics=self._topics
                )
            if not messages:
                return
            for message in messages:
                await self.deliver(message)

    async def deliver(self, message: OutboxMessage) -> None:
        """Delivers one claimed message and records the outcome; never raises for a failure."""
        family, _, key = message.topic.partition(".")
        try:
            if family == "notify":
                await self._fan_out(message, key)
                return
            if family == "email":
                await self._send_email(message, key)
            elif family == "sms":
                await self._send_sms(message, key)
            else:
                raise Undeliverable(f"no channel for topic {message.topic!r}")
        except (Undeliverable, PermanentDeliveryError, templates.TemplateMissing) as error:
            log.warning("outbox %s (%s) dead-lettered: %s", message.id, message.topic, error)
            await self._record_failure(message, f"{type(error).__name__}: {error}", permanent=True)
            return
        except Exception as error:
            log.warning(
                "outbox %s (%s) attempt %d/%d failed: %s",
                message.id,
                message.topic,
                message.attempt,
                message.max_attempts,
                error,
            )
            await self._record_failure(message, f"{type(error).__name__}: {error}")
            return
        async with self._database.session(system=True) as session:
            await outbox.mark_delivered(session, message)

    async def _record_failure(
        self, message: OutboxMessage, error: str, *, permanent: bool = False
    ) -> None:
        async with self._database.session(system=True) as session:
            await outbox.mark_failed(session, message, error=error, permanent=permanent)

    # Email and SMS -------------------------------------------------------------------------------

    async def _send_email(self, message: OutboxMessage, key: str) -> None:
        payload = message.payload
        to = payload.get("to")
        if not isinstance(to, str) or "@" not in to:
            raise Undeliverable("the payload has no recipient address")
        link = None
        if key in LINKS:
            token = payload.get("token")
            if not isinstance(token, str) or not token:
                raise Undeliverable("the payload has no link token")
            link = self._config.web_base_url + LINKS[key] + quote(token, safe="")
        email = templates.render_email(
            key, _language(payload), templates.variables(_public(payload), link=link)
        )
        await self._email.send(to=to, email=email)

    async def _send_sms(self, message: OutboxMessage, key: str) -> None:
        payload = message.payload
        try:
            phone_id = uuid.UUID(str(payload.get("phone_id")))
        except ValueError as error:
            raise Undeliverable("the payload has no phone") from error
        async with self._database.session(system=True) as session:
            phone = await session.get(UserPhone, phone_id)
            if phone is None or (message.user_id is not None and phone.user_id != message.user_id):
                raise Undeliverable("the phone no longer exists")
            number = self._cipher.decrypt(
                Encrypted(phone.phone_ciphertext, phone.phone_key_id), context=PHONE_CONTEXT
            )
        text = templates.render_sms(key, _language(payload), templates.variables(payload))
        await self._sms.send(to=number, text=text)

    # Business events -----------------------------------------------------------------------------

    async def _fan_out(self, message: OutboxMessage, key: str) -> None:
        kind = NOTIFY_KINDS.get(key)
        if kind is None or message.user_id is None:
            raise Undeliverable(f"no notification kind {key!r} or no user")
        user_id = message.user_id
        payload = message.payload
        async with self._database.session(system=True) as session:
            user = await session.get(User, user_id)
            if user is None or user.status is UserStatus.DELETED:
                await outbox.mark_delivered(session, message)  # nobody left to tell
                return
            routes = await _routes(session, user=user, kind=kind)
            language = str(payload.get("language") or routes.language or user.preferred_language)
            values = templates.variables(payload)
            created = None
            if routes.in_app:
                text = templates.render_in_app(key, language, values)
                created = await inbox.create_notification(
                    session,
                    user_id=user_id,
                    category=kind.category,
                    kind=_event(kind, payload),
                    title=text.title,
                    body=text.body,
                    resource=_resource(kind, payload),
                    outbox_id=message.id,
                )
            child = {**payload, "language": language}
            if routes.email and templates.has_email(key):
                await outbox.enqueue(
                    session,
                    topic=f"email.{key}",
                    payload={**child, "to": user.email},
                    user_id=user_id,
                    dedupe_key=f"{message.id}:email",
                )
            if routes.phone_id is not None and templates.has_sms(key):
                await outbox.enqueue(
                    session,
                    topic=f"sms.{key}",
                    payload={**child, "phone_id": str(routes.phone_id)},
                    user_id=user_id,
                    dedupe_key=f"{message.id}:sms",
                )
            unread = await inbox.unread_count(session, user_id) if created is not None else 0
            await outbox.mark_delivered(session, message)
        if created is not None:
            await announce(self._events, user_id, [watch_event(created, unread_count=unread)])


@dataclass(frozen=True, slots=True)
class _Routes:
    in_app: bool
    email: bool
    phone_id: uuid.UUID | None
    language: str | None


async def _routes(session: AsyncSession, *, user: User, kind: Kind) -> _Routes:
    preferences = await inbox.load_preferences(session, user.id)
    channels = preferences.grid[kind.category.value.lower()]
    in_app, email, sms = channels["in_app"], channels["email"], channels["sms"]
    if kind.security:
        in_app = email = True
    elif user.email_verify_time is None:
        email = False  # only security alerts go to an unproven address
    if kind.category is NotificationCategory.MARKETING and (
        not user.marketing_opt_in or await active_exclusion(session, user.id) is not None
    ):
        in_app = email = sms = False
    phone_id = None
    if sms:
        phone_id = await session.scalar(
            select(UserPhone.id).where(UserPhone.user_id == user.id, UserPhone.is_primary)
        )
    return _Routes(in_app=in_app, email=email, phone_id=phone_id, language=preferences.language)


def _language(payload: Mapping[str, Any]) -> str:
    language = payload.get("language")
    return language if isinstance(language, str) and language else templates.FALLBACK_LANGUAGE


def _public(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload without the link token: the template gets the finished link instead."""
    return {key: value for key, value in payload.items() if key != "token"}


def _event(kind: Kind, payload: Mapping[str, Any]) -> str:
    alert = str(payload.get("alert", ""))
    return kind.event.format(alert=alert if _EVENT_PART.match(alert) else "alert")


def _resource(kind: Kind, payload: Mapping[str, Any]) -> str | None:
    if kind.resource_key is None:
        return None
    value = payload.get(kind.resource_key)
    return str(value) if value else None


def build_dispatcher(deps: Deps, config: NotifyConfig) -> Dispatcher:
    return Dispatcher(
        database=deps.database,
        events=deps.events,
        cipher=deps.cipher,
        config=config,
        email=email_sender(config),
        sms=sms_provider(config),
    )


def register_dispatcher(deps: Deps) -> Dispatcher:
    """Builds the dispatcher from the settings and registers it as a cluster-wide job.

    (Production settings refuse the log-only channels, which print one-time links and codes.)
    """
    config = deps.settings.notify
    dispatcher = build_dispatcher(deps, config)

    async def run(_database: Database) -> None:
        await dispatcher.run()

    deps.jobs.register(JOB_NAME, run, interval=config.dispatch_interval, timeout=JOB_TIMEOUT)
    return dispatcher
