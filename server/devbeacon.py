"""A local drand-format HTTP beacon for tests and `make run`: its own chain, its own BLS key.

    with LocalBeacon(period_s=1, genesis_time_s=int(time.time()) - 5) as beacon:
        settings_env = env_for(beacon)          # AMESA_DRAND_URL, _CHAIN_HASH, _PUBLIC_KEY, ...
        ...                                     # BeaconClient(beacon.base_url, chain_hash=...)

    python -m server.devbeacon --host 127.0.0.1 --port 8081 --key-file .data/drand-dev.json

It speaks the subset of drand's HTTP API that `server.lottery.draw.beacon.BeaconClient` uses:
`GET /{chain_hash}/info`, `GET /{chain_hash}/public/{round}` and `GET /{chain_hash}/public/latest`,
with quicknet's scheme (`bls-unchained-g1-rfc9380`): round R's signature is a BLS signature on
G1 over SHA-256(u64_be(R)), so a real drand verifier (drand-verify) accepts its rounds under the
chain's public key. Signing uses py_ecc (pure Python, about 4 ms a round; signatures are cached).

The chain hash is NOT computed the way drand computes it (drand hashes its group file): it is the
lowercase hex SHA-256 of

    b"amesa-devbeacon/chain/v1" || u16_be(len(scheme)) || scheme (ASCII)
    || public key (96 bytes, compressed G2) || u64_be(period_s) || u64_be(genesis_time_s)

so it names this local chain uniquely and changes with any of its parameters.

A round is served once its time has come (genesis + (R - 1) * period <= now); a later round gets
HTTP 425 with a JSON error body, round 0 or a malformed round 404. Tests steer the beacon through
`unavailable` (every request answers 503) and `invalid_rounds` (those rounds carry another
round's signature), and read `requests` (a count per path kind).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import signal
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from py_ecc.bls.g2_primitives import G1_to_pubkey
from py_ecc.bls.hash_to_curve import hash_to_G1
from py_ecc.bls.point_compression import compress_G2
from py_ecc.optimized_bls12_381.optimized_curve import G2, curve_order, multiply

SCHEME: Final = "bls-unchained-g1-rfc9380"
DST: Final = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_"
DEFAULT_PERIOD_S: Final = 3
DEFAULT_GENESIS_AGE_S: Final = 10
DEFAULT_PORT: Final = 8081
BEACON_ID: Final = "amesa-dev"
_CHAIN_HASH_DOMAIN: Final = b"amesa-devbeacon/chain/v1"
_SEED_DOMAIN: Final = b"amesa-devbeacon/secret-key/v1"
_MAX_ROUND: Final = 2**64 - 1  # drand rounds are u64

# Path kinds counted in LocalBeacon.requests.
INFO: Final = "info"
ROUND: Final = "round"
LATEST: Final = "latest"
OTHER: Final = "other"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def secret_key_from_seed(seed: bytes) -> int:
    """A secret key in [1, curve order) derived from `seed`: the same seed, the same chain.
    SHA-512 leaves a bias of about 2^-257 after the reduction, far below anything that matters."""
    digest = hashlib.sha512(_SEED_DOMAIN + seed).digest()
    return int.from_bytes(digest, "big") % (curve_order - 1) + 1


def _check_secret_key(secret_key: int) -> int:
    if isinstance(secret_key, bool) or not isinstance(secret_key, int):
        raise TypeError("a BLS secret key is an integer")
    if not 1 <= secret_key < curve_order:
        raise ValueError("a BLS secret key lies in [1, curve order)")
    return secret_key


class LocalBeacon:
    """A drand quicknet-style chain of its own, served over HTTP on 127.0.0.1 by `start()`."""

    def __init__(
        self,
        *,
        secret_key: int | None = None,
        seed: bytes | None = None,
        period_s: int = DEFAULT_PERIOD_S,
        genesis_time_s: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        if secret_key is not None and seed is not None:
            raise ValueError("give a secret key or a seed, not both")
        if isinstance(period_s, bool) or not isinstance(period_s, int) or period_s <= 0:
            raise ValueError("the period is a positive number of seconds")
        if seed is not None:
            secret_key = secret_key_from_seed(seed)
        elif secret_key is None:
            secret_key = secrets.randbelow(curve_order - 1) + 1
        self._secret_key = _check_secret_key(secret_key)
        self._clock_ms = clock_ms
        if genesis_time_s is None:
            genesis_time_s = clock_ms() // 1000 - DEFAULT_GENESIS_AGE_S
        if genesis_time_s < 0:
            raise ValueError("the genesis time is a non-negative Unix time in seconds")
        self._period_s = period_s
        self._genesis_time_s = genesis_time_s
        x, y = compress_G2(multiply(G2, self._secret_key))
        self._public_key = x.to_bytes(48, "big") + y.to_bytes(48, "big")
        scheme = SCHEME.encode("ascii")
        self._chain_hash = hashlib.sha256(
            _CHAIN_HASH_DOMAIN
            + struct.pack(">H", len(scheme))
            + scheme
            + self._public_key
            + struct.pack(">QQ", period_s, genesis_time_s)
        ).hexdigest()
        self._host = host
        self._port = port
        self._signatures: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.unavailable = False
        self.invalid_rounds: set[int] = set()
        self.requests: Counter[str] = Counter()

    # -- key file -----------------------------------------------------------------------------

    @classmethod
    def from_key_file(
        cls,
        path: Path,
        *,
        period_s: int = DEFAULT_PERIOD_S,
        genesis_time_s: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> LocalBeacon:
        """The chain stored in `path` (JSON: secret_key hex, period, genesis_time), created with
        a fresh key and the given period and genesis on first use. An existing file wins over
        `period_s` and `genesis_time_s`, so a restarted beacon continues the same chain."""
        try:
            return cls._load_key_file(path, host=host, port=port)
        except FileNotFoundError:
            pass
        beacon = cls(period_s=period_s, genesis_time_s=genesis_time_s, host=host, port=port)
        try:
            beacon.write_key_file(path)
        except FileExistsError:
            # Another process created it first: its chain is the one to serve.
            return cls._load_key_file(path, host=host, port=port)
        return beacon

    @classmethod
    def _load_key_file(cls, path: Path, *, host: str, port: int) -> LocalBeacon:
        data = json.loads(path.read_text(encoding="utf-8"))
        try:
            secret_key = int(data["secret_key"], 16)
            period_s = data["period"]
            genesis_time_s = data["genesis_time"]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path} is not a devbeacon key file: {error}") from error
        if not isinstance(genesis_time_s, int) or isinstance(genesis_time_s, bool):
            raise ValueError(f"{path}: genesis_time is not an integer")
        return cls(
            secret_key=secret_key,
            period_s=period_s,
            genesis_time_s=genesis_time_s,
            host=host,
            port=port,
        )

    def write_key_file(self, path: Path) -> None:
        """Stores the chain in a new file readable by its owner only; refuses to overwrite."""
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(
            {
                "secret_key": f"{self._secret_key:064x}",
                "period": self._period_s,
                "genesis_time": self._genesis_time_s,
                "scheme": SCHEME,
            },
            indent=2,
        )
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(data + "\n")

    # -- the chain ----------------------------------------------------------------------------

    @property
    def chain_hash(self) -> str:
        return self._chain_hash

    @property
    def public_key(self) -> bytes:
        """96 bytes: the compressed G2 point drand publishes as `public_key`."""
        return self._public_key

    @property
    def period_s(self) -> int:
        return self._period_s

    @property
    def genesis_time_s(self) -> int:
        return self._genesis_time_s

    @property
    def scheme(self) -> str:
        return SCHEME

    def round_at(self, unix_ms: int) -> int:
        """The latest round produced at or before `unix_ms`; 0 before genesis."""
        elapsed_ms = unix_ms - self._genesis_time_s * 1000
        if elapsed_ms < 0:
            return 0
        return elapsed_ms // (self._period_s * 1000) + 1

    def round_time_ms(self, beacon_round: int) -> int:
        """When round R is produced: genesis + (R - 1) * period, in Unix milliseconds."""
        if beacon_round < 1:
            raise ValueError("drand rounds start at 1")
        return (self._genesis_time_s + (beacon_round - 1) * self._period_s) * 1000

    def current_round(self) -> int:
        return self.round_at(self._clock_ms())

    def signature(self, beacon_round: int) -> bytes:
        """Round R's 48-byte signature: BLS on G1 over SHA-256(u64_be(R))."""
        if not 1 <= beacon_round <= _MAX_ROUND:
            raise ValueError("drand rounds are in [1, 2^64)")
        with self._lock:
            cached = self._signatures.get(beacon_round)
        if cached is not None:
            return cached
        message = hashlib.sha256(beacon_round.to_bytes(8, "big")).digest()
        # py_ecc annotates the hash argument as a hash object but calls it as a constructor.
        point = hash_to_G1(message, DST, hashlib.sha256)  # type: ignore[arg-type]
        signature = bytes(G1_to_pubkey(multiply(point, self._secret_key)))
        with self._lock:
            self._signatures[beacon_round] = signature
        return signature

    def info_json(self) -> dict[str, Any]:
        """The chain info, shaped like drand's `/info`."""
        return {
            "public_key": self._public_key.hex(),
            "period": self._period_s,
            "genesis_time": self._genesis_time_s,
            "hash": self._chain_hash,
            "schemeID": SCHEME,
            "metadata": {"beaconID": BEACON_ID},
        }

    def round_json(self, beacon_round: int) -> dict[str, Any]:
        """Round R as drand serves it; a round in `invalid_rounds` carries the next round's
        signature (with matching randomness), so only the BLS check can catch it."""
        signed = beacon_round + 1 if beacon_round in self.invalid_rounds else beacon_round
        if signed > _MAX_ROUND:
            signed = beacon_round - 1
        signature = self.signature(signed)
        return {
            "round": beacon_round,
            "randomness": hashlib.sha256(signature).hexdigest(),
            "signature": signature.hex(),
        }

    def respond(self, path: str) -> tuple[HTTPStatus, dict[str, Any]]:
        """The status and JSON body for a GET of `path` (the query string is ignored)."""
        parts = path.split("?", 1)[0].split("/")
        kind = OTHER
        if len(parts) == 3 and parts[0] == "" and parts[2] == "info":
            kind = INFO
        elif len(parts) == 4 and parts[0] == "" and parts[2] == "public":
            kind = LATEST if parts[3] == "latest" else ROUND
        with self._lock:
            self.requests[kind] += 1
        if self.unavailable:
            return HTTPStatus.SERVICE_UNAVAILABLE, {"error": "beacon unavailable"}
        if kind == OTHER or parts[1] != self._chain_hash:
            return HTTPStatus.NOT_FOUND, {"error": "not found"}
        if kind == INFO:
            return HTTPStatus.OK, self.info_json()
        if kind == LATEST:
            current = self.current_round()
            if current < 1:
                return HTTPStatus.TOO_EARLY, {"error": "the chain has not started yet"}
            return HTTPStatus.OK, self.round_json(current)
        return self._respond_round(parts[3])

    def _respond_round(self, text: str) -> tuple[HTTPStatus, dict[str, Any]]:
        # drand answers a malformed or zero round 404 and a future one 425 (Too Early).
        beacon_round = int(text) if text.isascii() and text.isdigit() and len(text) <= 20 else 0
        if not 1 <= beacon_round <= _MAX_ROUND:
            return HTTPStatus.NOT_FOUND, {"error": f"invalid round {text!r}"}
        if beacon_round > self.current_round():
            return HTTPStatus.TOO_EARLY, {"error": f"round {beacon_round} is not yet available"}
        return HTTPStatus.OK, self.round_json(beacon_round)

    # -- serving ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the beacon is not serving: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> str:
        """Serves in a daemon thread; returns the base URL (a free port if the port was 0)."""
        if self._server is not None:
            return self.base_url
        server = ThreadingHTTPServer((self._host, self._port), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="devbeacon", daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> LocalBeacon:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _handler(beacon: LocalBeacon) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as httpx's pool expects of drand

        def do_GET(self) -> None:
            status, body = beacon.respond(self.path)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def env_for(beacon: LocalBeacon) -> dict[str, str]:
    """The server settings that point the draw at this (started) beacon's chain."""
    return {
        "AMESA_DRAND_URL": beacon.base_url,
        "AMESA_DRAND_CHAIN_HASH": beacon.chain_hash,
        "AMESA_DRAND_PUBLIC_KEY": beacon.public_key.hex(),
        "AMESA_DRAND_PERIOD_SECONDS": str(beacon.period_s),
        "AMESA_DRAND_GENESIS_TIME": str(beacon.genesis_time_s),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m server.devbeacon",
        description="Serve a local drand-format beacon (quicknet scheme, its own key).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument(
        "--key-file",
        type=Path,
        help="JSON chain file, created (mode 0600) on first use; without it the chain is new",
    )
    parser.add_argument(
        "--period", type=int, default=DEFAULT_PERIOD_S, help="seconds, for a new chain"
    )
    args = parser.parse_args(argv)
    if args.key_file is not None:
        beacon = LocalBeacon.from_key_file(
            args.key_file, period_s=args.period, host=args.host, port=args.port
        )
    else:
        beacon = LocalBeacon(period_s=args.period, host=args.host, port=args.port)

    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with beacon:
        sys.stdout.write(
            f"drand stand-in serving chain {beacon.chain_hash} at {beacon.base_url}\n"
            + "".join(f"{name}={value}\n" for name, value in env_for(beacon).items())
        )
        sys.stdout.flush()
        # A timed wait keeps the main thread returning to the interpreter, where handlers run.
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
