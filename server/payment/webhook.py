"""Stripe webhooks: verified, recorded once in the inbox, then applied by re-reading the
provider's state (events may arrive late, twice or out of order, so an event only says which
object to look at, never what its state is)."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from server.core.db import Database
from server.core.errors import FailedPrecondition, InvalidArgument, Unauthenticated, Unavailable
from server.payment.models import PaymentProvider, ProviderEvent
from server.payment.providers.webhooks import WebhookSignatureInvalid, verify_stripe_signature

log = logging.getLogger("amesa.payment.webhook")

_STALE: Final = frozenset({"stale_timestamp", "future_timestamp"})

# An event type prefix → what applies it, given the event's object id.
Handler = Callable[[str], Awaitable[Any]]


def verified_event(payload: bytes, header: str | None, secret: str | None) -> dict[str, Any]:
    """The event, once its signature and timestamp check out; nothing is stored otherwise."""
    if secret is None:
        raise FailedPrecondition("PROVIDER_DISABLED", "Stripe webhooks are not configured")
    try:
        event = verify_stripe_signature(payload, header, secret)
    except WebhookSignatureInvalid as error:
        if error.reason in _STALE:
            raise Unauthenticated(
                "SIGNATURE_STALE", "the signed timestamp is more than 300 s from now"
            ) from None
        if error.reason == "malformed_payload":
            raise InvalidArgument("PAYLOAD_INVALID", "the body is not a Stripe event") from None
        raise Unauthenticated("SIGNATURE_INVALID", "the Stripe signature does not verify") from None
    data = event.get("data")
    if (
        not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
        or not isinstance(data, dict)
        or not isinstance(data.get("object"), dict)
    ):
        raise InvalidArgument("PAYLOAD_INVALID", "the body is not a Stripe event")
    return event


async def apply_once(
    database: Database,
    *,
    provider: PaymentProvider,
    event_id: str,
    event_type: str,
    payload: dict[str, Any],
    handle: Callable[[], Awaitable[None]],
    retry: Unavailable,
    now: datetime.datetime,
) -> bool:
    """The inbox of every provider's webhooks: records the event and applies it (`handle`)
    unless an earlier delivery did; returns whether this call applied it. A failing handler
    leaves the event unprocessed and raises `retry`, so the provider delivers it again."""
    event = (ProviderEvent.provider == provider, ProviderEvent.event_id == event_id)
    async with database.session(system=True) as session:
        await session.execute(
            insert(ProviderEvent)
            .values(provider=provider, event_id=event_id, event_type=event_type, payload=payload)
            .on_conflict_do_nothing(index_elements=[ProviderEvent.provider, ProviderEvent.event_id])
        )
        processed = await session.scalar(select(ProviderEvent.process_time).where(*event))
    if processed is not None:
        return False
    try:
        await handle()
    except Exception as error:
        log.exception("%s event %s (%s) failed", provider.value, event_id, event_type)
        async with database.session(system=True) as session:
            await session.execute(
                update(ProviderEvent)
                .where(*event)
                .values(
                    attempt_count=ProviderEvent.attempt_count + 1,
                    last_error=f"{type(error).__name__}: {error}"[:2000],
                )
            )
        raise retry from None
    async with database.session(system=True) as session:
        applied = await session.scalar(
            update(ProviderEvent)
            .where(*event, ProviderEvent.process_time.is_(None))
            .values(process_time=now, attempt_count=ProviderEvent.attempt_count + 1)
            .returning(ProviderEvent.id)
        )
    return applied is not None


async def apply_stripe_event(
    database: Database,
    event: dict[str, Any],
    handlers: dict[str, Handler],
    *,
    now: datetime.datetime,
) -> bool:
    """A verified Stripe event through the inbox: the handler of the first matching type
    prefix gets the event's object id; other types are recorded and acknowledged."""

    async def handle() -> None:
        handler = next(
            (run for prefix, run in handlers.items() if event["type"].startswith(prefix)), None
        )
        object_id = event["data"]["object"].get("id")
        if handler is not None and isinstance(object_id, str):
            await handler(object_id)

    return await apply_once(
        database,
        provider=PaymentProvider.STRIPE,
        event_id=event["id"],
        event_type=event["type"],
        payload=event,
        handle=handle,
        retry=Unavailable("WEBHOOK_RETRY", "the event could not be applied yet; retry"),
        now=now,
    )
