"""Saved payment methods and the user's Stripe customer (SPEC §3 PaymentService, §5).

A card is saved in two steps: `create_setup_intent` returns a SetupIntent's client secret,
Stripe.js confirms it in the browser, and Stripe's `setup_intent.succeeded` webhook calls
`on_setup_intent_succeeded`, which stores the card (provider reference, brand, last 4 and expiry:
never a number). The user's first saved card becomes the default.

Concurrency: every change to a user's methods first locks the user row (FOR NO KEY UPDATE, which
does not block rows referencing the user), so "first method becomes default", "switch the
default" and the partial unique index "at most one default per user" never race. No database
transaction is open while Stripe is called.

Deleting a method removes the row at once and enqueues `DETACH_TOPIC` in the same transaction;
the payment worker delivers it with `deliver_detach` (retried by the outbox until it succeeds).
A deleted method never becomes the default of anything: if it was the default, the user has no
default until they choose one (the proto's contract).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

from sqlalchemy import Integer, cast, delete, exists, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.core.db import Database
from server.core.deps import Deps
from server.core.errors import FailedPrecondition, NotFound
from server.core.models import Outbox
from server.core.outbox import enqueue
from server.core.pagination import Page, PageTokens, keyset_page
from server.payment.gateways import provider_unavailable
from server.payment.models import PaymentCustomer, PaymentMethod, PaymentProvider
from server.payment.providers import (
    CardDeclined,
    ProviderError,
    ProviderNotFound,
    ProviderUnavailable,
)
from server.payment.providers.stripe_gateway import (
    CardPaymentMethod,
    SetupIntentResult,
    StripeGateway,
    _ref,
    _translate_errors,
)
from server.user.accounts import load_user
from server.user.models import User

log = logging.getLogger("amesa.payment.methods")

# Outbox topic of "detach this card from the user's Stripe customer"; payload `payment_method`
# ("pm_…") and `customer` ("cus_…"). Consumed by the payment worker through `deliver_detach`.
DETACH_TOPIC: Final = "payment.detach_payment_method"


def _detach_dedupe_key(payment_method: str) -> str:
    return f"{DETACH_TOPIC}:{payment_method}"


def _not_found(method_id: uuid.UUID) -> NotFound:
    return NotFound(
        "PAYMENT_METHOD_NOT_FOUND",
        "the user has no payment method with this id",
        metadata={"payment_method": str(method_id)},
    )


@contextlib.asynccontextmanager
async def provider_call() -> AsyncIterator[None]:
    """Turns "Stripe could not be reached" into UNAVAILABLE PROVIDER_UNAVAILABLE for the client;
    any other provider error is unexpected here and stays an INTERNAL error."""
    try:
        yield
    except ProviderUnavailable as error:
        raise provider_unavailable(error) from error


# The user's Stripe customer ------------------------------------------------------------------


async def stripe_customer_id(session: AsyncSession, *, user_id: uuid.UUID) -> str | None:
    """The user's stored "cus_…" id, or None before the first need."""
    found: str | None = await session.scalar(
        select(PaymentCustomer.provider_customer_id).where(
            PaymentCustomer.user_id == user_id,
            PaymentCustomer.provider == PaymentProvider.STRIPE,
        )
    )
    return found


def customer_idempotency_key(user_id: uuid.UUID, email: str) -> str:
    # Stripe refuses a key reused with other parameters (for 24 h), so the email is part of it:
    # a retry after a crash with the same email gets the same customer back, and an email
    # changed in between gets a new customer instead of a permanent idempotency error.
    digest = hashlib.sha256(email.lower().encode()).hexdigest()[:16]
    return f"amesa-customer-{user_id}-{digest}"


async def ensure_customer(
    database: Database, gateway: StripeGateway, *, user_id: uuid.UUID, email: str
) -> str:
    """The user's Stripe customer id ("cus_…"), created at Stripe and stored on first need.

    Takes the Database, not a session, because it must not hold a transaction across the Stripe
    call: it reads payment_customers in one short transaction, creates the customer (idempotency
    key derived from the user id and email) outside any, then inserts with ON CONFLICT DO NOTHING
    and returns whichever row won. Concurrent first calls therefore end with one row; at real
    Stripe the shared idempotency key also makes them one customer (localstripe ignores keys, so
    there a losing call leaves an unused customer behind, never a second row).

    Runs as the system (no row level security): the caller has already checked that it acts for
    `user_id`. Raises `ProviderUnavailable` / `ProviderError` from the gateway unchanged; wrap the
    call in `provider_call()` to answer clients with PROVIDER_UNAVAILABLE.
    """
    async with database.session(system=True) as session:
        existing = await stripe_customer_id(session, user_id=user_id)
    if existing is not None:
        return existing
    created = await gateway.ensure_customer(
        str(user_id), email, idempotency_key=customer_idempotency_key(user_id, email)
    )
    async with database.session(system=True) as session:
        await session.execute(
            insert(PaymentCustomer)
            .values(user_id=user_id, provider=PaymentProvider.STRIPE, provider_customer_id=created)
            .on_conflict_do_nothing(
                index_elements=[PaymentCustomer.user_id, PaymentCustomer.provider]
            )
        )
        stored = await stripe_customer_id(session, user_id=user_id)
    if stored is None:  # pragma: no cover - the insert or a concurrent one just committed it
        raise RuntimeError(f"payment customer of user {user_id} vanished")
    if stored != created:
        log.info("user %s: concurrent customer creation, kept %s over %s", user_id, stored, created)
    return stored


async def _user_of_customer(session: AsyncSession, customer: str) -> uuid.UUID | None:
    found: uuid.UUID | None = await session.scalar(
        select(PaymentCustomer.user_id).where(
            PaymentCustomer.provider == PaymentProvider.STRIPE,
            PaymentCustomer.provider_customer_id == customer,
        )
    )
    return found


# Saving a card ---------------------------------------------------------------------------------


async def create_setup_intent(
    database: Database, gateway: StripeGateway, *, user_id: uuid.UUID
) -> SetupIntentResult:
    """A SetupIntent on the user's Stripe customer (created on first use) for Stripe.js.

    Errors: USER_NOT_FOUND (no account), PROVIDER_UNAVAILABLE."""
    async with database.session(system=True) as session:
        user = await load_user(session, user_id)
        email = user.email
    async with provider_call():
        customer = await ensure_customer(database, gateway, user_id=user_id, email=email)
        # A fresh key per call: each call asks for a new SetupIntent, and the gateway's own
        # retries of this one request reuse the key.
        return await gateway.create_setup_intent(
            customer, idempotency_key=f"amesa-setup-intent-{uuid.uuid4()}"
        )


async def _retrieve_setup_intent(gateway: StripeGateway, setup_intent_id: str) -> SetupIntentResult:
    # StripeGateway has no "retrieve a SetupIntent" yet (and this module may not change it): the
    # same client and error translation it uses internally. Move into the gateway when it gets one.
    with _translate_errors():
        intent = await gateway._client.v1.setup_intents.retrieve_async(setup_intent_id)
    return SetupIntentResult(
        id=intent.id,
        client_secret=intent.client_secret or "",
        status=intent.status,
        customer=_ref(intent.customer),
        payment_method=_ref(intent.payment_method),
    )


async def _card_on_customer(
    gateway: StripeGateway, payment_method: str, customer: str
) -> CardPaymentMethod | None:
    """The card, attached to `customer` if it is not yet (Stripe attaches it when the SetupIntent
    is confirmed; localstripe does not); None when it belongs to another customer."""
    card = await gateway.retrieve_payment_method(payment_method)
    if card.customer is None:
        try:
            card = await gateway.attach_payment_method(
                payment_method,
                customer,
                idempotency_key=f"amesa-attach-{payment_method}-{customer}",
            )
        except ProviderUnavailable:
            raise
        except ProviderError:
            # A concurrent handler of the same event may have attached it meanwhile.
            card = await gateway.retrieve_payment_method(payment_method)
    if card.customer != customer:
        return None
    return card


async def _lock_user(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Serialises changes to one user's payment methods (see the module docstring)."""
    await session.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))


async def on_setup_intent_succeeded(deps: Deps, setup_intent_id: str) -> None:
    """What the StripeWebhook handler calls for `setup_intent.succeeded`: stores the card the
    SetupIntent saved (see `save_setup_intent_card`). FAILED_PRECONDITION PROVIDER_DISABLED when
    Stripe is not configured; `ProviderUnavailable` means "retry the event later"."""
    await save_setup_intent_card(deps.database, deps.gateways.stripe, setup_intent_id)


async def save_setup_intent_card(
    database: Database, gateway: StripeGateway, setup_intent_id: str
) -> PaymentMethod | None:
    """Stores the card a confirmed SetupIntent saved; safe to call any number of times (from
    the webhook, or a reconciler).

    The SetupIntent is re-read from Stripe (events may be stale or out of order), its customer
    maps to the user (payment_customers), its card is attached to that customer if needed and
    stored once: a repeated call finds the row by provider reference and changes nothing. The
    user's first method becomes the default. Returns the stored method, or None when there is
    nothing to store: the SetupIntent has not succeeded, has no card, belongs to a customer that
    is not ours, its card is on another customer, or the user deleted that card already (a late
    redelivery must not bring a deleted card back).

    Raises `ProviderUnavailable` when Stripe cannot be reached (retry the event later) and
    `ProviderNotFound` for an unknown SetupIntent.
    """
    intent = await _retrieve_setup_intent(gateway, setup_intent_id)
    if intent.status != "succeeded" or intent.customer is None or intent.payment_method is None:
        log.info("setup intent %s is %s: nothing to store", intent.id, intent.status)
        return None
    payment_method = intent.payment_method
    async with database.session(system=True) as session:
        user_id = await _user_of_customer(session, intent.customer)
        stored = await _method_by_reference(session, payment_method)
        deleted = await _detach_requested(session, payment_method)
    if user_id is None:
        log.warning("setup intent %s: customer %s is not ours", intent.id, intent.customer)
        return None
    if stored is not None or deleted:
        return stored
    try:
        card = await _card_on_customer(gateway, payment_method, intent.customer)
    except CardDeclined as declined:
        log.warning("setup intent %s: card refused at attach (%s)", intent.id, declined.code)
        return None
    if card is None:
        log.warning("setup intent %s: %s is on another customer", intent.id, payment_method)
        return None
    async with database.session(system=True) as session:
        return await _store_card(session, user_id=user_id, card=card)


async def _method_by_reference(session: AsyncSession, payment_method: str) -> PaymentMethod | None:
    found: PaymentMethod | None = await session.scalar(
        select(PaymentMethod).where(
            PaymentMethod.provider == PaymentProvider.STRIPE,
            PaymentMethod.provider_reference == payment_method,
        )
    )
    return found


async def _detach_requested(session: AsyncSession, payment_method: str) -> bool:
    requested: bool | None = await session.scalar(
        select(exists().where(Outbox.dedupe_key == _detach_dedupe_key(payment_method)))
    )
    return bool(requested)


async def _store_card(
    session: AsyncSession, *, user_id: uuid.UUID, card: CardPaymentMethod
) -> PaymentMethod | None:
    await _lock_user(session, user_id)
    # Checked again under the lock: a DeletePaymentMethod may have committed since the first look.
    if await _detach_requested(session, card.id):
        return None
    has_default = await session.scalar(
        select(exists().where(PaymentMethod.user_id == user_id, PaymentMethod.is_default.is_(True)))
    )
    inserted = await session.scalar(
        insert(PaymentMethod)
        .values(
            user_id=user_id,
            provider=PaymentProvider.STRIPE,
            provider_reference=card.id,
            brand=card.brand.lower(),
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
            is_default=not has_default,
        )
        .on_conflict_do_nothing(
            index_elements=[PaymentMethod.provider, PaymentMethod.provider_reference]
        )
        .returning(PaymentMethod.id)
    )
    if inserted is None:
        log.info("payment method %s already stored", card.id)
    return await _method_by_reference(session, card.id)


# The user's saved methods ----------------------------------------------------------------------


def is_expired(method: PaymentMethod, *, today: datetime.date | None = None) -> bool:
    """A card is valid through the last day of its expiry month (UTC)."""
    day = today or datetime.datetime.now(datetime.UTC).date()
    return (method.exp_year, method.exp_month) < (day.year, day.month)


async def list_payment_methods(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    requested_size: int,
    token: str,
    tokens: PageTokens,
) -> Page[PaymentMethod]:
    """The user's methods, the default first, then newest first."""
    return await keyset_page(
        session,
        select(PaymentMethod).where(PaymentMethod.user_id == user_id),
        keys=[cast(PaymentMethod.is_default, Integer), PaymentMethod.create_time, PaymentMethod.id],
        key_of=lambda m: [int(m.is_default), m.create_time, m.id],
        descending=True,
        requested_size=requested_size,
        token=token,
        tokens=tokens,
        filters={"list": "paymentMethods", "user": str(user_id)},
    )


async def get_usable_method(
    session: AsyncSession, *, user_id: uuid.UUID, method_id: uuid.UUID
) -> PaymentMethod:
    """The user's saved method for a purchase; NOT_FOUND PAYMENT_METHOD_NOT_FOUND when it does
    not exist or is not this user's (the same answer either way, so ids cannot be probed).
    Expiry is not checked here: Stripe declines an expired card with its own reason."""
    method: PaymentMethod | None = await session.scalar(
        select(PaymentMethod).where(PaymentMethod.id == method_id, PaymentMethod.user_id == user_id)
    )
    if method is None:
        raise _not_found(method_id)
    return method


async def get_default_method(session: AsyncSession, *, user_id: uuid.UUID) -> PaymentMethod | None:
    """The method PurchaseTickets charges when none is named, if the user has one."""
    method: PaymentMethod | None = await session.scalar(
        select(PaymentMethod).where(
            PaymentMethod.user_id == user_id, PaymentMethod.is_default.is_(True)
        )
    )
    return method


async def set_default_payment_method(
    session: AsyncSession, *, user_id: uuid.UUID, method_id: uuid.UUID
) -> PaymentMethod:
    """Makes the method the user's only default, atomically; idempotent. An expired card is
    refused with PAYMENT_METHOD_EXPIRED (whether or not it already is the default)."""
    await _lock_user(session, user_id)
    method = await get_usable_method(session, user_id=user_id, method_id=method_id)
    if is_expired(method):
        raise FailedPrecondition(
            "PAYMENT_METHOD_EXPIRED",
            "the card's expiry month has passed",
            metadata={"exp_month": str(method.exp_month), "exp_year": str(method.exp_year)},
        )
    if method.is_default:
        return method
    # Under the user lock, and the old default is cleared before the new one is set, so the
    # partial unique index never sees two defaults.
    await session.execute(
        update(PaymentMethod)
        .where(PaymentMethod.user_id == user_id, PaymentMethod.is_default.is_(True))
        .values(is_default=False)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(PaymentMethod)
        .where(PaymentMethod.id == method.id)
        .values(is_default=True)
        .execution_options(synchronize_session=False)
    )
    await session.refresh(method)
    return method


async def delete_payment_method(
    session: AsyncSession, *, user_id: uuid.UUID, method_id: uuid.UUID
) -> None:
    """Removes the row and enqueues its detachment at Stripe (`DETACH_TOPIC`) in the same
    transaction. If it was the default, no other method becomes the default."""
    await _lock_user(session, user_id)
    method = await get_usable_method(session, user_id=user_id, method_id=method_id)
    customer = await stripe_customer_id(session, user_id=user_id)
    await session.execute(
        delete(PaymentMethod)
        .where(PaymentMethod.id == method.id)
        .execution_options(synchronize_session=False)
    )
    await enqueue(
        session,
        topic=DETACH_TOPIC,
        payload={"payment_method": method.provider_reference, "customer": customer},
        user_id=user_id,
        dedupe_key=_detach_dedupe_key(method.provider_reference),
    )


async def deliver_detach(gateway: StripeGateway, payload: Mapping[str, Any]) -> None:
    """Delivers one `DETACH_TOPIC` message: detaches the card from the customer it was saved on.

    Idempotent, so the outbox may repeat it: a card already detached, gone at Stripe, or by now
    on another customer is left alone and counts as delivered. Raises `ProviderUnavailable` (and
    other `ProviderError`s) for the outbox to retry.
    """
    payment_method = str(payload["payment_method"])
    customer = payload.get("customer")
    try:
        card = await gateway.retrieve_payment_method(payment_method)
    except ProviderNotFound:
        return
    if card.customer is None or (customer is not None and card.customer != customer):
        return
    try:
        await gateway.detach_payment_method(payment_method)
    except ProviderNotFound:
        return
    except ProviderUnavailable:
        raise
    except ProviderError:
        # Stripe refuses to detach a card that is not attached: a concurrent delivery did it.
        if (await gateway.retrieve_payment_method(payment_method)).customer is not None:
            raise
