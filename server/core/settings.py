"""Typed, frozen settings read once from `AMESA_*` environment variables.

Production refuses the development defaults (placeholder secrets, generated keys), so a server
can never go live with a key that is printed in this repository.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class SettingsError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


# Development placeholders. Production refuses every one of them.
DEV_PAGE_TOKEN_SECRET = "dev-page-token-secret-not-for-production"  # noqa: S105
DEV_PII_KEY = base64.b64encode(b"amesa-dev-pii-key-32-bytes-long!").decode()
DEV_PII_INDEX_KEY = base64.b64encode(b"amesa-dev-blind-index-key-32-b!!").decode()


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    # SMTP relay; no host means a log-only sender (development).
    smtp_host: str | None
    smtp_port: int
    smtp_from: str
    smtp_username: str | None
    smtp_password: str | None
    smtp_starttls: bool
    smtp_timeout_seconds: float
    # "log" (development: the text goes to the log) or "twilio" (Messages API over HTTPS).
    sms_provider: str
    twilio_base_url: str
    twilio_account_sid: str
    twilio_auth_token: str
    twilio_from: str
    # Links in emails point here (the web app), e.g. `{web_base_url}/verify-email?token=…`.
    web_base_url: str
    dispatch_interval: timedelta
    dispatch_batch_size: int
    # WatchNotifications: idle heartbeat (also when the session is re-checked) and stream cap.
    heartbeat_seconds: float
    max_streams_per_user: int


def load_notify_config(env: Mapping[str, str]) -> NotifyConfig:
    """The notification section of the settings (SMTP, SMS, links, dispatch, streams)."""
    return NotifyConfig(
        smtp_host=env.get("AMESA_SMTP_HOST") or None,
        smtp_port=int(env.get("AMESA_SMTP_PORT", "587")),
        smtp_from=env.get("AMESA_SMTP_FROM", "Amesa <no-reply@amesa.local>"),
        smtp_username=env.get("AMESA_SMTP_USERNAME") or None,
        smtp_password=env.get("AMESA_SMTP_PASSWORD") or None,
        smtp_starttls=env.get("AMESA_SMTP_STARTTLS", "false").lower() in ("1", "true", "yes"),
        smtp_timeout_seconds=float(env.get("AMESA_SMTP_TIMEOUT_SECONDS", "10")),
        sms_provider=env.get("AMESA_SMS_PROVIDER", "log"),
        twilio_base_url=env.get("AMESA_TWILIO_BASE_URL", "https://api.twilio.com"),
        twilio_account_sid=env.get("AMESA_TWILIO_ACCOUNT_SID", ""),
        twilio_auth_token=env.get("AMESA_TWILIO_AUTH_TOKEN", ""),
        twilio_from=env.get("AMESA_TWILIO_FROM", ""),
        web_base_url=env.get("AMESA_WEB_BASE_URL", "http://localhost:3000").rstrip("/"),
        dispatch_interval=timedelta(
            seconds=float(env.get("AMESA_NOTIFY_DISPATCH_INTERVAL_SECONDS", "2"))
        ),
        dispatch_batch_size=int(env.get("AMESA_NOTIFY_BATCH_SIZE", "50")),
        heartbeat_seconds=float(env.get("AMESA_NOTIFY_HEARTBEAT_SECONDS", "30")),
        max_streams_per_user=int(env.get("AMESA_NOTIFY_MAX_STREAMS_PER_USER", "10")),
    )


@dataclass(frozen=True, slots=True)
class OAuthProvider:
    """An OpenID Connect provider that LoginWithOAuth and LinkOAuthIdentity accept."""

    id: str
    # The `iss` its ID tokens carry, and where its signing keys are published.
    issuer: str
    jwks_url: str
    # Our client ids there: an ID token's `aud` must be one of them.
    client_ids: tuple[str, ...]
    # Authorization-code + PKCE flow: the token endpoint, our client secret, allowed redirect URIs.
    token_url: str | None = None
    client_secret: str | None = None
    redirect_uris: tuple[str, ...] = ()


def load_oauth_providers(env: Mapping[str, str]) -> tuple[OAuthProvider, ...]:
    """`AMESA_OAUTH_PROVIDERS`: a JSON list of objects with `id`, `issuer`, `jwks_url`,
    `client_ids` and optionally `token_url`, `client_secret`, `redirect_uris`."""
    raw = env.get("AMESA_OAUTH_PROVIDERS", "").strip()
    if not raw:
        return ()
    try:
        entries = json.loads(raw)
        providers = tuple(
            OAuthProvider(
                id=str(entry["id"]),
                issuer=str(entry["issuer"]),
                jwks_url=str(entry["jwks_url"]),
                client_ids=tuple(str(client_id) for client_id in entry["client_ids"]),
                token_url=str(entry["token_url"]) if entry.get("token_url") else None,
                client_secret=str(entry["client_secret"]) if entry.get("client_secret") else None,
                redirect_uris=tuple(str(uri) for uri in entry.get("redirect_uris", ())),
            )
            for entry in entries
        )
    except (ValueError, TypeError, KeyError) as error:
        raise SettingsError(
            f"AMESA_OAUTH_PROVIDERS is not a valid provider list: {error}"
        ) from None
    if any(not provider.client_ids for provider in providers):
        raise SettingsError("AMESA_OAUTH_PROVIDERS: every provider needs at least one client id")
    if len({provider.id for provider in providers}) != len(providers):
        raise SettingsError("AMESA_OAUTH_PROVIDERS: provider ids must be unique")
    return providers


# drand quicknet (SPEC §6.1): the production beacon's parameters, public and fixed by the chain.
QUICKNET_URL = "https://api.drand.sh"
QUICKNET_CHAIN_HASH = "52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971"
QUICKNET_PUBLIC_KEY = (
    "83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d10"
    "64510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5"
    "ece45a"
)
QUICKNET_PERIOD_SECONDS = 3
QUICKNET_GENESIS_TIME = 1692803367


@dataclass(frozen=True, slots=True)
class DrawConfig:
    """DRAW-1 (SPEC §6): the beacon chain a manifest commits to and the scheduler's pace.

    The chain's parameters are configuration, not fetched, so publishing a house (which signs
    them into its manifest) never waits on the network; the beacon client checks every round
    against the public key the manifest committed to.
    """

    drand_url: str
    chain_hash: str
    public_key: bytes
    period_seconds: int
    genesis_time: int
    # Target round R = the first round at or after sales close + this delay.
    delay: timedelta
    # Reserve winners selected after the winner.
    reserves: int
    # Past round R's time + this, a beacon still unavailable cancels and refunds the lottery
    # (the manifest's declared fallback).
    beacon_deadline: timedelta
    # How often this replica's scheduler looks for due work; zero turns it off on this replica.
    scheduler_interval: timedelta
    # How often open lotteries get a signed tree head over their new tickets.
    tree_head_interval: timedelta


def load_draw_config(env: Mapping[str, str]) -> DrawConfig:
    chain_hash = env.get("AMESA_DRAND_CHAIN_HASH", QUICKNET_CHAIN_HASH).lower()
    public_key_hex = env.get("AMESA_DRAND_PUBLIC_KEY", QUICKNET_PUBLIC_KEY).lower()
    try:
        public_key = bytes.fromhex(public_key_hex)
    except ValueError:
        raise SettingsError("AMESA_DRAND_PUBLIC_KEY must be hex") from None
    if len(public_key) != 96:
        raise SettingsError("AMESA_DRAND_PUBLIC_KEY must be a 96-byte G2 point (192 hex digits)")
    if len(chain_hash) != 64 or any(c not in "0123456789abcdef" for c in chain_hash):
        raise SettingsError("AMESA_DRAND_CHAIN_HASH must be 64 hex digits")
    return DrawConfig(
        drand_url=env.get("AMESA_DRAND_URL", QUICKNET_URL),
        chain_hash=chain_hash,
        public_key=public_key,
        period_seconds=_int(env, "AMESA_DRAND_PERIOD_SECONDS", QUICKNET_PERIOD_SECONDS, minimum=1),
        genesis_time=_int(env, "AMESA_DRAND_GENESIS_TIME", QUICKNET_GENESIS_TIME, minimum=1),
        delay=timedelta(seconds=_float(env, "AMESA_DRAW_DELAY_SECONDS", 60.0)),
        reserves=_int(env, "AMESA_DRAW_RESERVES", 3),
        beacon_deadline=timedelta(hours=_float(env, "AMESA_DRAW_BEACON_DEADLINE_HOURS", 24.0)),
        scheduler_interval=timedelta(
            seconds=_float(env, "AMESA_LOTTERY_SCHEDULER_INTERVAL_SECONDS", 5.0)
        ),
        tree_head_interval=timedelta(seconds=_float(env, "AMESA_TREE_HEAD_INTERVAL_SECONDS", 60.0)),
    )


@dataclass(frozen=True, slots=True)
class PaymentConfig:
    """Payment providers (SPEC §5). A provider is enabled when its secret is configured."""

    stripe_secret_key: str | None
    stripe_publishable_key: str
    # None: api.stripe.com. Tests and `make run` point it at localstripe.
    stripe_api_base: str | None
    stripe_webhook_secret: str | None
    # localstripe refuses a few parameters real Stripe needs (see stripe_gateway.py).
    stripe_localstripe: bool
    paypal_base_url: str
    paypal_client_id: str | None
    paypal_client_secret: str | None
    paypal_webhook_id: str | None
    # ISO 4217 codes houses may be priced in.
    currencies: tuple[str, ...]
    # An unpaid order releases its tickets after this.
    order_ttl: timedelta
    # How often a replica expires unpaid orders, reconciles with the providers and works the
    # refund queue; zero turns it off on that replica.
    reconcile_interval: timedelta

    @property
    def stripe_enabled(self) -> bool:
        return self.stripe_secret_key is not None

    @property
    def paypal_enabled(self) -> bool:
        return self.paypal_client_id is not None and self.paypal_client_secret is not None


def load_payment_config(env: Mapping[str, str]) -> PaymentConfig:
    currencies = tuple(
        code.strip().upper() for code in env.get("AMESA_CURRENCIES", "EUR").split(",") if code
    )
    if not currencies or any(len(code) != 3 or not code.isalpha() for code in currencies):
        raise SettingsError("AMESA_CURRENCIES must be ISO 4217 codes, e.g. EUR,USD")
    return PaymentConfig(
        stripe_secret_key=env.get("AMESA_STRIPE_SECRET_KEY") or None,
        stripe_publishable_key=env.get("AMESA_STRIPE_PUBLISHABLE_KEY", ""),
        stripe_api_base=env.get("AMESA_STRIPE_API_BASE") or None,
        stripe_webhook_secret=env.get("AMESA_STRIPE_WEBHOOK_SECRET") or None,
        stripe_localstripe=env.get("AMESA_STRIPE_LOCALSTRIPE", "") in ("1", "true"),
        paypal_base_url=env.get("AMESA_PAYPAL_BASE_URL", "https://api-m.sandbox.paypal.com"),
        paypal_client_id=env.get("AMESA_PAYPAL_CLIENT_ID") or None,
        paypal_client_secret=env.get("AMESA_PAYPAL_CLIENT_SECRET") or None,
        paypal_webhook_id=env.get("AMESA_PAYPAL_WEBHOOK_ID") or None,
        currencies=currencies,
        order_ttl=timedelta(seconds=_float(env, "AMESA_ORDER_TTL_SECONDS", 900.0)),
        reconcile_interval=timedelta(
            seconds=_float(env, "AMESA_PAYMENT_RECONCILE_INTERVAL_SECONDS", 10.0)
        ),
    )


@dataclass(frozen=True, slots=True)
class Settings:
    environment: Environment
    grpc_address: str
    metrics_address: str
    database_url: str
    database_role: str
    database_pool_size: int
    redis_url: str
    workers: int
    shutdown_grace_seconds: float
    health_probe_interval_seconds: float
    jwt_issuer: str
    jwt_audience: str
    jwt_private_key_file: Path | None
    jwt_public_key_files: tuple[Path, ...]
    # DRAW-1 transparency key (Ed25519 PEM): signs draw manifests and entry-log tree heads.
    transparency_key_file: Path | None
    page_token_secret: str
    pii_key: bytes
    pii_key_id: str
    pii_index_key: bytes
    log_level: str
    document_dir: Path
    media_dir: Path
    media_base_url: str
    image_hosts: frozenset[str]
    notify: NotifyConfig
    draw: DrawConfig
    payment: PaymentConfig
    # LoginWithOAuth / LinkOAuthIdentity providers; none configured by default.
    oauth_providers: tuple[OAuthProvider, ...] = ()

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.PRODUCTION


def _get(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = env.get(name, default)
    if value is None or value == "":
        raise SettingsError(f"{name} is required")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must be >= 0")
    return value


def _key(env: Mapping[str, str], name: str, default: str) -> bytes:
    raw = env.get(name, default)
    try:
        key = base64.b64decode(raw, validate=True)
    except ValueError:
        raise SettingsError(f"{name} must be base64") from None
    if len(key) != 32:
        raise SettingsError(f"{name} must decode to 32 bytes (AES-256)")
    return key


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Reads and validates the configuration; raises SettingsError naming the bad variable."""
    env = os.environ if env is None else env
    try:
        environment = Environment(env.get("AMESA_ENV", "development"))
    except ValueError:
        raise SettingsError("AMESA_ENV must be development, test or production") from None
    private_key = env.get("AMESA_JWT_PRIVATE_KEY_FILE")
    public_keys = env.get("AMESA_JWT_PUBLIC_KEY_FILES", "")
    transparency_key = env.get("AMESA_TRANSPARENCY_KEY_FILE")
    settings = Settings(
        environment=environment,
        grpc_address=env.get("AMESA_GRPC_ADDRESS", "127.0.0.1:50051"),
        metrics_address=env.get("AMESA_METRICS_ADDRESS", "127.0.0.1:9464"),
        database_url=_get(env, "AMESA_DATABASE_URL"),
        database_role=env.get("AMESA_DATABASE_ROLE", "amesa_app"),
        database_pool_size=_int(env, "AMESA_DATABASE_POOL_SIZE", 10, minimum=1),
        redis_url=_get(env, "AMESA_REDIS_URL"),
        workers=_int(env, "AMESA_WORKERS", 1, minimum=1),
        shutdown_grace_seconds=_float(env, "AMESA_SHUTDOWN_GRACE_SECONDS", 10.0),
        health_probe_interval_seconds=_float(env, "AMESA_HEALTH_PROBE_INTERVAL_SECONDS", 2.0),
        jwt_issuer=env.get("AMESA_JWT_ISSUER", "https://auth.amesa.local"),
        jwt_audience=env.get("AMESA_JWT_AUDIENCE", "amesa-api"),
        jwt_private_key_file=Path(private_key) if private_key else None,
        jwt_public_key_files=tuple(Path(p) for p in public_keys.split(",") if p),
        transparency_key_file=Path(transparency_key) if transparency_key else None,
        page_token_secret=env.get("AMESA_PAGE_TOKEN_SECRET", DEV_PAGE_TOKEN_SECRET),
        pii_key=_key(env, "AMESA_PII_KEY", DEV_PII_KEY),
        pii_key_id=env.get("AMESA_PII_KEY_ID", "dev"),
        pii_index_key=_key(env, "AMESA_PII_INDEX_KEY", DEV_PII_INDEX_KEY),
        log_level=env.get("AMESA_LOG_LEVEL", "INFO").upper(),
        document_dir=Path(env.get("AMESA_DOCUMENT_DIR", ".data/documents")),
        media_dir=Path(env.get("AMESA_MEDIA_DIR", ".data/media")),
        media_base_url=env.get("AMESA_MEDIA_BASE_URL", "/media/"),
        image_hosts=frozenset(
            host.strip().lower()
            for host in env.get("AMESA_IMAGE_HOSTS", "images.amesa.io").split(",")
            if host.strip()
        ),
        notify=load_notify_config(env),
        draw=load_draw_config(env),
        payment=load_payment_config(env),
        oauth_providers=load_oauth_providers(env),
    )
    if settings.is_production:
        _refuse_development_defaults(settings, env)
    return settings


def _payment_problems(payment: PaymentConfig) -> list[str]:
    problems = []
    if payment.stripe_enabled and payment.stripe_webhook_secret is None:
        problems.append("AMESA_STRIPE_WEBHOOK_SECRET must be set when Stripe is enabled")
    if payment.stripe_localstripe or payment.stripe_api_base is not None:
        problems.append("AMESA_STRIPE_API_BASE / AMESA_STRIPE_LOCALSTRIPE point at a stand-in")
    if payment.paypal_enabled and payment.paypal_webhook_id is None:
        problems.append("AMESA_PAYPAL_WEBHOOK_ID must be set when PayPal is enabled")
    return problems


def _refuse_development_defaults(settings: Settings, env: Mapping[str, str]) -> None:
    problems: list[str] = []
    if settings.page_token_secret == DEV_PAGE_TOKEN_SECRET:
        problems.append("AMESA_PAGE_TOKEN_SECRET is the development placeholder")
    if len(settings.page_token_secret) < 32:
        problems.append("AMESA_PAGE_TOKEN_SECRET must be at least 32 characters")
    if "AMESA_PII_KEY" not in env or env["AMESA_PII_KEY"] == DEV_PII_KEY:
        problems.append("AMESA_PII_KEY must be set to a production key")
    if "AMESA_PII_INDEX_KEY" not in env or env["AMESA_PII_INDEX_KEY"] == DEV_PII_INDEX_KEY:
        problems.append("AMESA_PII_INDEX_KEY must be set to a production key")
    if settings.pii_key_id == "dev":
        problems.append("AMESA_PII_KEY_ID must name the production key")
    if settings.notify.smtp_host is None:
        problems.append("AMESA_SMTP_HOST must be set (the log-only mailer prints one-time links)")
    if settings.notify.sms_provider == "log":
        problems.append("AMESA_SMS_PROVIDER must be a real provider (the log one prints codes)")
    if settings.jwt_private_key_file is None:
        problems.append("AMESA_JWT_PRIVATE_KEY_FILE must be set (no generated keys in production)")
    if settings.transparency_key_file is None:
        problems.append("AMESA_TRANSPARENCY_KEY_FILE must be set (no generated keys in production)")
    problems += _payment_problems(settings.payment)
    if env.get("AMESA_FAILPOINTS"):
        problems.append("AMESA_FAILPOINTS is for chaos tests only")
    if problems:
        raise SettingsError("refusing to start in production: " + "; ".join(problems))
