"""The dependencies servicers use, built once by server.app.build_server."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.asyncio import Redis

from server.core.crypto import PiiCipher
from server.core.db import Database
from server.core.events import EventBus
from server.core.jobs import JobRunner
from server.core.pagination import PageTokens
from server.core.ratelimit import RateLimiter
from server.core.settings import Settings
from server.core.tokens import AccessTokenSigner, AccessTokenVerifier
from server.payment.gateways import Gateways


@dataclass(frozen=True)
class Deps:
    """What the servicers may use, built once by build_server. Servicers take the whole object
    and keep the parts they need, so wiring a new dependency touches this class only."""

    settings: Settings
    database: Database
    redis: Redis
    signer: AccessTokenSigner
    verifier: AccessTokenVerifier
    page_tokens: PageTokens
    cipher: PiiCipher
    # DRAW-1 transparency key: signs draw manifests and entry-log tree heads.
    transparency_key: Ed25519PrivateKey
    events: EventBus
    rate_limiter: RateLimiter
    jobs: JobRunner
    shutting_down: asyncio.Event
    # Stripe and PayPal clients (None when a provider is not configured).
    gateways: Gateways
