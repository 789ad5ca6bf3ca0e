"""Throttles of the credential RPCs, as Redis token buckets (server/core/ratelimit.py).

Designed so that an attacker cannot lock a real person out for long:
- per account, a small bucket (5) that refills one attempt a minute and is emptied only by
  attempts that did not succeed (a success resets it), so a lock-out ends minutes after an
  attack stops;
- per IP, a larger bucket (30, one more every 10 s) that slows password spraying over many
  accounts without touching people behind other addresses.
Account keys are the SHA-256 of the normalised email or the user id, never the address itself.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from server.core.errors import ResourceExhausted
from server.core.ratelimit import RateLimiter


@dataclass(frozen=True, slots=True)
class Bucket:
    prefix: str
    capacity: int
    refill_per_second: float


# Login, and every re-entry of a password or second factor by a signed-in user.
ACCOUNT_CREDENTIALS = Bucket("auth:credentials:account", capacity=5, refill_per_second=1 / 60)
IP_CREDENTIALS = Bucket("auth:credentials:ip", capacity=30, refill_per_second=1 / 10)
# Registration and password reset links per IP: 10, then one more every 6 minutes.
IP_REGISTER = Bucket("auth:register:ip", capacity=10, refill_per_second=1 / 360)
IP_PASSWORD_RESET = Bucket("auth:password_reset:ip", capacity=10, refill_per_second=1 / 360)
# Reset emails per account: 3, then one more every 20 minutes; extra requests are dropped silently.
ACCOUNT_PASSWORD_RESET = Bucket(
    "auth:password_reset:account", capacity=3, refill_per_second=1 / 1200
)
# Verification emails and SMS codes per user.
USER_EMAIL_VERIFICATION = Bucket(
    "auth:email_verification:user", capacity=3, refill_per_second=1 / 300
)
USER_PHONE_CODE = Bucket("auth:phone_code:user", capacity=5, refill_per_second=1 / 720)


def email_key(email: str) -> str:
    return hashlib.sha256(email.strip().casefold().encode()).hexdigest()


class Throttle:
    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    async def _hit(self, bucket: Bucket, subject: str) -> None:
        await self._limiter.hit(
            f"{bucket.prefix}:{subject}",
            capacity=bucket.capacity,
            refill_per_second=bucket.refill_per_second,
        )

    async def credential_attempt(self, *, account: str, ip: str | None) -> None:
        """Before checking a password or second factor: RATE_LIMITED once either bucket is
        empty. `account` is `email_key(email)` or a user id."""
        if ip:
            await self._hit(IP_CREDENTIALS, ip)
        await self._hit(ACCOUNT_CREDENTIALS, account)

    async def credential_succeeded(self, *, account: str) -> None:
        await self._limiter.reset(f"{ACCOUNT_CREDENTIALS.prefix}:{account}")

    async def registration(self, *, ip: str | None) -> None:
        if ip:
            await self._hit(IP_REGISTER, ip)

    async def password_reset_request(self, *, email: str, ip: str | None) -> bool:
        """RATE_LIMITED per IP; False (send nothing, say nothing) when the account had enough."""
        if ip:
            await self._hit(IP_PASSWORD_RESET, ip)
        try:
            await self._hit(ACCOUNT_PASSWORD_RESET, email_key(email))
        except ResourceExhausted:
            return False
        return True

    async def password_reset(self, *, ip: str | None) -> None:
        if ip:
            await self._hit(IP_PASSWORD_RESET, ip)

    async def email_verification(self, *, user_id: uuid.UUID) -> None:
        await self._hit(USER_EMAIL_VERIFICATION, str(user_id))

    async def phone_code(self, *, user_id: uuid.UUID) -> None:
        await self._hit(USER_PHONE_CODE, str(user_id))
