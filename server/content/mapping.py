"""Rows ↔ ContentService messages, field by field."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2

from amesa.content.v1 import content_service_pb2 as pb
from server.content.models import Language


def language_to_proto(language: Language) -> pb.Language:
    return pb.Language(
        language_code=language.language_code,
        native_name=language.native_name,
        english_name=language.english_name,
        is_default=language.is_default,
        right_to_left=language.right_to_left,
    )


def json_to_value(value: Any) -> struct_pb2.Value:
    message = struct_pb2.Value()
    json_format.ParseDict(value, message)
    return message
