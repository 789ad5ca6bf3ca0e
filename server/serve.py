"""Serving a built server until SIGINT/SIGTERM, in one process or in N worker processes.

With AMESA_WORKERS=N > 1 the parent starts N worker processes that share the gRPC port
(SO_REUSEPORT) and serves their combined metrics itself (prometheus multiprocess mode). The
worker entry point lives in this importable module because spawned processes re-import it by
name (`python -m server` runs as `__main__`, which they cannot import).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
import tempfile

# prometheus_client reads PROMETHEUS_MULTIPROC_DIR when first imported; workers are spawned
# (fresh interpreters) after the parent has set it, so importing it here is safe.
from prometheus_client import CollectorRegistry, multiprocess, start_http_server

from server.app import build_server
from server.core.logging import configure_logging
from server.core.settings import Settings

log = logging.getLogger("amesa.serve")


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve(settings: Settings, *, serve_metrics: bool) -> None:
    app = build_server(settings)
    if serve_metrics and settings.metrics_address:
        host, port = _split_address(settings.metrics_address)
        start_http_server(port, addr=host, registry=app.metrics.registry)
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    log.info("amesa server ready on %s", settings.grpc_address)
    await stop.wait()
    log.info("shutting down: draining for up to %.0f s", settings.shutdown_grace_seconds)
    await app.stop()


def run_worker(settings: Settings) -> None:
    configure_logging(settings.log_level)
    asyncio.run(serve(settings, serve_metrics=False))


def run_workers(settings: Settings) -> None:
    # Set before any worker imports prometheus_client, so every worker writes its samples here.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="amesa-metrics-")
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=run_worker, args=(settings,), name=f"amesa-worker-{i}")
        for i in range(settings.workers)
    ]
    for worker in workers:
        worker.start()

    def forward(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    if settings.metrics_address:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        host, port = _split_address(settings.metrics_address)
        start_http_server(port, addr=host, registry=registry)
    for worker in workers:
        worker.join()
    failed = [w.name for w in workers if w.exitcode not in (0, -signal.SIGINT, -signal.SIGTERM)]
    if failed:
        log.error("workers exited with errors: %s", ", ".join(failed))
        sys.exit(1)
