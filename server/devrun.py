"""`make run`: migrate, seed, then run the server and Envoy until Ctrl-C.

Expects AMESA_DATABASE_URL and AMESA_REDIS_URL (scripts/services.sh sets them); generates a
development JWT signing key under .data/ on first use.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from server.manage import ROOT, migrate, write_dev_key
from server.seed import seed

GRPC_ADDRESS = "127.0.0.1:50051"
ENVOY_ADDRESS = "127.0.0.1:8080"
METRICS_ADDRESS = "127.0.0.1:9464"
DEV_KEY = ROOT / ".data" / "jwt-ed25519.pem"
DEV_TRANSPARENCY_KEY = ROOT / ".data" / "transparency-ed25519.pem"
DEV_BEACON_CHAIN = ROOT / ".data" / "drand-dev.json"
BEACON_PORT = 8081
LOCALSTRIPE_PORT = 8420
DEV_WEBHOOK_SECRET = "whsec_amesa_local_development"  # noqa: S105 - localstripe only
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


def _start_localstripe() -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """localstripe (a Stripe stand-in, GPL-3.0: run as its own process, never imported), with
    its webhooks delivered to our StripeWebhook through Envoy, signed with a development
    secret — so saved cards, Stripe.js confirmations and refunds work locally."""
    log = (ROOT / ".data" / "localstripe.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "localstripe", "--port", str(LOCALSTRIPE_PORT), "--from-scratch"],
        cwd=ROOT / ".data",
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{LOCALSTRIPE_PORT}"
    if not _wait_for_port(f"127.0.0.1:{LOCALSTRIPE_PORT}", process, 30):
        _say("localstripe did not start; see .data/localstripe.log")
        sys.exit(1)
    hook = urllib.request.Request(  # noqa: S310 - a fixed local URL
        f"{base_url}/_config/webhooks/amesa",
        data=json.dumps(
            {"url": f"http://{ENVOY_ADDRESS}/v1/webhooks/stripe", "secret": DEV_WEBHOOK_SECRET}
        ).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(hook, timeout=10):  # noqa: S310
        pass
    return process, {
        "AMESA_STRIPE_SECRET_KEY": "sk_test_amesa_local",
        "AMESA_STRIPE_PUBLISHABLE_KEY": "pk_test_amesa_local",
        "AMESA_STRIPE_API_BASE": base_url,
        "AMESA_STRIPE_LOCALSTRIPE": "1",
        "AMESA_STRIPE_WEBHOOK_SECRET": DEV_WEBHOOK_SECRET,
    }


def _start_stand_ins() -> list[subprocess.Popen[Any]]:
    """Local stand-ins for the external services not configured (the drand beacon, Stripe);
    their settings go into this process's environment for the seed and the server."""
    processes: list[subprocess.Popen[Any]] = []
    if not os.environ.get("AMESA_DRAND_URL"):
        beacon, env = _start_beacon()
        processes.append(beacon)
        os.environ.update(env)
    if not os.environ.get("AMESA_STRIPE_SECRET_KEY"):
        stripe, env = _start_localstripe()
        processes.append(stripe)
        os.environ.update(env)
    return processes


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
    os.environ.setdefault("AMESA_TRANSPARENCY_KEY_FILE", str(DEV_TRANSPARENCY_KEY))
    stand_ins = _start_stand_ins()
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
        for process in (server, *stand_ins):
            process.terminate()
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
        f"  Stripe   {os.environ.get('AMESA_STRIPE_API_BASE', 'api.stripe.com')}\n"
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
    processes = [envoy, server, *stand_ins]
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
