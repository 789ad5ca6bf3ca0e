"""gRPC adapter of UserService.

Not built yet: every RPC inherits the generated base implementation, which the error
interceptor answers with UNIMPLEMENTED / NOT_IMPLEMENTED (after authentication and validation,
so the access matrix already holds).
"""

from __future__ import annotations

from amesa.user.v1 import user_service_pb2_grpc
from server.core.deps import Deps


class UserServicer(user_service_pb2_grpc.UserServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self._deps = deps
