"""The exception hierarchy the domain raises, and its one mapping to `google.rpc.Status`.

Domain code raises these with a stable UPPER_SNAKE `reason`; the error interceptor turns them
into a gRPC status carrying an `ErrorInfo` (domain `amesa.io`) and the detail messages that
apply. Servicers never call `context.abort` themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

ERROR_DOMAIN = "amesa.io"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad request field: dotted path as in the proto (`house.ticket_price`), and why."""

    field: str
    description: str


class AmesaError(Exception):
    """Base of every error a client is meant to see. `message` is shown to clients: no internals."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})

    def details(self) -> list[any_pb2.Any]:
        """Detail messages beyond the ErrorInfo; subclasses add what applies to them."""
        return []


class InvalidArgument(AmesaError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        violations: Sequence[FieldViolation] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(reason, message, metadata=metadata)
        self.violations = tuple(violations)

    def details(self) -> list[any_pb2.Any]:
        if not self.violations:
            return []
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description, reason=self.reason
                )
                for v in self.violations
            ]
        )
        return [_pack(bad_request)]


class NotFound(AmesaError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(AmesaError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(AmesaError):
    code = grpc.StatusCode.FAILED_PRECONDITION

    def details(self) -> list[any_pb2.Any]:
        failure = error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type=self.reason,
                    subject=self.metadata.get("subject", ""),
                    description=self.message,
                )
            ]
        )
        return [_pack(failure)]


class ResourceExhausted(AmesaError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        retry_after: timedelta | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(reason, message, metadata=metadata)
        self.retry_after = retry_after

    def details(self) -> list[any_pb2.Any]:
        if self.retry_after is None:
            return []
        delay = duration_pb2.Duration()
        delay.FromTimedelta(self.retry_after)
        return [_pack(error_details_pb2.RetryInfo(retry_delay=delay))]


class PermissionDenied(AmesaError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(AmesaError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Aborted(AmesaError):
    code = grpc.StatusCode.ABORTED


class Unavailable(AmesaError):
    code = grpc.StatusCode.UNAVAILABLE


class Unimplemented(AmesaError):
    code = grpc.StatusCode.UNIMPLEMENTED


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_status(error: AmesaError, *, request_id: str) -> status_pb2.Status:
    """The google.rpc.Status a client receives for `error`."""
    info = error_details_pb2.ErrorInfo(
        reason=error.reason,
        domain=ERROR_DOMAIN,
        metadata={**error.metadata, "request_id": request_id},
    )
    return status_pb2.Status(
        code=error.code.value[0],
        message=error.message,
        details=[_pack(info), *error.details()],
    )


def internal_status(*, request_id: str) -> status_pb2.Status:
    """The generic status for an unexpected failure: no internals, only the request id."""
    info = error_details_pb2.ErrorInfo(
        reason="INTERNAL", domain=ERROR_DOMAIN, metadata={"request_id": request_id}
    )
    return status_pb2.Status(
        code=grpc.StatusCode.INTERNAL.value[0],
        message=f"internal error (request id {request_id})",
        details=[_pack(info)],
    )
