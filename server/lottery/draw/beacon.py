"""drand HTTP client (SPEC §6 step 4): chain info and rounds, each round's BLS signature verified.

    beacon = BeaconClient("https://api.drand.sh", chain_hash=QUICKNET_CHAIN_HASH)
    info = await beacon.info()                      # GET {base}/{chain_hash}/info
    round_ = await beacon.fetch_round(R, public_key=manifest_public_key)
                                                    # GET {base}/{chain_hash}/public/{R}
    await beacon.aclose()

Only quicknet's scheme (`bls-unchained-g1-rfc9380`) is accepted. A round is verified against the
public key the manifest committed to, never against whatever the endpoint says today, so a
compromised or misconfigured endpoint cannot feed the draw other randomness. Call it outside any
database transaction.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
from amesa_sdk.draw1 import BEACON_SCHEME, beacon_randomness
from amesa_sdk.verify import BLS_PUBLIC_KEY_SIZE, VerificationFailed, verify_beacon_signature

QUICKNET_CHAIN_HASH = "52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971"
DEFAULT_TIMEOUT_S = 5.0
_NOT_YET_STATUSES = frozenset({404, 425})  # drand answers a future round with one of these


class BeaconError(Exception):
    """The beacon could not provide a verified round."""


class BeaconUnavailable(BeaconError):
    """The endpoint did not answer usefully (network error, timeout, 5xx): retry later."""


class RoundNotYetAvailable(BeaconUnavailable):
    """The round has not been produced yet (or the endpoint has not caught up): retry later."""


class BeaconInvalid(BeaconError):
    """The endpoint answered with something that is not a valid round of the configured chain:
    wrong chain, wrong scheme, malformed JSON, or a signature that does not verify."""


@dataclass(frozen=True, slots=True)
class ChainInfo:
    chain_hash: str
    public_key: bytes
    period_s: int
    genesis_time_s: int
    scheme: str


@dataclass(frozen=True, slots=True)
class BeaconRound:
    """A round whose signature verified against the chain's public key."""

    chain_hash: str
    round: int
    signature: bytes

    @property
    def randomness(self) -> bytes:
        return beacon_randomness(self.signature)


class BeaconClient:
    def __init__(
        self,
        base_url: str,
        *,
        chain_hash: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._chain_hash = chain_hash
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            headers={"accept": "application/json"},
            follow_redirects=False,
        )

    @property
    def chain_hash(self) -> str:
        return self._chain_hash

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> BeaconClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def info(self) -> ChainInfo:
        """The chain's parameters; refuses another chain or scheme than configured."""
        body = await self._get(f"/{self._chain_hash}/info", what="chain info")
        try:
            info = ChainInfo(
                chain_hash=_str(body, "hash"),
                public_key=_hex(body, "public_key"),
                period_s=_int(body, "period"),
                genesis_time_s=_int(body, "genesis_time"),
                scheme=_str(body, "schemeID"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise BeaconInvalid(f"malformed chain info: {error}") from error
        if info.chain_hash != self._chain_hash:
            raise BeaconInvalid(
                f"the endpoint serves chain {info.chain_hash}, not the configured one"
            )
        if info.scheme != BEACON_SCHEME:
            raise BeaconInvalid(f"chain scheme {info.scheme!r} is not {BEACON_SCHEME!r}")
        if len(info.public_key) != BLS_PUBLIC_KEY_SIZE or info.period_s <= 0:
            raise BeaconInvalid("chain info has a malformed public key or period")
        return info

    async def fetch_round(self, beacon_round: int, *, public_key: bytes) -> BeaconRound:
        """Round `beacon_round`, its BLS signature verified against `public_key`. Raises
        RoundNotYetAvailable before the round exists, BeaconUnavailable when the endpoint fails,
        BeaconInvalid when the answer does not verify."""
        if beacon_round < 1:
            raise ValueError("drand rounds start at 1")
        body = await self._get(f"/{self._chain_hash}/public/{beacon_round}", what="round")
        try:
            served_round = _int(body, "round")
            signature = _hex(body, "signature")
            randomness = _hex(body, "randomness") if "randomness" in body else None
        except (KeyError, TypeError, ValueError) as error:
            raise BeaconInvalid(f"malformed round {beacon_round}: {error}") from error
        if served_round != beacon_round:
            raise BeaconInvalid(f"asked for round {beacon_round}, got round {served_round}")
        try:
            # A pairing check takes milliseconds of CPU: keep it off the event loop.
            await asyncio.to_thread(
                verify_beacon_signature,
                beacon_round=beacon_round,
                signature=signature,
                public_key=public_key,
            )
        except VerificationFailed as error:
            raise BeaconInvalid(str(error)) from error
        if randomness is not None and randomness != beacon_randomness(signature):
            raise BeaconInvalid(f"round {beacon_round}'s randomness is not SHA-256(signature)")
        return BeaconRound(chain_hash=self._chain_hash, round=beacon_round, signature=signature)

    async def _get(self, path: str, *, what: str) -> dict[str, Any]:
        try:
            response = await self._client.get(path)
        except httpx.TimeoutException as error:
            raise BeaconUnavailable(f"drand {what}: timed out") from error
        except httpx.HTTPError as error:
            raise BeaconUnavailable(f"drand {what}: {type(error).__name__}: {error}") from error
        if response.status_code in _NOT_YET_STATUSES and what == "round":
            raise RoundNotYetAvailable(f"drand {what} {path}: HTTP {response.status_code}")
        if response.status_code != httpx.codes.OK:
            raise BeaconUnavailable(f"drand {what} {path}: HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as error:
            raise BeaconInvalid(f"drand {what}: the body is not JSON") from error
        if not isinstance(body, dict):
            raise BeaconInvalid(f"drand {what}: the body is not a JSON object")
        return body


def _str(body: dict[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} is not a string")
    return value


def _int(body: dict[str, Any], key: str) -> int:
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key} is not an integer")
    return value


def _hex(body: dict[str, Any], key: str) -> bytes:
    return bytes.fromhex(_str(body, key))
