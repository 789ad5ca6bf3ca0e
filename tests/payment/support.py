"""Arranging buyers for the money-path tests: an eligible user (verified email, approved KYC,
adult), optionally with a card saved at localstripe, and a PurchaseTickets call."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from amesa.lottery.v1 import lottery_service_pb2 as pb
from amesa.lottery.v1 import lottery_service_pb2_grpc
from server.app import App
from server.payment.models import PaymentCustomer, PaymentMethod, PaymentProvider
from server.user.models import KycStatus, User
from server.user.profile import BIRTH_DATE_CONTEXT
from tests.support import bearer, token_for

Metadata = tuple[tuple[str, str | bytes], ...]


@dataclass(frozen=True)
class Buyer:
    user_id: uuid.UUID
    metadata: Metadata
    # `users/{id}/paymentMethods/{id}` of a saved card, or "" when none.
    card: str = ""


async def buyer(
    app: App,
    owner_engine: AsyncEngine,
    *,
    card: str | None = "pm_card_visa",
    verified: bool = True,
    kyc: KycStatus = KycStatus.APPROVED,
    birth_date: datetime.date | None = datetime.date(1990, 5, 17),
) -> Buyer:
    """A user who may buy (unless told otherwise), with `card` (a localstripe test token)
    saved at localstripe and in payment_methods."""
    cipher = app.deps.cipher
    values: dict[str, object] = {
        "email": f"buyer-{uuid.uuid4().hex[:12]}@example.com",
        "given_name": "Bea",
        "family_name": "Buyer",
        "email_verify_time": datetime.datetime.now(datetime.UTC) if verified else None,
        "kyc_status": kyc,
    }
    if birth_date is not None:
        sealed = cipher.encrypt(birth_date.isoformat(), context=BIRTH_DATE_CONTEXT)
        values |= {
            "birth_date_ciphertext": sealed.ciphertext,
            "birth_date_key_id": sealed.key_id,
            "birth_date_blind_index": cipher.blind_index(
                birth_date.isoformat(), context=BIRTH_DATE_CONTEXT
            ),
        }
    async with owner_engine.begin() as connection:
        user_id = await connection.scalar(insert(User).values(**values).returning(User.id))
    assert isinstance(user_id, uuid.UUID)
    metadata = tuple(bearer(token_for(app, user_id=user_id)))
    if card is None:
        return Buyer(user_id=user_id, metadata=metadata)
    stripe = app.deps.gateways.stripe
    customer = await stripe.ensure_customer(
        str(user_id), str(values["email"]), idempotency_key=f"customer:{user_id}"
    )
    saved = await stripe.attach_payment_method(card, customer)
    async with owner_engine.begin() as connection:
        await connection.execute(
            insert(PaymentCustomer).values(
                user_id=user_id, provider=PaymentProvider.STRIPE, provider_customer_id=customer
            )
        )
        method_id = await connection.scalar(
            insert(PaymentMethod)
            .values(
                user_id=user_id,
                provider=PaymentProvider.STRIPE,
                provider_reference=saved.id,
                brand=saved.brand,
                last4=saved.last4,
                exp_month=saved.exp_month,
                exp_year=saved.exp_year,
                is_default=True,
            )
            .returning(PaymentMethod.id)
        )
    return Buyer(
        user_id=user_id, metadata=metadata, card=f"users/{user_id}/paymentMethods/{method_id}"
    )


async def purchase(
    stub: lottery_service_pb2_grpc.LotteryServiceAsyncStub,
    who: Buyer,
    house: str,
    quantity: int,
    *,
    request_id: str | None = None,
    saved_card: bool = True,
    promotion_code: str = "",
) -> pb.PurchaseTicketsResponse:
    response: pb.PurchaseTicketsResponse = await stub.PurchaseTickets(
        pb.PurchaseTicketsRequest(
            house=house,
            quantity=quantity,
            request_id=request_id or str(uuid.uuid4()),
            payment_method=who.card if saved_card else "",
            promotion_code=promotion_code,
        ),
        metadata=who.metadata,
    )
    return response
