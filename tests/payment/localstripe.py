"""localstripe (a stateful Stripe stand-in, GPL-3.0) as a separate process for the Stripe tests.

It is only ever run as a program (`python -m localstripe`), never imported. The fixtures:
`localstripe` (session: the process on a free 127.0.0.1 port, killed at the end) and
`make_stripe_gateway` (gateways pointed at it, closed after the test). Test modules import them.

localstripe listens on every interface (`::`) and rewrites /tmp/localstripe.pickle after each
change; `--from-scratch` keeps it from loading objects another run left there.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import pytest_asyncio

from server.payment.providers.stripe_gateway import StripeGateway
from tests.support import free_port

# localstripe accepts any key that starts with "sk_"; a recognisable one helps reading its log.
API_KEY = "sk_test_amesa_localstripe"
START_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class LocalStripe:
    base_url: str
    api_key: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def register_webhook(
        self, webhook_id: str, url: str, secret: str, events: list[str] | None = None
    ) -> None:
        """localstripe's own configuration API: POST every event (of `events`) to `url`,
        signed with `secret` like Stripe does."""
        body: dict[str, Any] = {"url": url, "secret": secret}
        if events is not None:
            body["events"] = events
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{self.base_url}/_config/webhooks/{webhook_id}", json=body
            )
        response.raise_for_status()

    async def request(
        self, method: str, path: str, data: dict[str, str] | None = None
    ) -> httpx.Response:
        """A raw call, bypassing the gateway: to see what localstripe stored, or to do what
        Stripe.js would do in the browser."""
        async with httpx.AsyncClient(auth=(self.api_key, "")) as client:
            return await client.request(method, f"{self.base_url}{path}", data=data)

    async def get(self, path: str) -> dict[str, Any]:
        response = await self.request("GET", path)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


def _answers(base_url: str) -> bool:
    try:
        response = httpx.get(f"{base_url}/v1/balance", auth=(API_KEY, ""), timeout=1.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def _start(workdir: Path, log: IO[bytes]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return process, base_url


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _wait_until_up(process: subprocess.Popen[bytes], base_url: str, deadline: float) -> bool:
    while time.monotonic() < deadline and process.poll() is None:
        if _answers(base_url):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="session", name="localstripe")
def localstripe_fixture() -> Iterator[LocalStripe]:
    with tempfile.TemporaryDirectory(prefix="localstripe-") as directory:
        workdir = Path(directory)
        log_path = workdir / "localstripe.log"
        with log_path.open("wb") as log:
            deadline = time.monotonic() + START_TIMEOUT_S
            running: tuple[subprocess.Popen[bytes], str] | None = None
            # A port taken between choosing and binding it makes the process exit: try again.
            while running is None and time.monotonic() < deadline:
                process, base_url = _start(workdir, log)
                if _wait_until_up(process, base_url, deadline):
                    running = process, base_url
                else:
                    _stop(process)
            if running is None:
                pytest.fail(
                    f"localstripe did not start within {START_TIMEOUT_S:.0f} s; its output:\n"
                    + log_path.read_text(errors="replace")
                )
            process, base_url = running
            try:
                yield LocalStripe(base_url=base_url, api_key=API_KEY, log_path=log_path)
            finally:
                _stop(process)


GatewayFactory = Callable[..., StripeGateway]


@pytest_asyncio.fixture(loop_scope="session", name="make_stripe_gateway")
async def make_stripe_gateway_fixture(
    localstripe: LocalStripe,
) -> AsyncIterator[GatewayFactory]:
    """`make_stripe_gateway(**overrides)`: a gateway on localstripe (no retries, so a failure
    shows at once), closed after the test."""
    gateways: list[StripeGateway] = []

    def make(**overrides: Any) -> StripeGateway:
        arguments: dict[str, Any] = {
            "api_key": localstripe.api_key,
            "base_url": localstripe.base_url,
            "timeout_s": 10.0,
            "max_network_retries": 0,
            "localstripe_compatible": True,
        }
        arguments.update(overrides)
        gateway = StripeGateway(**arguments)
        gateways.append(gateway)
        return gateway

    yield make
    for gateway in gateways:
        with contextlib.suppress(Exception):
            await gateway.aclose()


@pytest_asyncio.fixture(loop_scope="session", name="stripe_gateway")
async def stripe_gateway_fixture(make_stripe_gateway: GatewayFactory) -> StripeGateway:
    return make_stripe_gateway()
