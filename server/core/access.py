"""Access levels read from the `(amesa.options.v1.access)` option of each RPC's descriptor."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import IntEnum

from google.protobuf.descriptor import ServiceDescriptor

from amesa.options.v1 import options_pb2


class AccessLevel(IntEnum):
    UNSPECIFIED = options_pb2.ACCESS_LEVEL_UNSPECIFIED
    PUBLIC = options_pb2.ACCESS_LEVEL_PUBLIC
    USER = options_pb2.ACCESS_LEVEL_USER
    ADMIN = options_pb2.ACCESS_LEVEL_ADMIN


# Infrastructure services that carry no Amesa option but must be callable anonymously:
# load balancers probe health, grpcurl and buf curl read reflection.
INFRASTRUCTURE_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)


def method_path(service: ServiceDescriptor, method_name: str) -> str:
    return f"/{service.full_name}/{method_name}"


def access_levels(services: Iterable[ServiceDescriptor]) -> Mapping[str, AccessLevel]:
    """Maps each RPC's path (`/pkg.Service/Method`) to its declared level (UNSPECIFIED if none)."""
    levels: dict[str, AccessLevel] = {}
    for service in services:
        for method in service.methods:
            option = method.GetOptions().Extensions[options_pb2.access]
            levels[method_path(service, method.name)] = AccessLevel(option)
    return levels


def level_of(levels: Mapping[str, AccessLevel], path: str) -> AccessLevel:
    """The level of a call path; infrastructure is PUBLIC, anything undeclared is UNSPECIFIED."""
    level = levels.get(path)
    if level is not None:
        return level
    service = path.lstrip("/").split("/", 1)[0]
    return AccessLevel.PUBLIC if service in INFRASTRUCTURE_SERVICES else AccessLevel.UNSPECIFIED
