"""WatchHouse fan-out (SPEC §9: 10,000 concurrent streams; an event reaches all with p99 ≤ 1 s).

A production server (server.app.build_server, the full interceptor stack, a throwaway database
and the local Redis) runs in its own process. CLIENTS client processes open STREAMS WatchHouse
streams on one house between them, over CHANNELS_PER_CLIENT HTTP/2 connections each, and wait for
every stream's snapshot (which also proves its Redis subscription is live: the server subscribes
before it reads the snapshot). This process then publishes EVENTS sales-progress events with
`house_events.sales_progress`, as the purchase path does after commit, GAP_S apart. The latency of
one delivery is the receiving client's clock at `read()` minus the event's `event_time`, which the
publisher stamps just before PUBLISH (one machine, one clock). The line reports p50, p99 and
max over every (stream, event) pair, how many of them arrived, and p99 / the 1 s bar.

Everything shares this machine's two cores — server, clients, Redis, PostgreSQL — so the figures
include the clients' own time to read 10,000 messages, and an event's last delivery waits for
the server to write it to every stream; a deployment spreads clients over many machines. So the
line also gives the CPU the server and the clients spent per event (from /proc, between
publications), which tells whether a p99 over the bar is the server's fan-out or the bench's
own clients, whose garbage collector is frozen once their streams are open (see _client_main).
The opening of the streams (a snapshot each) is reported but not part of p99.
Heartbeats are set far beyond the run so only the published events are measured. The soft
open-files limit is raised to the hard limit in every process (each stream is an HTTP/2 stream,
not a socket, so this is headroom only).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import logging
import multiprocessing
import os
import resource
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
import grpc
from redis.asyncio import Redis

from amesa.lottery.v1 import lottery_service_pb2 as pb
from server.app import build_server
from server.core.events import EventBus
from server.core.logging import JsonFormatter, configure_logging
from server.core.settings import load_settings
from server.lottery import house_events
from server.lottery.models import House
from tests.databases import throwaway_database

STREAMS: Final = 10_000
CLIENTS: Final = 2
CHANNELS_PER_CLIENT: Final = 10
# Streams being opened at once per client: bounds the burst of snapshots the server answers.
OPENING: Final = 256
EVENTS: Final = 5
GAP_S: Final = 2.5
TARGET_S: Final = 1.0
TOTAL_TICKETS: Final = 100_000
METHOD: Final = "/amesa.lottery.v1.LotteryService/WatchHouse"
OPEN_TIMEOUT_S: Final = 120.0


def _raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _quiet_logging() -> None:
    # Stream ends are access-logged in production format, into /dev/null: the bench measures
    # the server, not a terminal.
    configure_logging("WARNING")
    handler = logging.FileHandler(os.devnull)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().handlers[:] = [handler]


# --- The server process --------------------------------------------------------------------------


def _serve(database_url: str, redis_url: str, ports: Any) -> None:
    _raise_open_files()
    _quiet_logging()
    settings = load_settings(
        {
            "AMESA_ENV": "test",
            "AMESA_DATABASE_URL": database_url,
            "AMESA_REDIS_URL": redis_url,
            "AMESA_LOG_LEVEL": "WARNING",
            "AMESA_NOTIFY_HEARTBEAT_SECONDS": "3600",
            # No background job may touch the house (or the network) during the run.
            "AMESA_LOTTERY_SCHEDULER_INTERVAL_SECONDS": "0",
            "AMESA_TREE_HEAD_INTERVAL_SECONDS": "0",
            "AMESA_PAYMENT_RECONCILE_INTERVAL_SECONDS": "0",
            "AMESA_SHUTDOWN_GRACE_SECONDS": "1",
        }
    )

    async def main() -> None:
        app = build_server(settings, address="127.0.0.1:0")
        await app.start()
        ports.put(app.port)
        try:
            await app.wait()
        finally:
            await app.stop(grace=1)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


# --- A client process ----------------------------------------------------------------------------


class _Client:
    """One client process's streams and what they received."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.opening = asyncio.Semaphore(OPENING)
        self.opened = self.failed = 0
        # Every stream got its snapshot or failed: time to report how many are open.
        self.all_settled = asyncio.Event()
        # (tickets_sold of the event, seconds from publish to arrival) per delivery.
        self.latencies: list[tuple[int, float]] = []

    async def watch(self, stream: Any, house: str) -> None:
        """One stream: the snapshot, then EVENTS sales-progress events, each timed on arrival."""
        call = None
        try:
            async with self.opening:
                call = stream(pb.WatchHouseRequest(name=house))
                first = await call.read()
            snapshot = first is not grpc.aio.EOF and first.WhichOneof("event") == "snapshot"
        except grpc.aio.AioRpcError:
            snapshot = False
        if snapshot:
            self.opened += 1
        else:
            self.failed += 1
        if self.opened + self.failed == self.count:
            self.all_settled.set()
        if call is None or not snapshot:
            return
        try:
            received = 0
            while received < EVENTS:
                message = await call.read()
                arrived = time.time()
                if message is grpc.aio.EOF:
                    return
                if message.WhichOneof("event") != "sales_progress":
                    continue
                sent = message.event_time.seconds + message.event_time.nanos / 1e9
                self.latencies.append((message.sales_progress.tickets_sold, arrived - sent))
                received += 1
        except grpc.aio.AioRpcError:
            return  # e.g. ABORTED WATCH_LAGGED: its missing deliveries show in the count
        finally:
            call.cancel()


@dataclass(frozen=True)
class _Plan:
    """What a client process is told (picklable: it crosses the spawn)."""

    port: int
    house: str
    count: int
    # multiprocessing queues and event: streams opened → ready; go ← start; latencies → results.
    ready: Any
    start: Any
    results: Any


async def _client_main(plan: _Plan) -> None:
    port, house, count = plan.port, plan.house, plan.count
    channels = [
        # A local subchannel pool gives each channel a connection of its own.
        grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        for _ in range(CHANNELS_PER_CLIENT)
    ]
    streams = [
        channel.unary_stream(
            METHOD,
            request_serializer=pb.WatchHouseRequest.SerializeToString,
            response_deserializer=pb.WatchHouseResponse.FromString,
        )
        for channel in channels
    ]
    client = _Client(count)
    tasks = [
        asyncio.create_task(client.watch(streams[index % len(streams)], house))
        for index in range(count)
    ]
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                await client.all_settled.wait()
        # The clients stand in for 10,000 devices, none of which would pause to scan 5,000 streams'
        # objects: without this, their full collections during a fan-out add up to 0.5 s to the
        # tail. The server is left as production runs it.
        gc.freeze()
        plan.ready.put(client.opened)
        await asyncio.to_thread(plan.start.wait, OPEN_TIMEOUT_S)
        await asyncio.wait(tasks, timeout=EVENTS * GAP_S + 15)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()
    plan.results.put(client.latencies)


def _client(plan: _Plan) -> None:
    _raise_open_files()
    asyncio.run(_client_main(plan))


# --- This process: arrange, publish, collect ----------------------------------------------------


async def _arrange(url: str) -> House:
    connection = await asyncpg.connect(url)
    try:
        opened = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
        house_id: uuid.UUID = await connection.fetchval(
            "INSERT INTO houses (title, country_code, city, ticket_price_minor, currency,"
            " total_tickets, max_tickets_per_order, max_tickets_per_user, sales_open_time,"
            " sales_close_time, draw_time, state, publish_time)"
            " VALUES ('Bench house', 'PT', 'Lisbon', 1000, 'EUR', $1, 10, 20, $2, $3, $4,"
            " 'ACTIVE', $2) RETURNING id",
            TOTAL_TICKETS,
            opened,
            opened + datetime.timedelta(days=10),
            opened + datetime.timedelta(days=11),
        )
    finally:
        await connection.close()
    return House(id=house_id, total_tickets=TOTAL_TICKETS, tickets_sold=0, tickets_reserved=0)


def _get(queue: Any, timeout: float) -> Any:
    return queue.get(timeout=timeout)


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU time a process used so far (Linux /proc; 10 ms resolution)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class _Result:
    # (tickets_sold of the event, seconds from publish to arrival) per delivery.
    latencies: list[tuple[int, float]]
    opened: int
    open_s: float
    # CPU seconds per event, in the windows between consecutive publications (the last event's
    # window also holds the streams' cancellation, so it is left out).
    server_cpu_s: float
    clients_cpu_s: float


async def _measure() -> _Result:
    redis_url = os.environ["AMESA_REDIS_URL"]
    context = multiprocessing.get_context("spawn")
    async with throwaway_database("bench_watch", migrated=True) as url:
        house = await _arrange(url)
        ports, ready, results, start = (
            context.Queue(),
            context.Queue(),
            context.Queue(),
            context.Event(),
        )
        server = context.Process(target=_serve, args=(url, redis_url, ports))
        server.start()
        clients: list[Any] = []
        redis = Redis.from_url(redis_url)
        bus = EventBus(redis)
        try:
            port = await asyncio.to_thread(_get, ports, 60)
            share = [STREAMS // CLIENTS + (i < STREAMS % CLIENTS) for i in range(CLIENTS)]
            name = f"houses/{house.id}"
            opening = time.perf_counter()
            for count in share:
                client = context.Process(
                    target=_client, args=(_Plan(port, name, count, ready, start, results),)
                )
                client.start()
                clients.append(client)
            opened = 0
            for _ in clients:
                opened += await asyncio.to_thread(_get, ready, OPEN_TIMEOUT_S)
            open_s = time.perf_counter() - opening
            start.set()
            pids = [client.pid for client in clients]
            server_cpu = clients_cpu = 0.0
            for number in range(1, EVENTS + 1):
                await asyncio.sleep(GAP_S)
                if number == 1:
                    server_cpu -= _cpu_seconds(server.pid)
                    clients_cpu -= sum(map(_cpu_seconds, pids))
                if number == EVENTS:
                    server_cpu += _cpu_seconds(server.pid)
                    clients_cpu += sum(map(_cpu_seconds, pids))
                house.tickets_sold = number
                await house_events.sales_progress(bus, house)
            latencies: list[tuple[int, float]] = []
            for _ in clients:
                latencies += await asyncio.to_thread(_get, results, EVENTS * GAP_S + 60)
        finally:
            await bus.close()
            await redis.aclose()
            for client in clients:
                client.join(30)
                if client.is_alive():
                    client.terminate()
            server.terminate()
            server.join(30)
    return _Result(
        latencies=latencies,
        opened=opened,
        open_s=open_s,
        server_cpu_s=server_cpu / (EVENTS - 1),
        clients_cpu_s=clients_cpu / (EVENTS - 1),
    )


def run() -> str:
    result = asyncio.run(_measure())
    delays = sorted(delay for _, delay in result.latencies)
    opened, expected = result.opened, result.opened * EVENTS
    if not delays:
        return f"WatchHouse: no event arrived on any of {opened:,} streams"
    cuts = statistics.quantiles(delays, n=100, method="inclusive")
    p50, p99 = cuts[49], cuts[98]
    return (
        f"WatchHouse fan-out: {opened:,} concurrent streams ({CLIENTS} client processes x "
        f"{CHANNELS_PER_CLIENT} connections, opened in {result.open_s:.1f} s), {EVENTS} events "
        f"{GAP_S:.1f} s apart: delivered {len(delays):,}/{expected:,}, p50 {p50:.3f} s, "
        f"p99 {p99:.3f} s, max {delays[-1]:.3f} s → p99 {p99 / TARGET_S:.2f} of the "
        f"{TARGET_S:.0f} s bar (target ≤ 1.00); CPU per event: server "
        f"{result.server_cpu_s:.2f} s, clients {result.clients_cpu_s:.2f} s (2 cores shared)"
    )
