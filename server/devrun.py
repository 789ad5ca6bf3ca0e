"""`make run`: migrate, seed, then run the server and Envoy until Ctrl-C.

Expects AMESA_DATABASE_URL and AMESA_REDIS_URL (scripts/services.sh sets them); generates a
development JWT signing key under .data/ on first use.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from server.manage import ROOT, migrate, write_dev_key
from server.seed import seed

GRPC_ADDRESS = "127.0.0.1:50051"
ENVOY_ADDRESS = "127.0.0.1:8080"
METRICS_ADDRESS = "127.0.0.1:9464"
DEV_KEY = ROOT / ".data" / "jwt-ed25519.pem"
DEV_TRANSPARENCY_KEY = ROOT / ".data" / "transparency-ed25519.pem"
DEV_BEACON_CHAIN = ROOT / ".data" / "drand-dev.json"
BEACON_PORT = 8081
_BEACON_VARIABLES = 5  # the NAME=value lines `python -m server.devbeacon` prints


def _say(message: str) -> None:
    sys.stderr.write(f"amesa: {message}\n")


def _wait_for_port(address: str, process: subprocess.Popen[bytes], seconds: float) -> bool:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex((host, int(port))) == 0:
                return True
        time.sleep(0.1)
    return False


def _start_beacon() -> tuple[subprocess.Popen[str], dict[str, str]]:
    """The local drand beacon (server/devbeacon.py) and the variables that point the server at
    it; its chain is kept under .data/, so manifests signed earlier still verify."""
    beacon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server.devbeacon",
            "--port",
            str(BEACON_PORT),
            "--key-file",
            str(DEV_BEACON_CHAIN),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert beacon.stdout is not None
    variables: dict[str, str] = {}
    while len(variables) < _BEACON_VARIABLES:
        line = beacon.stdout.readline()
        if not line:
            _say("the local drand beacon did not start")
            sys.exit(1)
        name, equals, value = line.strip().partition("=")
        if equals and name.startswith("AMESA_"):
            variables[name] = value
    return beacon, variables


def main() -> None:
    url = os.environ.get("AMESA_DATABASE_URL")
    if not url or not os.environ.get("AMESA_REDIS_URL"):
        _say("AMESA_DATABASE_URL and AMESA_REDIS_URL are required (run through `make run`)")
        sys.exit(2)
    _say("applying migrations")
    migrate(url)
    for key in (DEV_KEY, DEV_TRANSPARENCY_KEY):
        if write_dev_key(key):
            _say(f"wrote a development signing key to {key}")
    beacon, beacon_env = (None, {}) if os.environ.get("AMESA_DRAND_URL") else _start_beacon()
    os.environ.setdefault("AMESA_TRANSPARENCY_KEY_FILE", str(DEV_TRANSPARENCY_KEY))
    os.environ.update(beacon_env)
    _say("loading demo data")
    credentials = asyncio.run(seed(url))
    env = {
        **os.environ,
        "AMESA_GRPC_ADDRESS": GRPC_ADDRESS,
        "AMESA_METRICS_ADDRESS": METRICS_ADDRESS,
        "AMESA_JWT_PRIVATE_KEY_FILE": os.environ.get("AMESA_JWT_PRIVATE_KEY_FILE", str(DEV_KEY)),
        "AMESA_TRANSPARENCY_KEY_FILE": os.environ.get(
            "AMESA_TRANSPARENCY_KEY_FILE", str(DEV_TRANSPARENCY_KEY)
        ),
    }
    bin_dir = Path(sys.executable).parent
    server = subprocess.Popen([sys.executable, "-m", "server"], env=env, cwd=ROOT)
    if not _wait_for_port(GRPC_ADDRESS, server, 30):
        server.terminate()
        if beacon is not None:
            beacon.terminate()
        _say("the server did not start; see the log above")
        sys.exit(1)
    envoy = subprocess.Popen(
        [str(bin_dir / "envoy"), "-c", "envoy/envoy.yaml", "--log-level", "warn"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    if not _wait_for_port(ENVOY_ADDRESS, envoy, 30):
        _say("Envoy did not start; gRPC still answers on " + GRPC_ADDRESS)
    sys.stdout.write(
        "\nAmesa is running:\n"
        f"  gRPC     {GRPC_ADDRESS}   grpcurl -plaintext {GRPC_ADDRESS} list\n"
        f"  Envoy    http://{ENVOY_ADDRESS}   curl http://{ENVOY_ADDRESS}/v1/languages\n"
        f"  metrics  http://{METRICS_ADDRESS}/metrics\n"
        f"  drand    {os.environ['AMESA_DRAND_URL']}   (the beacon draws use)\n"
        + "".join(f"  {c}\n" for c in credentials)
        + "Ctrl-C stops everything.\n"
    )
    sys.stdout.flush()
    stop = {"now": False}

    def on_signal(_signum: int, _frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop["now"] and server.poll() is None:
        time.sleep(0.2)
    processes = [envoy, server] + ([beacon] if beacon is not None else [])
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    if os.environ.get("AMESA_LOCAL_SERVICES_STARTED") == "1":
        # scripts/services.sh started PostgreSQL and Redis for this run: stop them too.
        subprocess.run([str(ROOT / "scripts" / "services.sh"), "stop"], check=False)
    _say("stopped")


if __name__ == "__main__":
    main()
