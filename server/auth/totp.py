"""RFC 6238 time-based one-time passwords (HMAC-SHA1, 30-second steps, 6 digits) and one-time
backup codes, written out with hmac: the algorithm is a few lines (RFC 4226 §5.3)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from urllib.parse import quote, urlencode

STEP_SECONDS = 30
DIGITS = 6
# Accepted drift: the previous, the current and the next step.
WINDOW = 1
ISSUER = "Amesa"
SECRET_BYTES = 20  # 160 bits: 32 base32 characters
BACKUP_CODE_COUNT = 10
_BACKUP_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o, 1/l


def new_secret() -> str:
    """A fresh secret, base32 without padding (what authenticator apps accept)."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")


def _key(secret: str) -> bytes:
    return base64.b32decode(secret + "=" * (-len(secret) % 8))


def hotp(secret: str, counter: int) -> str:
    digest = hmac.new(_key(secret), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**DIGITS).zfill(DIGITS)


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // STEP_SECONDS)


def code_at(secret: str, now: float | None = None) -> str:
    """The code an authenticator app shows at `now` (tests use it as the app)."""
    return hotp(secret, current_step(now))


def matching_step(secret: str, code: str, *, after_step: int | None = None) -> int | None:
    """The time step within the window whose code is `code`, newer than `after_step` (a code is
    accepted once); None when none matches."""
    step = current_step()
    for candidate in range(step - WINDOW, step + WINDOW + 1):
        if after_step is not None and candidate <= after_step:
            continue
        if hmac.compare_digest(hotp(secret, candidate), code):
            return candidate
    return None


def provisioning_uri(secret: str, *, account: str) -> str:
    query = urlencode(
        {
            "secret": secret,
            "issuer": ISSUER,
            "algorithm": "SHA1",
            "digits": DIGITS,
            "period": STEP_SECONDS,
        }
    )
    return f"otpauth://totp/{ISSUER}:{quote(account)}?{query}"


def new_backup_codes() -> list[str]:
    """Ten codes like "k7m2q-9xr4t"."""
    codes = []
    for _ in range(BACKUP_CODE_COUNT):
        raw = "".join(secrets.choice(_BACKUP_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def normalize_backup_code(code: str) -> str:
    """What is hashed: lower case, without the hyphen."""
    return code.replace("-", "").lower()
