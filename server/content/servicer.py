"""gRPC adapter of ContentService.

Built so far: ListLanguages and GetPublicSettings (public, read-only). Every other RPC inherits
the generated base implementation, answered with UNIMPLEMENTED / NOT_IMPLEMENTED.
"""

from __future__ import annotations

from typing import Any

import grpc

from amesa.content.v1 import content_service_pb2 as pb
from amesa.content.v1 import content_service_pb2_grpc
from server.content import mapping, service
from server.core.deps import Deps

Context = grpc.aio.ServicerContext[Any, Any]


class ContentServicer(content_service_pb2_grpc.ContentServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self._database = deps.database

    async def ListLanguages(
        self, request: pb.ListLanguagesRequest, context: Context
    ) -> pb.ListLanguagesResponse:
        async with self._database.session(system=True) as session:
            languages = await service.list_languages(session)
        return pb.ListLanguagesResponse(
            languages=[mapping.language_to_proto(lang) for lang in languages]
        )

    async def GetPublicSettings(
        self, request: pb.GetPublicSettingsRequest, context: Context
    ) -> pb.GetPublicSettingsResponse:
        async with self._database.session(system=True) as session:
            settings = await service.public_settings(session)
        return pb.GetPublicSettingsResponse(
            settings={key: mapping.json_to_value(value) for key, value in settings.items()}
        )
