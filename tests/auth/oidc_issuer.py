"""A local OpenID Connect provider for the OAuth tests: an HTTP server on a free 127.0.0.1 port
(in a thread) serving `/.well-known/openid-configuration`, `/jwks` and `/token`, signing ID
tokens with its own RSA key; plus the fixtures `oidc_issuer`, `oauth_app` (a separate Amesa
server configured with it) and `oauth_stub`, which the OAuth test modules import.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import grpc
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import rsa
from google.type import date_pb2  # type: ignore[import-untyped]

from amesa.auth.v1 import auth_service_pb2 as pb
from amesa.auth.v1 import auth_service_pb2_grpc
from server.app import App
from server.core.settings import OAuthProvider, Settings
from tests.auth.conftest import TERMS
from tests.support import separate_server

PROVIDER = "testoidc"
# A configured provider whose endpoints refuse connections (nothing listens on port 1).
DOWN_PROVIDER = "downoidc"
CLIENT_ID = "amesa-web"
REDIRECT_URI = "https://amesa.test/oauth/callback"


@dataclass
class _Code:
    challenge: str
    redirect_uri: str
    claims: dict[str, Any]


@dataclass
class OidcIssuer:
    """The provider's state; `issue()` makes ID tokens, `authorize()` authorization codes."""

    base_url: str = ""
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    kid: str = "test-key-1"
    codes: dict[str, _Code] = field(default_factory=dict)
    jwks_requests: int = 0

    @property
    def issuer(self) -> str:
        return self.base_url

    def provider(self) -> OAuthProvider:
        return OAuthProvider(
            id=PROVIDER,
            issuer=self.issuer,
            jwks_url=f"{self.base_url}/jwks",
            client_ids=(CLIENT_ID, "amesa-ios"),
            token_url=f"{self.base_url}/token",
            client_secret="test-client-secret",
            redirect_uris=(REDIRECT_URI,),
        )

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        public.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [public]}

    def claims(self, subject: str | None = None, **overrides: Any) -> dict[str, Any]:
        now = datetime.datetime.now(datetime.UTC)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "sub": subject or uuid.uuid4().hex,
            "iat": now,
            "exp": now + datetime.timedelta(minutes=5),
            "email": f"oidc-{uuid.uuid4().hex[:12]}@example.org",
            "email_verified": True,
            "given_name": "Grace",
            "family_name": "Hopper",
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def issue(
        self,
        claims: dict[str, Any],
        *,
        key: rsa.RSAPrivateKey | None = None,
        kid: str | None = None,
    ) -> str:
        return jwt.encode(
            claims, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid}
        )

    def authorize(self, claims: dict[str, Any]) -> tuple[str, str]:
        """A one-time code for these claims and its PKCE verifier."""
        code, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        self.codes[code] = _Code(challenge.decode().rstrip("="), REDIRECT_URI, claims)
        return code, verifier

    def redeem(self, form: dict[str, str]) -> dict[str, Any] | None:
        stored = self.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if (
            stored is None
            or stored.challenge != challenge.decode().rstrip("=")
            or stored.redirect_uri != form.get("redirect_uri")
            or form.get("client_id") != CLIENT_ID
            or form.get("client_secret") != "test-client-secret"
        ):
            return None
        return {"id_token": self.issue(stored.claims), "token_type": "Bearer"}


def _handler(issuer: OidcIssuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/.well-known/openid-configuration":
                self._send(
                    200,
                    {
                        "issuer": issuer.issuer,
                        "jwks_uri": f"{issuer.base_url}/jwks",
                        "token_endpoint": f"{issuer.base_url}/token",
                        "id_token_signing_alg_values_supported": ["RS256"],
                    },
                )
            elif self.path == "/jwks":
                issuer.jwks_requests += 1
                self._send(200, issuer.jwks())
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if self.path != "/token" or form.get("grant_type") != "authorization_code":
                self._send(400, {"error": "unsupported_grant_type"})
                return
            tokens = issuer.redeem(form)
            if tokens is None:
                self._send(400, {"error": "invalid_grant"})
            else:
                self._send(200, tokens)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@pytest.fixture(scope="module", name="oidc_issuer")
def oidc_issuer_fixture() -> Iterator[OidcIssuer]:
    issuer = OidcIssuer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(issuer))
    issuer.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()


@pytest_asyncio.fixture(scope="module", loop_scope="session", name="oauth_app")
async def oauth_app_fixture(
    settings: Settings, oidc_issuer: OidcIssuer, migrated_database: str
) -> AsyncIterator[App]:
    down = OAuthProvider(
        id=DOWN_PROVIDER,
        issuer="http://127.0.0.1:1",
        jwks_url="http://127.0.0.1:1/jwks",
        client_ids=(CLIENT_ID,),
        token_url="http://127.0.0.1:1/token",
        redirect_uris=(REDIRECT_URI,),
    )
    providers = (oidc_issuer.provider(), down)
    async with separate_server(settings, oauth_providers=providers) as app:
        yield app


@pytest_asyncio.fixture(scope="module", loop_scope="session", name="oauth_stub")
async def oauth_stub_fixture(
    oauth_app: App, languages: None
) -> AsyncIterator[auth_service_pb2_grpc.AuthServiceAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{oauth_app.port}") as channel:
        yield auth_service_pb2_grpc.AuthServiceStub(channel)


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def id_token_credential(token: str, nonce: str, provider: str = PROVIDER) -> pb.OAuthCredential:
    return pb.OAuthCredential(provider=provider, id_token=token, nonce=nonce)


def ticket_credential(ticket: str, provider: str = PROVIDER) -> pb.OAuthCredential:
    return pb.OAuthCredential(provider=provider, oauth_ticket=ticket)


def sign_up(**overrides: Any) -> pb.OAuthSignUp:
    fields: dict[str, Any] = {
        "birth_date": date_pb2.Date(year=1990, month=5, day=17),
        "language_code": "en",
        "accepted_terms_version": TERMS,
    }
    fields.update(overrides)
    return pb.OAuthSignUp(**fields)
