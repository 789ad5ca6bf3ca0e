"""Cost of the interceptor stack (SPEC §9: ≥ 70 % of a bare grpc.aio handler's QPS).

The same constant handler is served twice, in a separate process each time: bare, and behind
the production interceptor stack (access log + metrics, error mapping, JWT auth, protovalidate).
A client process drives both with the same concurrency for the same time, alternating rounds,
and prints the best QPS of each and their ratio. The handler does no I/O, so the figure is the
stack's own cost; the cached GetHouse of the spec's bar will replace it once it exists.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import socket
import time
import uuid
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from amesa.content.v1 import content_service_pb2 as pb
from server.app import interceptors
from server.core.logging import JsonFormatter, configure_logging
from server.core.metrics import Metrics
from server.core.tokens import AccessTokenSigner, AccessTokenVerifier

METHOD = "/amesa.content.v1.ContentService/ListLanguages"
RESPONSE = pb.ListLanguagesResponse(
    languages=[pb.Language(language_code="en", native_name="English", is_default=True)]
)
CONCURRENCY = 32
SECONDS = 4.0
ROUNDS = 2


async def _handler(request: pb.ListLanguagesRequest, context: Any) -> pb.ListLanguagesResponse:
    return RESPONSE


def _serve(port: int, with_stack: bool, key_bytes: bytes, ready: Any) -> None:
    # The access log is formatted as in production, but written to /dev/null: the bench measures
    # the stack, not the terminal.
    configure_logging("INFO")
    handler = logging.FileHandler(os.devnull)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().handlers[:] = [handler]

    async def main() -> None:
        key = Ed25519PrivateKey.from_private_bytes(key_bytes)
        verifier = AccessTokenVerifier([key.public_key()], issuer="bench", audience="bench")
        server = grpc.aio.server(
            interceptors=interceptors(Metrics(), verifier) if with_stack else []
        )
        handler = grpc.unary_unary_rpc_method_handler(
            _handler,
            request_deserializer=pb.ListLanguagesRequest.FromString,
            response_serializer=pb.ListLanguagesResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "amesa.content.v1.ContentService", {"ListLanguages": handler}
                ),
            )
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        ready.set()
        await server.wait_for_termination()

    asyncio.run(main())


async def _drive(port: int, token: str) -> float:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            METHOD,
            request_serializer=pb.ListLanguagesRequest.SerializeToString,
            response_deserializer=pb.ListLanguagesResponse.FromString,
        )
        metadata = (("authorization", f"Bearer {token}"),)
        count = 0
        deadline = time.perf_counter() + SECONDS

        async def worker() -> None:
            nonlocal count
            while time.perf_counter() < deadline:
                await call(pb.ListLanguagesRequest(), metadata=metadata)
                count += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return count / (time.perf_counter() - started)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run() -> str:
    key = Ed25519PrivateKey.generate()
    token = (
        AccessTokenSigner(key, issuer="bench", audience="bench")
        .issue(user_id=uuid.uuid4(), session_id=uuid.uuid4(), roles=["user"])
        .token
    )
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    context = multiprocessing.get_context("spawn")
    best = {False: 0.0, True: 0.0}
    for _ in range(ROUNDS):
        for with_stack in (False, True):
            port, ready = _free_port(), context.Event()
            server = context.Process(target=_serve, args=(port, with_stack, raw, ready))
            server.start()
            ready.wait(30)
            try:
                best[with_stack] = max(best[with_stack], asyncio.run(_drive(port, token)))
            finally:
                server.terminate()
                server.join()
    ratio = best[True] / best[False]
    return (
        f"interceptor stack: {best[True]:.0f} QPS vs bare handler {best[False]:.0f} QPS "
        f"→ ratio {ratio:.2f} (target ≥ 0.70; {CONCURRENCY} concurrent calls, "
        f"best of {ROUNDS} rounds of {SECONDS:.0f} s)"
    )
