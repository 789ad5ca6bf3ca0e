"""An account's life through Envoy's JSON/REST edge, as a browser or mobile app without gRPC
sees it: register, read and change the profile, refresh, sign out — each RPC by its
google.api.http rule, errors as JSON google.rpc.Status."""

from __future__ import annotations

import uuid

import httpx

from server.app import App
from server.auth.throttling import IP_REGISTER


async def test_register_profile_refresh_and_logout_over_json(
    app: App, envoy: str, languages: None
) -> None:
    # Every call arrives from 127.0.0.1 through Envoy: start this test with a full bucket.
    await app.deps.rate_limiter.reset(f"{IP_REGISTER.prefix}:127.0.0.1")
    email = f"rest-{uuid.uuid4().hex[:10]}@example.org"
    async with httpx.AsyncClient(base_url=envoy, timeout=10) as client:
        registered = await client.post(
            "/v1/auth:register",
            json={
                "email": email,
                "password": "correct horse battery staple",
                "givenName": "Rita",
                "familyName": "Rest",
                "birthDate": {"year": 1990, "month": 4, "day": 12},
                "languageCode": "en",
                "acceptedTermsVersion": "2026-01",
            },
        )
        assert registered.status_code == 200, registered.text
        tokens = registered.json()
        assert tokens["tokenType"] == "Bearer"
        bearer = {"authorization": f"Bearer {tokens['accessToken']}"}

        me = await client.get("/v1/users/me", headers=bearer)
        assert me.status_code == 200, me.text
        assert me.json()["email"] == email
        assert me.json()["name"] == tokens["user"]

        renamed = await client.patch(
            f"/v1/{tokens['user']}",
            params={"updateMask": "givenName"},
            json={"name": tokens["user"], "givenName": "Rosa"},
            headers=bearer,
        )
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["givenName"] == "Rosa"

        refreshed = await client.post(
            "/v1/auth:refresh", json={"refreshToken": tokens["refreshToken"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["refreshToken"] != tokens["refreshToken"]
        bearer = {"authorization": f"Bearer {refreshed.json()['accessToken']}"}

        sessions = await client.get(f"/v1/{tokens['user']}/sessions", headers=bearer)
        assert sessions.status_code == 200, sessions.text
        assert [s["name"] for s in sessions.json()["sessions"]] == [tokens["session"]]

        logged_out = await client.post("/v1/auth:logout", json={}, headers=bearer)
        assert logged_out.status_code == 200, logged_out.text
        # The session is gone: its refresh token no longer works, and says why in JSON.
        again = await client.post(
            "/v1/auth:refresh", json={"refreshToken": refreshed.json()["refreshToken"]}
        )
    assert again.status_code == 401
    status = again.json()
    info = next(d for d in status["details"] if d["@type"].endswith("google.rpc.ErrorInfo"))
    assert info["domain"] == "amesa.io"
    assert info["reason"]


async def test_wrong_password_is_a_json_error_without_account_hints(app: App, envoy: str) -> None:
    async with httpx.AsyncClient(base_url=envoy, timeout=10) as client:
        response = await client.post(
            "/v1/auth:login",
            json={"email": f"nobody-{uuid.uuid4().hex[:8]}@example.org", "password": "x" * 12},
        )
    assert response.status_code == 401
    status = response.json()
    info = next(d for d in status["details"] if d["@type"].endswith("google.rpc.ErrorInfo"))
    assert info["reason"] == "INVALID_CREDENTIALS"
