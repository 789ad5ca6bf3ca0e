"""The one composition root: settings in, a ready (not yet started) gRPC server out.

`build_server` wires the engine, Redis, token keys, interceptors, the five services, health and
reflection explicitly. `python -m server`, `make run` and the tests all call it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from redis.asyncio import Redis

from amesa.auth.v1 import auth_service_pb2, auth_service_pb2_grpc
from amesa.content.v1 import content_service_pb2, content_service_pb2_grpc
from amesa.lottery.v1 import lottery_service_pb2, lottery_service_pb2_grpc
from amesa.payment.v1 import payment_service_pb2, payment_service_pb2_grpc
from amesa.user.v1 import user_service_pb2, user_service_pb2_grpc
from server.auth.servicer import AuthServicer
from server.content.servicer import ContentServicer
from server.core.access import access_levels
from server.core.crypto import PiiCipher
from server.core.db import Database
from server.core.deps import Deps
from server.core.events import EventBus
from server.core.health import HealthMonitor
from server.core.interceptors import (
    AccessLogInterceptor,
    AuthInterceptor,
    ErrorInterceptor,
    ValidationInterceptor,
)
from server.core.jobs import JobRunner
from server.core.metrics import Metrics
from server.core.pagination import PageTokens
from server.core.ratelimit import RateLimiter
from server.core.settings import Settings
from server.core.tokens import (
    AccessTokenSigner,
    AccessTokenVerifier,
    load_private_key,
    load_public_key,
)
from server.lottery.scheduler import register_scheduler
from server.lottery.servicer import LotteryServicer
from server.notify.dispatcher import register_dispatcher
from server.payment.gateways import build_gateways
from server.payment.jobs import register_payment_job
from server.payment.servicer import PaymentServicer
from server.user.anonymise import register_anonymiser
from server.user.servicer import UserServicer

log = logging.getLogger("amesa.server")

SERVICE_DESCRIPTORS = (
    auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"],
    user_service_pb2.DESCRIPTOR.services_by_name["UserService"],
    lottery_service_pb2.DESCRIPTOR.services_by_name["LotteryService"],
    payment_service_pb2.DESCRIPTOR.services_by_name["PaymentService"],
    content_service_pb2.DESCRIPTOR.services_by_name["ContentService"],
)
SERVICE_NAMES = tuple(s.full_name for s in SERVICE_DESCRIPTORS)


@dataclass
class App:
    """A built server and what it owns; `stop()` releases all of it."""

    settings: Settings
    server: grpc.aio.Server
    port: int
    database: Database
    redis: Redis
    health: HealthMonitor
    metrics: Metrics
    signer: AccessTokenSigner
    verifier: AccessTokenVerifier
    deps: Deps

    async def start(self) -> None:
        await self.server.start()
        await self.health.start()
        self.deps.jobs.start()
        log.info("serving gRPC on port %d", self.port)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful stop: NOT_SERVING, then streams told to end, then in-flight calls drain."""
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        await self.health.drain()
        self.deps.shutting_down.set()
        await self.deps.events.close()  # live streams end now; unary calls finish in the grace
        await self.server.stop(grace)
        await self.deps.jobs.stop()
        await self.deps.gateways.aclose()
        await self.health.stop()
        await self.database.close()
        await self.redis.aclose()

    async def wait(self) -> None:
        await self.server.wait_for_termination()


def signing_key(path: Path | None, *, variable: str) -> Ed25519PrivateKey:
    """The Ed25519 key in `path`; without one (development and tests only — production refuses
    to start), an ephemeral key, so what it signed stops verifying after a restart."""
    if path is not None:
        return load_private_key(path)
    log.warning("%s is not set: using an ephemeral key", variable)
    return Ed25519PrivateKey.generate()


def token_keys(settings: Settings) -> tuple[AccessTokenSigner, AccessTokenVerifier]:
    private_key = signing_key(settings.jwt_private_key_file, variable="AMESA_JWT_PRIVATE_KEY_FILE")
    signer = AccessTokenSigner(
        private_key, issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )
    previous = [load_public_key(path) for path in settings.jwt_public_key_files]
    verifier = AccessTokenVerifier(
        [signer.public_key, *previous], issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )
    return signer, verifier


def interceptors(
    metrics: Metrics, verifier: AccessTokenVerifier
) -> list[grpc.aio.ServerInterceptor]:
    """The stack every RPC passes through, outermost first (see server/core/interceptors.py)."""
    return [
        AccessLogInterceptor(metrics),
        ErrorInterceptor(),
        AuthInterceptor(access_levels(SERVICE_DESCRIPTORS), verifier),
        ValidationInterceptor(),
    ]


def build_server(settings: Settings, *, address: str | None = None) -> App:
    """Wires everything; `address` overrides settings (tests bind 127.0.0.1:0)."""
    metrics = Metrics()
    database = Database(
        settings.database_url, role=settings.database_role, pool_size=settings.database_pool_size
    )
    redis = Redis.from_url(settings.redis_url)
    signer, verifier = token_keys(settings)
    health = HealthMonitor(
        database=database,
        redis=redis,
        services=SERVICE_NAMES,
        interval_seconds=settings.health_probe_interval_seconds,
        metrics=metrics,
    )
    deps = Deps(
        settings=settings,
        database=database,
        redis=redis,
        signer=signer,
        verifier=verifier,
        page_tokens=PageTokens(settings.page_token_secret),
        cipher=PiiCipher(
            {settings.pii_key_id: settings.pii_key},
            current_key_id=settings.pii_key_id,
            index_key=settings.pii_index_key,
        ),
        transparency_key=signing_key(
            settings.transparency_key_file, variable="AMESA_TRANSPARENCY_KEY_FILE"
        ),
        events=EventBus(redis),
        rate_limiter=RateLimiter(redis),
        jobs=JobRunner(database),
        shutting_down=asyncio.Event(),
        gateways=build_gateways(settings.payment),
    )
    register_dispatcher(deps)
    register_anonymiser(deps)
    register_scheduler(deps)
    register_payment_job(deps)
    server = grpc.aio.server(
        interceptors=interceptors(metrics, verifier),
        options=[
            ("grpc.so_reuseport", 1),  # AMESA_WORKERS processes share one port
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),  # 10 MB uploads + envelope
        ],
    )
    # The Content servicer still inherits the generated base for the RPCs not built yet
    # (answered UNIMPLEMENTED by the error interceptor), so mypy sees it as abstract.
    auth_service_pb2_grpc.add_AuthServiceServicer_to_server(
        AuthServicer(deps),
        server,
    )
    user_service_pb2_grpc.add_UserServiceServicer_to_server(
        UserServicer(deps),
        server,
    )
    lottery_service_pb2_grpc.add_LotteryServiceServicer_to_server(
        LotteryServicer(deps),
        server,
    )
    payment_service_pb2_grpc.add_PaymentServiceServicer_to_server(
        PaymentServicer(deps),
        server,
    )
    content_service_pb2_grpc.add_ContentServiceServicer_to_server(
        ContentServicer(deps),  # type: ignore[abstract]
        server,
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    reflection.enable_server_reflection(
        (
            *SERVICE_NAMES,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    port = server.add_insecure_port(address or settings.grpc_address)
    if port == 0:
        raise OSError(f"cannot listen on {address or settings.grpc_address}")
    return App(
        settings=settings,
        server=server,
        port=port,
        database=database,
        redis=redis,
        health=health,
        metrics=metrics,
        signer=signer,
        verifier=verifier,
        deps=deps,
    )
