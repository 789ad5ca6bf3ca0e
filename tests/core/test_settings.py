"""Settings: validated at start, and production refuses every development default."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from server.core.settings import Environment, SettingsError, load_settings

BASE = {"AMESA_DATABASE_URL": "postgresql://db/amesa", "AMESA_REDIS_URL": "redis://r/0"}


def _key(fill: bytes) -> str:
    return base64.b64encode(fill * 32).decode()


def production(tmp_path: Path) -> dict[str, str]:
    key = tmp_path / "jwt.pem"
    key.write_text("unused by load_settings")
    transparency = tmp_path / "transparency.pem"
    transparency.write_text("unused by load_settings")
    return {
        **BASE,
        "AMESA_ENV": "production",
        "AMESA_PAGE_TOKEN_SECRET": "p" * 40,
        "AMESA_PII_KEY": _key(b"k"),
        "AMESA_PII_KEY_ID": "2026-11",
        "AMESA_PII_INDEX_KEY": _key(b"i"),
        "AMESA_JWT_PRIVATE_KEY_FILE": str(key),
        "AMESA_TRANSPARENCY_KEY_FILE": str(transparency),
        "AMESA_SMTP_HOST": "smtp.example.org",
        "AMESA_SMS_PROVIDER": "twilio",
        "AMESA_STRIPE_SECRET_KEY": "sk_live_x",
        "AMESA_STRIPE_WEBHOOK_SECRET": "whsec_x",
    }


def test_development_defaults_load() -> None:
    settings = load_settings(BASE)
    assert settings.environment is Environment.DEVELOPMENT
    assert settings.grpc_address == "127.0.0.1:50051"
    assert settings.metrics_address == "127.0.0.1:9464"


def test_complete_production_configuration_loads(tmp_path: Path) -> None:
    assert load_settings(production(tmp_path)).is_production


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AMESA_PAGE_TOKEN_SECRET", None),
        ("AMESA_PII_KEY", None),
        ("AMESA_PII_KEY_ID", "dev"),
        ("AMESA_PII_INDEX_KEY", None),
        ("AMESA_JWT_PRIVATE_KEY_FILE", None),
        ("AMESA_TRANSPARENCY_KEY_FILE", None),
        ("AMESA_SMTP_HOST", None),
        ("AMESA_SMS_PROVIDER", "log"),
        ("AMESA_STRIPE_WEBHOOK_SECRET", None),
        ("AMESA_STRIPE_API_BASE", "http://127.0.0.1:8420"),
    ],
)
def test_production_refuses_each_development_default(
    tmp_path: Path, variable: str, value: str | None
) -> None:
    env = production(tmp_path)
    if value is None:
        del env[variable]
    else:
        env[variable] = value
    with pytest.raises(SettingsError, match=variable):
        load_settings(env)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AMESA_DATABASE_URL", ""),
        ("AMESA_WORKERS", "zero"),
        ("AMESA_WORKERS", "0"),
        ("AMESA_PII_KEY", "not base64!"),
        ("AMESA_PII_KEY", base64.b64encode(b"short").decode()),
        ("AMESA_ENV", "staging"),
    ],
)
def test_invalid_values_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings({**BASE, variable: value})
