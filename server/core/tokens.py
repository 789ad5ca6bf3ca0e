"""Access tokens: short-lived JWTs signed with Ed25519 (EdDSA), verified with a pinned algorithm.

The signer holds the private key of the current `kid`; the verifier holds every public key still
accepted (current and previous, for rotation) and refuses anything but EdDSA, our issuer and our
audience — so `alg=none`, HS256 signed with the public key, or a token minted for another
audience never verify.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from server.core.context import Principal
from server.core.errors import Unauthenticated

ALGORITHM = "EdDSA"
ACCESS_TOKEN_LIFETIME = timedelta(minutes=15)
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "sid", "iat", "exp"]


def key_id(public_key: Ed25519PublicKey) -> str:
    """A stable key id: the first 16 hex digits of the SHA-256 of the raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    """The RFC 8037 JWK of a public key, as GetJwks serves it."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
        "kid": key_id(public_key),
        "alg": ALGORITHM,
        "use": "sig",
    }


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Writes a PEM private key readable by its owner only (development key generation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.touch(mode=0o600, exist_ok=True)
    path.write_bytes(pem)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expire_time: datetime


class AccessTokenSigner:
    def __init__(self, private_key: Ed25519PrivateKey, *, issuer: str, audience: str) -> None:
        self._key = private_key
        self._kid = key_id(private_key.public_key())
        self._issuer = issuer
        self._audience = audience

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    def issue(
        self,
        *,
        user_id: uuid.UUID,
        session_id: uuid.UUID,
        roles: Iterable[str],
        now: datetime | None = None,
    ) -> IssuedToken:
        issued = (now or datetime.now(UTC)).replace(microsecond=0)
        expires = issued + ACCESS_TOKEN_LIFETIME
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(user_id),
            "sid": str(session_id),
            "roles": sorted(roles),
            "iat": issued,
            "exp": expires,
        }
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self._kid})
        return IssuedToken(token=token, expire_time=expires)


class AccessTokenVerifier:
    """Verifies access tokens; remembers the ones it verified until they expire.

    A client sends the same token with every call for up to 15 minutes, and an Ed25519
    verification costs more than the rest of the interceptor stack together (bench/interceptors).
    The cache is keyed by the whole token string, signature included, so only a byte-identical
    token that already passed every check is accepted from it — and never after its `exp`.
    """

    CACHE_SIZE = 8192

    def __init__(
        self, public_keys: Iterable[Ed25519PublicKey], *, issuer: str, audience: str
    ) -> None:
        self._keys: Mapping[str, Ed25519PublicKey] = {key_id(k): k for k in public_keys}
        self._issuer = issuer
        self._audience = audience
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    @property
    def jwks(self) -> list[dict[str, str]]:
        return [public_jwk(k) for k in self._keys.values()]

    def verify(self, token: str) -> Principal:
        """The principal a valid token names; Unauthenticated (TOKEN_INVALID/EXPIRED) otherwise."""
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires = cached
            if time.time() < expires:
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]
        principal, expires = self._verify_signed(token)
        self._verified[token] = (principal, expires)
        if len(self._verified) > self.CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    def _verify_signed(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("TOKEN_INVALID", "the access token is malformed") from None
        key = self._keys.get(str(header.get("kid", "")))
        if key is None or header.get("alg") != ALGORITHM:
            raise Unauthenticated("TOKEN_INVALID", "the access token is not signed by Amesa")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("TOKEN_EXPIRED", "the access token has expired") from None
        except jwt.PyJWTError:
            raise Unauthenticated("TOKEN_INVALID", "the access token is not valid") from None
        roles = claims.get("roles", [])
        try:
            principal = Principal(
                user_id=uuid.UUID(claims["sub"]),
                session_id=uuid.UUID(claims["sid"]),
                roles=frozenset(str(r) for r in roles) if isinstance(roles, list) else frozenset(),
            )
            return principal, float(claims["exp"])
        except (ValueError, TypeError):
            raise Unauthenticated("TOKEN_INVALID", "the access token is not valid") from None
