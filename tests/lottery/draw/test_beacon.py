"""drand quicknet verification against real published rounds, and the HTTP beacon client
against a drand-format stand-in (httpx's MockTransport serving recorded rounds)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from amesa_sdk.verify import VerificationFailed, verify_beacon_signature

from server.lottery.draw import beacon
from tests.lottery.draw.conftest import (
    QUICKNET_CHAIN_HASH,
    QUICKNET_GENESIS_S,
    QUICKNET_PERIOD_S,
    QUICKNET_PUBLIC_KEY,
    QUICKNET_ROUNDS,
)

PUBLIC_KEY = bytes.fromhex(QUICKNET_PUBLIC_KEY)
BASE_URL = "http://drand.test"


def _flip_byte(data: bytes, position: int = 10) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


@pytest.mark.parametrize("beacon_round", [2, 3])
def test_real_quicknet_round_verifies_and_yields_its_randomness(beacon_round: int) -> None:
    signature, randomness = QUICKNET_ROUNDS[beacon_round]
    assert (
        verify_beacon_signature(
            beacon_round=beacon_round, signature=bytes.fromhex(signature), public_key=PUBLIC_KEY
        ).hex()
        == randomness
    )


def test_quicknet_signature_with_a_flipped_byte_fails() -> None:
    signature = _flip_byte(bytes.fromhex(QUICKNET_ROUNDS[2][0]))
    with pytest.raises(VerificationFailed, match="round 2"):
        verify_beacon_signature(beacon_round=2, signature=signature, public_key=PUBLIC_KEY)


def test_quicknet_signature_of_another_round_fails() -> None:
    with pytest.raises(VerificationFailed, match="round 3"):
        verify_beacon_signature(
            beacon_round=3, signature=bytes.fromhex(QUICKNET_ROUNDS[2][0]), public_key=PUBLIC_KEY
        )


def test_quicknet_signature_under_a_flipped_public_key_fails() -> None:
    with pytest.raises(VerificationFailed):
        verify_beacon_signature(
            beacon_round=2,
            signature=bytes.fromhex(QUICKNET_ROUNDS[2][0]),
            public_key=_flip_byte(PUBLIC_KEY, 50),
        )


Handler = Callable[[httpx.Request], httpx.Response]


def _info(**overrides: object) -> dict[str, object]:
    return {
        "public_key": QUICKNET_PUBLIC_KEY,
        "period": QUICKNET_PERIOD_S,
        "genesis_time": QUICKNET_GENESIS_S,
        "hash": QUICKNET_CHAIN_HASH,
        "groupHash": "f477d5c89f21a17c863a7f937c6a6d15859414d2be09cd448d4279af331c5d3e",
        "schemeID": "bls-unchained-g1-rfc9380",
        "metadata": {"beaconID": "quicknet"},
        **overrides,
    }


def _drand(
    *, info: dict[str, object] | None = None, rounds: dict[int, dict[str, object]] | None = None
) -> Handler:
    """A drand HTTP API serving one chain's info and the given rounds (404 for the others)."""
    served = rounds or {
        number: {"round": number, "signature": signature, "randomness": randomness}
        for number, (signature, randomness) in QUICKNET_ROUNDS.items()
    }

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == f"/{QUICKNET_CHAIN_HASH}/info":
            return httpx.Response(200, json=info or _info())
        prefix = f"/{QUICKNET_CHAIN_HASH}/public/"
        if path.startswith(prefix) and int(path[len(prefix) :]) in served:
            return httpx.Response(200, json=served[int(path[len(prefix) :])])
        return httpx.Response(404, text="not found")

    return handle


def _client(handler: Handler) -> beacon.BeaconClient:
    return beacon.BeaconClient(
        BASE_URL, chain_hash=QUICKNET_CHAIN_HASH, transport=httpx.MockTransport(handler)
    )


async def test_info_returns_the_chain_parameters() -> None:
    async with _client(_drand()) as client:
        info = await client.info()
    assert info == beacon.ChainInfo(
        chain_hash=QUICKNET_CHAIN_HASH,
        public_key=PUBLIC_KEY,
        period_s=QUICKNET_PERIOD_S,
        genesis_time_s=QUICKNET_GENESIS_S,
        scheme="bls-unchained-g1-rfc9380",
    )


async def test_info_of_another_chain_is_invalid() -> None:
    async with _client(_drand(info=_info(hash="00" * 32))) as client:
        with pytest.raises(beacon.BeaconInvalid, match="not the configured one"):
            await client.info()


async def test_info_with_another_scheme_is_invalid() -> None:
    async with _client(_drand(info=_info(schemeID="pedersen-bls-chained"))) as client:
        with pytest.raises(beacon.BeaconInvalid, match="scheme"):
            await client.info()


async def test_fetch_round_verifies_and_returns_the_round() -> None:
    async with _client(_drand()) as client:
        fetched = await client.fetch_round(3, public_key=PUBLIC_KEY)
    assert fetched.round == 3
    assert fetched.signature.hex() == QUICKNET_ROUNDS[3][0]
    assert fetched.randomness.hex() == QUICKNET_ROUNDS[3][1]


async def test_round_not_produced_yet_is_round_not_yet_available() -> None:
    async with _client(_drand()) as client:
        with pytest.raises(beacon.RoundNotYetAvailable, match="404"):
            await client.fetch_round(99, public_key=PUBLIC_KEY)


async def test_round_with_a_forged_signature_is_invalid() -> None:
    signature = _flip_byte(bytes.fromhex(QUICKNET_ROUNDS[2][0])).hex()
    rounds: dict[int, dict[str, object]] = {2: {"round": 2, "signature": signature}}
    async with _client(_drand(rounds=rounds)) as client:
        with pytest.raises(beacon.BeaconInvalid, match="round 2"):
            await client.fetch_round(2, public_key=PUBLIC_KEY)


async def test_round_answered_with_another_round_is_invalid() -> None:
    signature, randomness = QUICKNET_ROUNDS[3]
    rounds: dict[int, dict[str, object]] = {
        2: {"round": 3, "signature": signature, "randomness": randomness}
    }
    async with _client(_drand(rounds=rounds)) as client:
        with pytest.raises(beacon.BeaconInvalid, match="got round 3"):
            await client.fetch_round(2, public_key=PUBLIC_KEY)


async def test_round_whose_randomness_is_not_the_signature_hash_is_invalid() -> None:
    signature, _ = QUICKNET_ROUNDS[2]
    rounds: dict[int, dict[str, object]] = {
        2: {"round": 2, "signature": signature, "randomness": "00" * 32}
    }
    async with _client(_drand(rounds=rounds)) as client:
        with pytest.raises(beacon.BeaconInvalid, match="randomness"):
            await client.fetch_round(2, public_key=PUBLIC_KEY)


async def test_round_verified_against_another_key_is_invalid() -> None:
    async with _client(_drand()) as client:
        with pytest.raises(beacon.BeaconInvalid):
            await client.fetch_round(2, public_key=_flip_byte(PUBLIC_KEY, 50))


async def test_server_error_is_beacon_unavailable() -> None:
    async with _client(lambda request: httpx.Response(503)) as client:
        with pytest.raises(beacon.BeaconUnavailable, match="503"):
            await client.fetch_round(2, public_key=PUBLIC_KEY)


async def test_timeout_is_beacon_unavailable() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    async with _client(timeout) as client:
        with pytest.raises(beacon.BeaconUnavailable, match="timed out"):
            await client.info()


async def test_connection_refused_is_beacon_unavailable() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with _client(refused) as client:
        with pytest.raises(beacon.BeaconUnavailable, match="ConnectError"):
            await client.fetch_round(2, public_key=PUBLIC_KEY)


async def test_body_that_is_not_json_is_invalid() -> None:
    async with _client(lambda request: httpx.Response(200, text="<html>")) as client:
        with pytest.raises(beacon.BeaconInvalid, match="not JSON"):
            await client.fetch_round(2, public_key=PUBLIC_KEY)


async def test_round_missing_its_signature_is_invalid() -> None:
    body = json.loads(json.dumps({"round": 2}))
    async with _client(lambda request: httpx.Response(200, json=body)) as client:
        with pytest.raises(beacon.BeaconInvalid, match="malformed round 2"):
            await client.fetch_round(2, public_key=PUBLIC_KEY)
