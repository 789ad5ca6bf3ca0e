"""The local drand stand-in (server/devbeacon.py) against the server's real BeaconClient over
HTTP, its rounds checked with drand-verify, its key file, and its command-line entry point."""

from __future__ import annotations

import json
import os
import select
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import drand_verify  # type: ignore[import-untyped]
import httpx
import pytest

from server.devbeacon import LATEST, ROUND, SCHEME, LocalBeacon, env_for
from server.lottery.draw import beacon as drand

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module", name="local_beacon")
def local_beacon_fixture() -> Iterator[LocalBeacon]:
    # Period 1 s, genesis 5 s ago: rounds 1..5 exist, no test waits for one.
    with LocalBeacon(period_s=1, genesis_time_s=int(time.time()) - 5) as local:
        yield local


@pytest.fixture(name="client")
def client_fixture(local_beacon: LocalBeacon) -> drand.BeaconClient:
    return drand.BeaconClient(local_beacon.base_url, chain_hash=local_beacon.chain_hash)


async def test_client_accepts_the_stand_ins_chain_info(
    local_beacon: LocalBeacon, client: drand.BeaconClient
) -> None:
    async with client:
        info = await client.info()
    assert info == drand.ChainInfo(
        chain_hash=local_beacon.chain_hash,
        public_key=local_beacon.public_key,
        period_s=1,
        genesis_time_s=local_beacon.genesis_time_s,
        scheme=SCHEME,
    )


async def test_past_round_verifies_with_drand_verify_and_its_randomness_matches(
    local_beacon: LocalBeacon, client: drand.BeaconClient
) -> None:
    async with client:
        fetched = await client.fetch_round(3, public_key=local_beacon.public_key)
    assert fetched.round == 3
    assert fetched.signature == local_beacon.signature(3)
    randomness = drand_verify.verify_bls_unchained_g1_rfc9380(
        3, fetched.signature.hex(), local_beacon.public_key.hex()
    )
    assert randomness == fetched.randomness.hex()


async def test_future_round_is_not_yet_available(
    local_beacon: LocalBeacon, client: drand.BeaconClient
) -> None:
    future = local_beacon.round_at(time.time_ns() // 1_000_000) + 5
    async with client:
        with pytest.raises(drand.RoundNotYetAvailable, match="HTTP 425"):
            await client.fetch_round(future, public_key=local_beacon.public_key)


async def test_unavailable_beacon_is_beacon_unavailable(
    local_beacon: LocalBeacon, client: drand.BeaconClient
) -> None:
    local_beacon.unavailable = True
    try:
        async with client:
            with pytest.raises(drand.BeaconUnavailable, match="HTTP 503") as raised:
                await client.fetch_round(2, public_key=local_beacon.public_key)
            with pytest.raises(drand.BeaconUnavailable, match="HTTP 503"):
                await client.info()
    finally:
        local_beacon.unavailable = False
    assert not isinstance(raised.value, drand.RoundNotYetAvailable)


async def test_invalid_round_is_beacon_invalid(
    local_beacon: LocalBeacon, client: drand.BeaconClient
) -> None:
    local_beacon.invalid_rounds.add(4)
    try:
        async with client:
            with pytest.raises(drand.BeaconInvalid, match="round 4"):
                await client.fetch_round(4, public_key=local_beacon.public_key)
            # The neighbouring rounds stay good.
            assert (await client.fetch_round(2, public_key=local_beacon.public_key)).round == 2
    finally:
        local_beacon.invalid_rounds.discard(4)


async def test_round_under_another_chains_key_is_beacon_invalid(
    local_beacon: LocalBeacon, client: drand.BeaconClient
) -> None:
    other = LocalBeacon(period_s=1, genesis_time_s=local_beacon.genesis_time_s)
    async with client:
        with pytest.raises(drand.BeaconInvalid):
            await client.fetch_round(2, public_key=other.public_key)


async def test_client_for_another_chain_hash_gets_no_info(local_beacon: LocalBeacon) -> None:
    other = LocalBeacon(seed=b"other chain", period_s=1)
    async with drand.BeaconClient(local_beacon.base_url, chain_hash=other.chain_hash) as client:
        with pytest.raises(drand.BeaconUnavailable, match="HTTP 404"):
            await client.info()


def test_http_statuses_follow_drand(local_beacon: LocalBeacon) -> None:
    prefix = f"/{local_beacon.chain_hash}"
    before = local_beacon.requests.copy()
    with httpx.Client(base_url=local_beacon.base_url) as http:
        latest = http.get(f"{prefix}/public/latest")
        statuses = {
            path: http.get(f"{prefix}{path}").status_code
            for path in ("/public/0", "/public/abc", "/public/-1", "/public/99999999", "/nope")
        }
    assert latest.status_code == 200
    assert latest.headers["content-type"] == "application/json"
    body = latest.json()
    assert body["round"] >= 5
    assert body["signature"] == local_beacon.signature(body["round"]).hex()
    assert statuses == {
        "/public/0": 404,
        "/public/abc": 404,
        "/public/-1": 404,
        "/public/99999999": 425,
        "/nope": 404,
    }
    assert local_beacon.requests[LATEST] == before[LATEST] + 1
    assert local_beacon.requests[ROUND] == before[ROUND] + 4


def test_round_times_follow_genesis_and_period() -> None:
    local = LocalBeacon(seed=b"times", period_s=3, genesis_time_s=1_000)
    assert local.round_time_ms(1) == 1_000_000
    assert local.round_time_ms(4) == 1_009_000
    assert local.round_at(999_999) == 0
    assert local.round_at(1_000_000) == 1
    assert local.round_at(1_008_999) == 3
    assert local.round_at(1_009_000) == 4


def test_a_round_is_served_only_once_its_time_has_come() -> None:
    now_ms = 1_000_000

    def clock() -> int:
        return now_ms

    local = LocalBeacon(seed=b"clock", period_s=3, genesis_time_s=1_000, clock_ms=clock)
    path = f"/{local.chain_hash}/public/2"
    assert local.respond(path)[0] == 425
    now_ms = local.round_time_ms(2)
    assert local.respond(path)[0] == 200


def test_env_for_names_the_chain(local_beacon: LocalBeacon) -> None:
    assert env_for(local_beacon) == {
        "AMESA_DRAND_URL": local_beacon.base_url,
        "AMESA_DRAND_CHAIN_HASH": local_beacon.chain_hash,
        "AMESA_DRAND_PUBLIC_KEY": local_beacon.public_key.hex(),
        "AMESA_DRAND_PERIOD_SECONDS": "1",
        "AMESA_DRAND_GENESIS_TIME": str(local_beacon.genesis_time_s),
    }


def test_different_keys_give_different_chain_hashes() -> None:
    first, second = LocalBeacon(genesis_time_s=1_000), LocalBeacon(genesis_time_s=1_000)
    assert first.public_key != second.public_key
    assert first.chain_hash != second.chain_hash
    same_seed = LocalBeacon(seed=b"seed", genesis_time_s=1_000)
    assert same_seed.chain_hash == LocalBeacon(seed=b"seed", genesis_time_s=1_000).chain_hash
    assert same_seed.chain_hash != LocalBeacon(seed=b"seed", genesis_time_s=1_001).chain_hash
    assert (
        same_seed.chain_hash
        != LocalBeacon(seed=b"seed", period_s=2, genesis_time_s=1_000).chain_hash
    )


def test_key_file_round_trips_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "drand-dev.json"
    created = LocalBeacon.from_key_file(path, period_s=2, genesis_time_s=1_000)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert set(json.loads(path.read_text())) >= {"secret_key", "period", "genesis_time"}
    # An existing file wins over the arguments, so a restart is the same chain.
    reloaded = LocalBeacon.from_key_file(path, period_s=3, genesis_time_s=5_000)
    assert reloaded.chain_hash == created.chain_hash
    assert reloaded.public_key == created.public_key
    assert (reloaded.period_s, reloaded.genesis_time_s) == (2, 1_000)
    assert reloaded.signature(7) == created.signature(7)


def test_a_malformed_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"secret_key": "00", "period": 3, "genesis_time": 1_000}))
    with pytest.raises(ValueError, match="secret key"):
        LocalBeacon.from_key_file(path)


def _start_cli(key_file: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "server.devbeacon", "--port", "0", "--key-file", str(key_file)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 15)
    if not ready:
        process.kill()
        process.wait()
        pytest.fail("the devbeacon did not print its address within 15 s")
    line = process.stdout.readline()
    return process, line


def _stop_cli(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_cli_serves_info_and_stops_on_sigterm(tmp_path: Path) -> None:
    key_file = tmp_path / "drand-dev.json"
    process, line = _start_cli(key_file)
    try:
        words = line.split()
        chain_hash, base_url = words[-3], words[-1]
        response = httpx.get(f"{base_url}/{chain_hash}/info", timeout=5)
        assert response.status_code == 200
        assert response.json()["hash"] == chain_hash
        assert response.json()["schemeID"] == SCHEME
    finally:
        returncode = _stop_cli(process)
    assert returncode == 0
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    restarted, line = _start_cli(key_file)
    assert _stop_cli(restarted) == 0
    assert line.split()[-3] == chain_hash
