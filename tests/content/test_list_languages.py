"""ContentService.ListLanguages: the enabled languages, default first, for anyone."""

from __future__ import annotations

import grpc

from amesa.content.v1 import content_service_pb2 as pb
from amesa.content.v1 import content_service_pb2_grpc
from server.app import App
from tests.support import bearer, token_for


async def test_lists_enabled_languages_default_first(
    channel: grpc.aio.Channel, languages: None
) -> None:
    stub = content_service_pb2_grpc.ContentServiceStub(channel)
    response = await stub.ListLanguages(pb.ListLanguagesRequest())
    codes = [language.language_code for language in response.languages]
    assert codes[0] == "en"
    assert {"en", "fr", "he"} <= set(codes)
    assert "xh" not in codes  # disabled
    assert codes[1:] == sorted(codes[1:])
    hebrew = next(language for language in response.languages if language.language_code == "he")
    assert hebrew == pb.Language(
        language_code="he",
        native_name="עברית",
        english_name="Hebrew",
        is_default=False,
        right_to_left=True,
    )
    assert response.languages[0].is_default


async def test_signed_in_caller_gets_the_same_list(
    app: App, channel: grpc.aio.Channel, languages: None
) -> None:
    stub = content_service_pb2_grpc.ContentServiceStub(channel)
    anonymous = await stub.ListLanguages(pb.ListLanguagesRequest())
    signed_in = await stub.ListLanguages(pb.ListLanguagesRequest(), metadata=bearer(token_for(app)))
    assert signed_in == anonymous
