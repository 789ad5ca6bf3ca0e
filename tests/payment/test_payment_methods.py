"""Saved payment methods over the real channel against localstripe: CreateSetupIntent, the
`setup_intent.succeeded` handler, ListPaymentMethods, SetDefaultPaymentMethod,
DeletePaymentMethod, ownership, and the helpers the purchase path uses."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

import grpc
import pytest
import pytest_asyncio
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.payment.v1 import payment_service_pb2 as pb
from amesa.payment.v1 import payment_service_pb2_grpc
from server.app import App
from server.core.errors import NotFound
from server.core.models import Outbox
from server.core.settings import Settings
from server.payment import methods
from server.payment.models import PaymentCustomer, PaymentMethod, PaymentProvider
from server.user.models import User
from tests.payment.localstripe import LocalStripe
from tests.support import bearer, failure, separate_server, token_for

Metadata = tuple[tuple[str, str], ...]
# The async stub type exists only for type checkers.
Stub: TypeAlias = "payment_service_pb2_grpc.PaymentServiceAsyncStub"


def stripe_settings(settings: Settings, localstripe: LocalStripe) -> Settings:
    payment = replace(
        settings.payment,
        stripe_secret_key=localstripe.api_key,
        stripe_publishable_key="pk_test_amesa",
        stripe_api_base=localstripe.base_url,
        stripe_localstripe=True,
    )
    return replace(settings, payment=payment)


@pytest_asyncio.fixture(scope="module", loop_scope="session", name="stripe_app")
async def stripe_app_fixture(
    app: App, settings: Settings, localstripe: LocalStripe
) -> AsyncIterator[App]:
    """The shared server when it is already on localstripe, else one of our own that is."""
    if app.settings.payment.stripe_api_base == localstripe.base_url:
        yield app
        return
    async with separate_server(stripe_settings(settings, localstripe)) as own:
        yield own


@pytest_asyncio.fixture(scope="module", loop_scope="session", name="stub")
async def stub_fixture(stripe_app: App) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stripe_app.port}") as channel:
        yield payment_service_pb2_grpc.PaymentServiceStub(channel)


@dataclass(frozen=True)
class Buyer:
    id: uuid.UUID
    metadata: Metadata

    @property
    def parent(self) -> str:
        return f"users/{self.id}"


@pytest_asyncio.fixture(loop_scope="session", name="new_buyer")
async def new_buyer_fixture(stripe_app: App, owner_engine: AsyncEngine) -> Any:
    async def make() -> Buyer:
        async with owner_engine.begin() as connection:
            user_id = await connection.scalar(
                insert(User)
                .values(
                    email=f"card-{uuid.uuid4().hex[:12]}@example.com",
                    given_name="Cora",
                    family_name="Card",
                )
                .returning(User.id)
            )
        assert isinstance(user_id, uuid.UUID)
        return Buyer(user_id, tuple(bearer(token_for(stripe_app, user_id=user_id))))

    return make


async def save_card(
    stub: Stub, stripe_app: App, localstripe: LocalStripe, buyer: Buyer, payment_method: str
) -> pb.PaymentMethod:
    """The whole flow: CreateSetupIntent, Stripe.js confirming it, then the webhook's handler."""
    setup = await stub.CreateSetupIntent(
        pb.CreateSetupIntentRequest(parent="users/me"), metadata=buyer.metadata
    )
    confirmed = await confirm_setup_intent(localstripe, setup, payment_method)
    await methods.on_setup_intent_succeeded(stripe_app.deps, setup.provider_reference)
    listed = await list_methods(stub, buyer)
    (saved,) = [m for m in listed if m.provider_reference == confirmed["payment_method"]]
    return saved


async def confirm_setup_intent(
    localstripe: LocalStripe, setup: pb.CreateSetupIntentResponse, payment_method: str
) -> dict[str, Any]:
    # What Stripe.js `confirmCardSetup` does in the browser with the client secret.
    response = await localstripe.request(
        "POST",
        f"/v1/setup_intents/{setup.provider_reference}/confirm",
        {"client_secret": setup.client_secret, "payment_method": payment_method},
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def card(
    localstripe: LocalStripe, number: str, *, exp_month: int = 11, exp_year: int = 2031
) -> str:
    """A PaymentMethod from card details, as Stripe.js creates it in the browser. localstripe
    knows only a few `pm_card_*` tokens and calls every card "visa": tests tell cards apart by
    their last 4 digits."""
    response = await localstripe.request(
        "POST",
        "/v1/payment_methods",
        {
            "type": "card",
            "card[number]": number,
            "card[exp_month]": str(exp_month),
            "card[exp_year]": str(exp_year),
            "card[cvc]": "123",
        },
    )
    response.raise_for_status()
    payment_method: str = response.json()["id"]
    return payment_method


async def list_methods(stub: Stub, buyer: Buyer) -> list[pb.PaymentMethod]:
    response = await stub.ListPaymentMethods(
        pb.ListPaymentMethodsRequest(parent="users/me"), metadata=buyer.metadata
    )
    return list(response.payment_methods)


async def customer_rows(owner_engine: AsyncEngine, user_id: uuid.UUID) -> list[str]:
    async with owner_engine.connect() as connection:
        rows = await connection.scalars(
            select(PaymentCustomer.provider_customer_id).where(PaymentCustomer.user_id == user_id)
        )
        return list(rows)


async def arrange_card(
    owner_engine: AsyncEngine,
    user_id: uuid.UUID,
    *,
    exp_year: int,
    exp_month: int = 1,
    is_default: bool = False,
) -> uuid.UUID:
    """A stored card the RPCs read (e.g. one that has expired since it was saved)."""
    async with owner_engine.begin() as connection:
        method_id = await connection.scalar(
            insert(PaymentMethod)
            .values(
                user_id=user_id,
                provider=PaymentProvider.STRIPE,
                provider_reference=f"pm_arranged{uuid.uuid4().hex[:12]}",
                brand="visa",
                last4="4242",
                exp_month=exp_month,
                exp_year=exp_year,
                is_default=is_default,
            )
            .returning(PaymentMethod.id)
        )
    assert isinstance(method_id, uuid.UUID)
    return method_id


async def expect_failure(call: Awaitable[object], code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    error = failure(raised.value)
    assert (error.code, error.reason) == (code, reason)


# CreateSetupIntent ------------------------------------------------------------------------------


async def test_create_setup_intent_returns_client_secret_on_new_customer(
    stub: Stub, new_buyer: Any, localstripe: LocalStripe, owner_engine: AsyncEngine
) -> None:
    buyer = await new_buyer()

    setup = await stub.CreateSetupIntent(
        pb.CreateSetupIntentRequest(parent="users/me"), metadata=buyer.metadata
    )

    assert setup.provider_reference.startswith("seti_")
    assert setup.client_secret.startswith(f"{setup.provider_reference}_secret_")
    (customer,) = await customer_rows(owner_engine, buyer.id)
    intent = await localstripe.get(f"/v1/setup_intents/{setup.provider_reference}")
    assert (intent["customer"], intent["status"], intent["usage"]) == (
        customer,
        "requires_payment_method",
        "off_session",
    )
    stored = await localstripe.get(f"/v1/customers/{customer}")
    assert stored["metadata"] == {"user_id": str(buyer.id)}
    assert stored["email"].startswith("card-")


async def test_create_setup_intent_again_reuses_the_customer(
    stub: Stub, new_buyer: Any, localstripe: LocalStripe, owner_engine: AsyncEngine
) -> None:
    buyer = await new_buyer()
    request = pb.CreateSetupIntentRequest(parent=buyer.parent)

    first = await stub.CreateSetupIntent(request, metadata=buyer.metadata)
    second = await stub.CreateSetupIntent(request, metadata=buyer.metadata)

    assert first.provider_reference != second.provider_reference
    (customer,) = await customer_rows(owner_engine, buyer.id)
    for setup in (first, second):
        intent = await localstripe.get(f"/v1/setup_intents/{setup.provider_reference}")
        assert intent["customer"] == customer


async def test_concurrent_first_ensure_customer_stores_one_customer(
    stripe_app: App, new_buyer: Any, owner_engine: AsyncEngine
) -> None:
    buyer = await new_buyer()

    found = await asyncio.gather(
        *(
            methods.ensure_customer(
                stripe_app.database,
                stripe_app.deps.gateways.stripe,
                user_id=buyer.id,
                email="race@example.com",
            )
            for _ in range(8)
        )
    )

    (customer,) = await customer_rows(owner_engine, buyer.id)
    assert set(found) == {customer}


async def test_create_setup_intent_for_another_user_is_not_owner(
    stub: Stub, new_buyer: Any, stripe_app: App, owner_engine: AsyncEngine
) -> None:
    owner, intruder = await new_buyer(), await new_buyer()
    admin = tuple(bearer(token_for(stripe_app, roles=("user", "admin"))))

    for caller in (intruder.metadata, admin):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.CreateSetupIntent(
                pb.CreateSetupIntentRequest(parent=owner.parent), metadata=caller
            )
        error = failure(raised.value)
        assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")
    assert await customer_rows(owner_engine, owner.id) == []


async def test_create_setup_intent_without_stripe_is_provider_disabled(
    settings: Settings, app: App, owner_engine: AsyncEngine
) -> None:
    disabled = replace(settings.payment, stripe_secret_key=None)
    async with (
        separate_server(settings, payment=disabled) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        user_id = uuid.uuid4()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await payment_service_pb2_grpc.PaymentServiceStub(channel).CreateSetupIntent(
                pb.CreateSetupIntentRequest(parent="users/me"),
                metadata=bearer(token_for(server, user_id=user_id)),
            )

    error = failure(raised.value)
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PROVIDER_DISABLED")
    assert await customer_rows(owner_engine, user_id) == []


async def test_create_setup_intent_with_stripe_unreachable_is_provider_unavailable(
    settings: Settings, localstripe: LocalStripe, new_buyer: Any, owner_engine: AsyncEngine
) -> None:
    buyer = await new_buyer()
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    unreachable = replace(
        stripe_settings(settings, localstripe).payment, stripe_api_base="http://127.0.0.1:1"
    )
    async with (
        separate_server(settings, payment=unreachable) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await payment_service_pb2_grpc.PaymentServiceStub(channel).CreateSetupIntent(
                pb.CreateSetupIntentRequest(parent="users/me"),
                metadata=bearer(token_for(server, user_id=buyer.id)),
                timeout=30,
            )

    error = failure(raised.value)
    assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE")
    assert await customer_rows(owner_engine, buyer.id) == []


# setup_intent.succeeded -------------------------------------------------------------------------


async def test_confirmed_setup_intent_stores_the_card_once_as_default(
    stub: Stub,
    stripe_app: App,
    new_buyer: Any,
    localstripe: LocalStripe,
    owner_engine: AsyncEngine,
) -> None:
    buyer = await new_buyer()
    setup = await stub.CreateSetupIntent(
        pb.CreateSetupIntentRequest(parent="users/me"), metadata=buyer.metadata
    )
    confirmed = await confirm_setup_intent(localstripe, setup, "pm_card_visa")
    payment_method = confirmed["payment_method"]

    # The webhook delivered twice, the second time concurrently with a third.
    await methods.on_setup_intent_succeeded(stripe_app.deps, setup.provider_reference)
    await asyncio.gather(
        methods.on_setup_intent_succeeded(stripe_app.deps, setup.provider_reference),
        methods.on_setup_intent_succeeded(stripe_app.deps, setup.provider_reference),
    )

    (saved,) = await list_methods(stub, buyer)
    expected = pb.PaymentMethod(
        name=saved.name,
        provider=pb.PAYMENT_PROVIDER_STRIPE,
        provider_reference=payment_method,
        brand="visa",
        last4="4242",
        exp_month=12,
        exp_year=2030,
        is_default=True,
        create_time=saved.create_time,
    )
    assert saved == expected
    assert saved.name.startswith(f"users/{buyer.id}/paymentMethods/")
    (customer,) = await customer_rows(owner_engine, buyer.id)
    # localstripe does not attach on confirm; the handler did.
    assert (await localstripe.get(f"/v1/payment_methods/{payment_method}"))["customer"] == customer


async def test_setup_intent_not_confirmed_stores_nothing(
    stub: Stub, stripe_app: App, new_buyer: Any
) -> None:
    buyer = await new_buyer()
    setup = await stub.CreateSetupIntent(
        pb.CreateSetupIntentRequest(parent="users/me"), metadata=buyer.metadata
    )

    stored = await methods.save_setup_intent_card(
        stripe_app.database, stripe_app.deps.gateways.stripe, setup.provider_reference
    )

    assert stored is None
    assert await list_methods(stub, buyer) == []


async def test_setup_intent_of_a_foreign_customer_stores_nothing(
    stripe_app: App, localstripe: LocalStripe, owner_engine: AsyncEngine
) -> None:
    customer = await localstripe.request("POST", "/v1/customers", {"email": "x@example.org"})
    setup = (
        await localstripe.request(
            "POST", "/v1/setup_intents", {"customer": customer.json()["id"], "usage": "off_session"}
        )
    ).json()
    confirmed = await confirm_setup_intent(
        localstripe,
        pb.CreateSetupIntentResponse(
            client_secret=setup["client_secret"], provider_reference=setup["id"]
        ),
        "pm_card_visa",
    )

    stored = await methods.save_setup_intent_card(
        stripe_app.database, stripe_app.deps.gateways.stripe, setup["id"]
    )

    assert stored is None
    async with owner_engine.connect() as connection:
        count = await connection.scalar(
            select(func.count())
            .select_from(PaymentMethod)
            .where(PaymentMethod.provider_reference == confirmed["payment_method"])
        )
    assert count == 0


# ListPaymentMethods -----------------------------------------------------------------------------


async def test_list_shows_default_first_then_newest_and_pages(
    stub: Stub, stripe_app: App, new_buyer: Any, localstripe: LocalStripe
) -> None:
    buyer = await new_buyer()
    visa = await save_card(stub, stripe_app, localstripe, buyer, "pm_card_visa")
    mastercard = await save_card(
        stub, stripe_app, localstripe, buyer, await card(localstripe, "5555555555554444")
    )
    debit = await save_card(
        stub, stripe_app, localstripe, buyer, await card(localstripe, "4000056655665556")
    )

    listed = await list_methods(stub, buyer)

    assert [m.name for m in listed] == [visa.name, debit.name, mastercard.name]
    assert [(m.last4, m.exp_month, m.exp_year, m.is_default) for m in listed] == [
        ("4242", 12, 2030, True),
        ("5556", 11, 2031, False),
        ("4444", 11, 2031, False),
    ]
    first = await stub.ListPaymentMethods(
        pb.ListPaymentMethodsRequest(parent=buyer.parent, page_size=2), metadata=buyer.metadata
    )
    second = await stub.ListPaymentMethods(
        pb.ListPaymentMethodsRequest(
            parent=buyer.parent, page_size=2, page_token=first.next_page_token
        ),
        metadata=buyer.metadata,
    )
    assert (first.total_size, second.total_size, second.next_page_token) == (3, 3, "")
    assert [m.name for m in [*first.payment_methods, *second.payment_methods]] == [
        m.name for m in listed
    ]


async def test_list_of_a_user_without_cards_is_empty(stub: Stub, new_buyer: Any) -> None:
    buyer = await new_buyer()

    response = await stub.ListPaymentMethods(
        pb.ListPaymentMethodsRequest(parent="users/me"), metadata=buyer.metadata
    )

    assert response == pb.ListPaymentMethodsResponse()


# SetDefaultPaymentMethod ------------------------------------------------------------------------


async def test_set_default_moves_the_flag_and_is_idempotent(
    stub: Stub, stripe_app: App, new_buyer: Any, localstripe: LocalStripe
) -> None:
    buyer = await new_buyer()
    visa = await save_card(stub, stripe_app, localstripe, buyer, "pm_card_visa")
    mastercard = await save_card(
        stub, stripe_app, localstripe, buyer, await card(localstripe, "5555555555554444")
    )

    made = await stub.SetDefaultPaymentMethod(
        pb.SetDefaultPaymentMethodRequest(name=mastercard.name), metadata=buyer.metadata
    )
    again = await stub.SetDefaultPaymentMethod(
        pb.SetDefaultPaymentMethodRequest(name=mastercard.name.replace(buyer.parent, "users/me")),
        metadata=buyer.metadata,
    )

    assert made.is_default
    assert again == made
    listed = await list_methods(stub, buyer)
    assert [(m.name, m.is_default) for m in listed] == [
        (mastercard.name, True),
        (visa.name, False),
    ]


async def test_concurrent_set_default_leaves_exactly_one_default(
    stub: Stub, new_buyer: Any, owner_engine: AsyncEngine
) -> None:
    buyer = await new_buyer()
    cards = [
        await arrange_card(owner_engine, buyer.id, exp_year=2099, is_default=i == 0)
        for i in range(4)
    ]

    await asyncio.gather(
        *(
            stub.SetDefaultPaymentMethod(
                pb.SetDefaultPaymentMethodRequest(name=f"users/me/paymentMethods/{card}"),
                metadata=buyer.metadata,
            )
            for _ in range(5)
            for card in cards
        )
    )

    listed = await list_methods(stub, buyer)
    assert sum(m.is_default for m in listed) == 1
    assert listed[0].is_default


async def test_set_default_of_an_expired_card_is_failed_precondition(
    stub: Stub, new_buyer: Any, owner_engine: AsyncEngine
) -> None:
    buyer = await new_buyer()
    current = await arrange_card(owner_engine, buyer.id, exp_year=2099, is_default=True)
    expired = await arrange_card(owner_engine, buyer.id, exp_year=2021, exp_month=12)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.SetDefaultPaymentMethod(
            pb.SetDefaultPaymentMethodRequest(name=f"users/me/paymentMethods/{expired}"),
            metadata=buyer.metadata,
        )

    error = failure(raised.value)
    assert (error.code, error.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "PAYMENT_METHOD_EXPIRED",
    )
    assert error.error_info.metadata["exp_year"] == "2021"
    listed = await list_methods(stub, buyer)
    assert [m.name for m in listed if m.is_default] == [
        f"users/{buyer.id}/paymentMethods/{current}"
    ]


async def test_card_expiring_this_month_can_become_default(
    stub: Stub, new_buyer: Any, owner_engine: AsyncEngine
) -> None:
    buyer = await new_buyer()
    today = datetime.datetime.now(datetime.UTC)
    card = await arrange_card(owner_engine, buyer.id, exp_year=today.year, exp_month=today.month)

    made = await stub.SetDefaultPaymentMethod(
        pb.SetDefaultPaymentMethodRequest(name=f"users/me/paymentMethods/{card}"),
        metadata=buyer.metadata,
    )

    assert made.is_default


async def test_set_default_of_unknown_method_is_not_found(stub: Stub, new_buyer: Any) -> None:
    buyer = await new_buyer()

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.SetDefaultPaymentMethod(
            pb.SetDefaultPaymentMethodRequest(name=f"users/me/paymentMethods/{uuid.uuid4()}"),
            metadata=buyer.metadata,
        )

    error = failure(raised.value)
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "PAYMENT_METHOD_NOT_FOUND")


# DeletePaymentMethod ----------------------------------------------------------------------------


async def test_delete_removes_the_card_and_detaches_it_through_the_outbox(
    stub: Stub,
    stripe_app: App,
    new_buyer: Any,
    localstripe: LocalStripe,
    owner_engine: AsyncEngine,
) -> None:
    buyer = await new_buyer()
    visa = await save_card(stub, stripe_app, localstripe, buyer, "pm_card_visa")
    mastercard = await save_card(
        stub, stripe_app, localstripe, buyer, await card(localstripe, "5555555555554444")
    )
    (customer,) = await customer_rows(owner_engine, buyer.id)

    await stub.DeletePaymentMethod(
        pb.DeletePaymentMethodRequest(name=visa.name), metadata=buyer.metadata
    )

    # The default was deleted: the other card stays, and does not become the default.
    listed = await list_methods(stub, buyer)
    assert [(m.name, m.is_default) for m in listed] == [(mastercard.name, False)]
    async with owner_engine.connect() as connection:
        (message,) = (
            await connection.execute(
                select(Outbox.topic, Outbox.payload, Outbox.user_id).where(
                    Outbox.dedupe_key == f"{methods.DETACH_TOPIC}:{visa.provider_reference}"
                )
            )
        ).all()
    assert message.topic == methods.DETACH_TOPIC
    assert message.payload == {"payment_method": visa.provider_reference, "customer": customer}
    assert message.user_id == buyer.id
    # What the payment worker does with the message, twice as the outbox may.
    gateway = stripe_app.deps.gateways.stripe
    await methods.deliver_detach(gateway, message.payload)
    await methods.deliver_detach(gateway, message.payload)
    detached = await localstripe.get(f"/v1/payment_methods/{visa.provider_reference}")
    assert detached["customer"] is None
    kept = await localstripe.get(f"/v1/payment_methods/{mastercard.provider_reference}")
    assert kept["customer"] == customer


async def test_late_setup_intent_event_does_not_bring_a_deleted_card_back(
    stub: Stub, stripe_app: App, new_buyer: Any, localstripe: LocalStripe
) -> None:
    buyer = await new_buyer()
    setup = await stub.CreateSetupIntent(
        pb.CreateSetupIntentRequest(parent="users/me"), metadata=buyer.metadata
    )
    await confirm_setup_intent(localstripe, setup, "pm_card_visa")
    await methods.on_setup_intent_succeeded(stripe_app.deps, setup.provider_reference)
    (saved,) = await list_methods(stub, buyer)
    await stub.DeletePaymentMethod(
        pb.DeletePaymentMethodRequest(name=saved.name), metadata=buyer.metadata
    )

    await methods.on_setup_intent_succeeded(stripe_app.deps, setup.provider_reference)

    assert await list_methods(stub, buyer) == []


async def test_delete_of_unknown_method_is_not_found(stub: Stub, new_buyer: Any) -> None:
    buyer = await new_buyer()

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.DeletePaymentMethod(
            pb.DeletePaymentMethodRequest(name=f"users/me/paymentMethods/{uuid.uuid4()}"),
            metadata=buyer.metadata,
        )

    error = failure(raised.value)
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "PAYMENT_METHOD_NOT_FOUND")


# Ownership --------------------------------------------------------------------------------------


async def test_another_user_can_never_see_or_change_the_cards(
    stub: Stub,
    stripe_app: App,
    new_buyer: Any,
    localstripe: LocalStripe,
) -> None:
    owner, intruder = await new_buyer(), await new_buyer()
    first = await save_card(stub, stripe_app, localstripe, owner, "pm_card_visa")
    second = await save_card(
        stub, stripe_app, localstripe, owner, await card(localstripe, "5555555555554444")
    )
    before = await list_methods(stub, owner)
    admin = tuple(bearer(token_for(stripe_app, roles=("user", "admin"))))
    method_id = second.name.rsplit("/", 1)[1]

    # Naming the owner: refused before anything is looked up, for admins too.
    for who in (intruder.metadata, admin):
        for call in (
            stub.ListPaymentMethods(
                pb.ListPaymentMethodsRequest(parent=owner.parent), metadata=who
            ),
            stub.SetDefaultPaymentMethod(
                pb.SetDefaultPaymentMethodRequest(name=second.name), metadata=who
            ),
            stub.DeletePaymentMethod(pb.DeletePaymentMethodRequest(name=second.name), metadata=who),
        ):
            await expect_failure(call, grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")
    # Naming the card as one's own: no such card.
    as_own = f"users/me/paymentMethods/{method_id}"
    for call in (
        stub.SetDefaultPaymentMethod(
            pb.SetDefaultPaymentMethodRequest(name=as_own), metadata=intruder.metadata
        ),
        stub.DeletePaymentMethod(
            pb.DeletePaymentMethodRequest(name=as_own), metadata=intruder.metadata
        ),
    ):
        await expect_failure(call, grpc.StatusCode.NOT_FOUND, "PAYMENT_METHOD_NOT_FOUND")

    assert await list_methods(stub, intruder) == []
    assert await list_methods(stub, owner) == before
    assert [m.name for m in before if m.is_default] == [first.name]


async def test_get_usable_method_finds_only_the_users_own(
    stripe_app: App, new_buyer: Any, owner_engine: AsyncEngine
) -> None:
    owner, other = await new_buyer(), await new_buyer()
    card = await arrange_card(owner_engine, owner.id, exp_year=2099, is_default=True)

    async with stripe_app.database.session(system=True) as session:
        found = await methods.get_usable_method(session, user_id=owner.id, method_id=card)
        default = await methods.get_default_method(session, user_id=owner.id)
        with pytest.raises(NotFound) as missing:
            await methods.get_usable_method(session, user_id=other.id, method_id=card)
        assert await methods.get_default_method(session, user_id=other.id) is None

    assert (found.id, found.user_id, found.is_default) == (card, owner.id, True)
    assert default is not None
    assert default.id == card
    assert missing.value.reason == "PAYMENT_METHOD_NOT_FOUND"
