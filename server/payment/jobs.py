"""The payment job, once per round across replicas: unpaid orders past their expiry are
released, pending payments are compared with Stripe (the reconciler), cancelled lotteries are
refunded, and refunds recorded but not yet sent are sent."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Final

from server.core import outbox
from server.core.db import Database
from server.core.deps import Deps
from server.lottery.lifecycle import utcnow
from server.payment import methods, refunds
from server.payment.checkout import Checkout
from server.payment.paypal_flow import PayPalFlow

log = logging.getLogger("amesa.payment.jobs")

JOB_NAME: Final = "payment.maintenance"
# A pending payment younger than this many rounds is left to the request creating it.
RECONCILE_AFTER_ROUNDS: Final = 3


class PaymentJob:
    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._checkout = Checkout(deps)

    async def run(self, _database: Database | None = None) -> None:
        expired = await self._checkout.expire_due()
        interval = self._deps.settings.payment.reconcile_interval
        reconciled = await self._checkout.reconcile(older_than=interval * RECONCILE_AFTER_ROUNDS)
        if self._deps.gateways.paypal_client is not None:
            reconciled += await PayPalFlow(self._deps).reconcile(
                older_than=interval * RECONCILE_AFTER_ROUNDS
            )
        houses = await refunds.refund_cancelled_houses(self._deps.database, now=utcnow())
        sent = await refunds.send_pending_refunds(self._deps.database, self._deps.gateways)
        await self._detach_deleted_cards()
        if expired or reconciled or houses or sent:
            log.info(
                "payments: %d expired, %d reconciled, %d cancelled houses, %d refunds sent",
                expired,
                reconciled,
                houses,
                sent,
            )

    async def _detach_deleted_cards(self) -> None:
        """Cards a user deleted are detached at Stripe (methods.DETACH_TOPIC)."""
        database = self._deps.database
        async with database.session(system=True) as session:
            messages = await outbox.claim_due(session, limit=50, topics=[methods.DETACH_TOPIC])
        for message in messages:
            try:
                await methods.deliver_detach(self._deps.gateways.stripe, message.payload)
            except Exception as error:
                log.warning("detach %s failed: %s", message.id, error)
                async with database.session(system=True) as session:
                    await outbox.mark_failed(session, message, error=str(error))
                continue
            async with database.session(system=True) as session:
                await outbox.mark_delivered(session, message)


def register_payment_job(deps: Deps) -> PaymentJob:
    job = PaymentJob(deps)
    interval = deps.settings.payment.reconcile_interval
    providers = (deps.gateways.stripe_gateway, deps.gateways.paypal_client)
    if interval > timedelta(0) and any(provider is not None for provider in providers):
        deps.jobs.register(JOB_NAME, job.run, interval=interval, timeout=timedelta(minutes=2))
    return job
