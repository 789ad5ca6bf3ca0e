"""The interface between a cancelled lottery and the money path (SPEC §5 step 5).

Cancelling a lottery (an admin's CancelHouse, the minimum participation not reached at close,
the beacon unavailable past the manifest's deadline) calls `request_house_refunds` in the
cancelling transaction. It enqueues one outbox message on `REFUND_TOPIC`, so the request is
durable exactly when the cancellation is: the payment worker that consumes the topic refunds
every PAID order of the house (provider refunds with idempotency keys, tickets voided) and
cancels its pending orders, however often it is retried.
"""

from __future__ import annotations

import uuid
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from server.core.outbox import enqueue

REFUND_TOPIC: Final = "payment.refund_cancelled_house"


async def request_house_refunds(session: AsyncSession, *, house_id: uuid.UUID, reason: str) -> None:
    await enqueue(
        session,
        topic=REFUND_TOPIC,
        payload={"house_id": str(house_id), "reason": reason},
        user_id=None,
        dedupe_key=f"{REFUND_TOPIC}:{house_id}",
    )
