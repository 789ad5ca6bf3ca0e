"""The interceptor stack every RPC passes through, outermost first:

1. AccessLogInterceptor — request id, one JSON log line and the metrics for every call.
2. ErrorInterceptor     — AmesaError → google.rpc.Status; anything unexpected → generic INTERNAL.
3. AuthInterceptor      — deny by default: the RPC's declared level decides, JWT → Principal.
4. ValidationInterceptor — protovalidate rules from the protos → INVALID_ARGUMENT + BadRequest.

Each interceptor wraps the method handler's behaviour, so errors raised by auth and validation
travel through the error mapping like any handler error. Only unary-request handlers (all
Amesa RPCs, and health) are wrapped; reflection's bidirectional stream passes through.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import protovalidate
from google.protobuf.message import Message
from grpc_status import rpc_status

from server.core.access import AccessLevel, level_of
from server.core.context import (
    bind_call,
    bind_principal,
    bind_request_id,
    current_principal,
    current_request_id,
)
from server.core.errors import (
    AmesaError,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    Unimplemented,
    internal_status,
    to_status,
)
from server.core.metrics import Metrics
from server.core.tokens import AccessTokenVerifier

log = logging.getLogger("amesa.rpc")

if TYPE_CHECKING:  # RpcMethodHandler is generic only in the type stubs
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
UnaryBehavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
StreamBehavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


async def _call_unary(behavior: Callable[..., Any], request: Any, context: Any) -> Any:
    """Runs a unary behaviour, sync or async (generated base classes are sync)."""
    result = behavior(request, context)
    if isinstance(result, Awaitable):
        return await result
    return result


def _wrap(
    handler: Handler,
    *,
    unary: Callable[[UnaryBehavior], UnaryBehavior],
    stream: Callable[[StreamBehavior], StreamBehavior],
) -> Handler:
    """A copy of `handler` whose unary-request behaviour is wrapped; others are unchanged."""
    if handler.unary_unary is not None:
        inner_unary = handler.unary_unary

        async def call(request: Any, context: Any) -> Any:
            return await _call_unary(inner_unary, request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary(call),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        # Our streams are async generators; grpc's stubs type the attribute as a sync iterator.
        inner_stream: StreamBehavior = handler.unary_stream  # type: ignore[assignment]
        return grpc.unary_stream_rpc_method_handler(
            stream(inner_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler


def _metadata(context: grpc.aio.ServicerContext[Any, Any], key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value.decode() if isinstance(value, bytes) else value
    return None


class _WrappingInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each method's handler once and reuses the wrapper for later calls.

    grpc asks every interceptor for the handler on every call; the server's handler for a method
    is the same object each time, so the wrapper built for it can be kept (a different inner
    handler is wrapped anew). This keeps per-call work to the behaviours themselves.
    """

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self.wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def wrap(self, method: str, handler: Handler) -> Handler:
        raise NotImplementedError


class AccessLogInterceptor(_WrappingInterceptor):
    """One JSON line per RPC (method, code, duration, user, request id, peer) and RPC metrics.

    Never logs request or response bodies: they can hold passwords, tokens and card data.
    """

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._metrics = metrics

    def wrap(self, method: str, handler: Handler) -> Handler:
        def unary(inner: UnaryBehavior) -> UnaryBehavior:
            async def behavior(request: Any, context: Any) -> Any:
                start = self._begin(context)
                try:
                    return await inner(request, context)
                finally:
                    self._end(method, context, start)

            return behavior

        def stream(inner: StreamBehavior) -> StreamBehavior:
            async def behavior(request: Any, context: Any) -> AsyncIterator[Any]:
                start = self._begin(context)
                self._metrics.active_streams.labels(method).inc()
                try:
                    async for response in inner(request, context):
                        yield response
                finally:
                    self._metrics.active_streams.labels(method).dec()
                    self._end(method, context, start)

            return behavior

        return _wrap(handler, unary=unary, stream=stream)

    @staticmethod
    def _begin(context: grpc.aio.ServicerContext[Any, Any]) -> float:
        supplied = _metadata(context, "x-request-id")
        valid = supplied is not None and _REQUEST_ID.match(supplied) is not None
        bind_request_id(supplied if valid and supplied else uuid.uuid4().hex)
        bind_principal(None)
        bind_call(context)
        return time.perf_counter()

    def _end(self, method: str, context: grpc.aio.ServicerContext[Any, Any], start: float) -> None:
        duration = time.perf_counter() - start
        code = context.code()
        code_name = code.name if isinstance(code, grpc.StatusCode) else "OK"
        self._metrics.observe_rpc(method, code_name, duration)
        if not log.isEnabledFor(logging.INFO):
            return
        principal = current_principal()
        # makeRecord + handle skips logging's caller lookup (a stack walk per RPC); the line
        # carries the method instead.
        log.handle(
            log.makeRecord(
                log.name,
                logging.INFO,
                __file__,
                0,
                "rpc",
                (),
                None,
                extra={
                    "rpc": {
                        "method": method,
                        "code": code_name,
                        "duration_ms": round(duration * 1000, 3),
                        "request_id": current_request_id(),
                        "user": str(principal.user_id) if principal else None,
                        "peer": context.peer(),
                    }
                },
            )
        )


class ErrorInterceptor(_WrappingInterceptor):
    """Maps errors to statuses, once, for every RPC. Servicers never call context.abort."""

    def wrap(self, method: str, handler: Handler) -> Handler:
        def unary(inner: UnaryBehavior) -> UnaryBehavior:
            async def behavior(request: Any, context: Any) -> Any:
                try:
                    return await inner(request, context)
                except Exception as error:
                    await _abort(context, method, error)
                    raise  # unreachable: abort raises

            return behavior

        def stream(inner: StreamBehavior) -> StreamBehavior:
            async def behavior(request: Any, context: Any) -> AsyncIterator[Any]:
                try:
                    async for response in inner(request, context):
                        yield response
                except Exception as error:
                    await _abort(context, method, error)

            return behavior

        return _wrap(handler, unary=unary, stream=stream)


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], method: str, error: Exception
) -> None:
    if isinstance(error, grpc.aio.AbortError):
        raise error  # already a status (e.g. set by grpc itself)
    request_id = current_request_id()
    if isinstance(error, NotImplementedError):
        error = Unimplemented("NOT_IMPLEMENTED", f"{method} is not implemented yet")
    if isinstance(error, AmesaError):
        status = to_status(error, request_id=request_id)
    else:
        log.error("unexpected error in %s (request id %s)", method, request_id, exc_info=error)
        status = internal_status(request_id=request_id)
    await context.abort_with_status(rpc_status.to_status(status))


class AuthInterceptor(_WrappingInterceptor):
    """Deny by default. The RPC's declared access level decides who may call it.

    A valid bearer token always binds the Principal (PUBLIC RPCs may personalise); an invalid
    one is refused even on PUBLIC RPCs, so a client learns at once that its token is bad.
    """

    def __init__(self, levels: Mapping[str, AccessLevel], verifier: AccessTokenVerifier) -> None:
        super().__init__()
        self._levels = levels
        self._verifier = verifier

    def wrap(self, method: str, handler: Handler) -> Handler:
        level = level_of(self._levels, method)
        authorize = self._authorize

        def unary(inner: UnaryBehavior) -> UnaryBehavior:
            async def behavior(request: Any, context: Any) -> Any:
                authorize(level, context)
                return await inner(request, context)

            return behavior

        def stream(inner: StreamBehavior) -> StreamBehavior:
            async def behavior(request: Any, context: Any) -> AsyncIterator[Any]:
                authorize(level, context)
                async for response in inner(request, context):
                    yield response

            return behavior

        return _wrap(handler, unary=unary, stream=stream)

    def _authorize(self, level: AccessLevel, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if level is AccessLevel.UNSPECIFIED:
            raise PermissionDenied(
                "ACCESS_NOT_DECLARED", "this method declares no access level and cannot be called"
            )
        header = _metadata(context, "authorization")
        principal = None
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("TOKEN_INVALID", "authorization must be 'Bearer <token>'")
            principal = self._verifier.verify(token.strip())
            bind_principal(principal)
        if level is AccessLevel.PUBLIC:
            return
        if principal is None:
            raise Unauthenticated("TOKEN_MISSING", "this call needs an access token")
        if level is AccessLevel.ADMIN and not principal.is_admin:
            raise PermissionDenied("ADMIN_REQUIRED", "this call is for administrators")


class ValidationInterceptor(_WrappingInterceptor):
    """Enforces the protovalidate rules declared in the protos before any handler runs."""

    def __init__(self) -> None:
        super().__init__()
        self._validator = protovalidate.Validator()

    def wrap(self, method: str, handler: Handler) -> Handler:
        check = self._check

        def unary(inner: UnaryBehavior) -> UnaryBehavior:
            async def behavior(request: Any, context: Any) -> Any:
                check(request)
                return await inner(request, context)

            return behavior

        def stream(inner: StreamBehavior) -> StreamBehavior:
            async def behavior(request: Any, context: Any) -> AsyncIterator[Any]:
                check(request)
                async for response in inner(request, context):
                    yield response

            return behavior

        return _wrap(handler, unary=unary, stream=stream)

    def _check(self, request: Message) -> None:
        violations = self._validator.collect_violations(request)
        if not violations:
            return
        field_violations = [
            FieldViolation(field=_field_path(v), description=v.proto.message or v.proto.rule_id)
            for v in violations
        ]
        first = field_violations[0]
        raise InvalidArgument(
            "INVALID_REQUEST",
            f"invalid request: {first.field}: {first.description}",
            violations=field_violations,
        )


def _field_path(violation: protovalidate.Violation) -> str:
    """`address.lines[2]`-style path of a violation, as clients name fields."""
    parts: list[str] = []
    path = violation.proto.field
    for element in path.elements if path is not None else ():
        name = element.field_name or ""
        subscript = element.subscript  # a protobuf-py Oneof: .field says which, .value the key
        if subscript is not None:
            name += (
                f"[{subscript.value}]" if subscript.field == "index" else f"[{subscript.value!r}]"
            )
        parts.append(name)
    return ".".join(parts) or "request"
