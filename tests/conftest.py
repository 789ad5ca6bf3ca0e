"""The real server, in process, on a free port, against real PostgreSQL and Redis.

The test database (`<name>_test` next to AMESA_DATABASE_URL's) is recreated and migrated once
per run; tests isolate themselves with unique data. One event loop serves the whole session, so
the server, the engine and the tests share it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import make_url, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from server.app import App, build_server
from server.content.models import Language
from server.core.db import async_url
from server.core.settings import Environment, Settings, load_settings
from server.core.tokens import load_private_key, write_private_key
from server.devbeacon import LocalBeacon, env_for
from server.manage import migrate
from tests.payment.localstripe import LocalStripe, localstripe_fixture  # noqa: F401 - fixture

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/amesa"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _test_database_url() -> str:
    # One database per test run (several runs may share a server), dropped when the run ends.
    url = make_url(async_url(os.environ.get("AMESA_DATABASE_URL", DEFAULT_DATABASE_URL)))
    name = f"{url.database or 'amesa'}_test_{os.getpid()}"
    return url.set(database=name).render_as_string(hide_password=False)


async def _drop_database(url: str) -> None:
    target = make_url(url)
    engine = create_async_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
    await engine.dispose()


@pytest.fixture(scope="session")
def database_url() -> str:
    """A freshly migrated test database, used by every test of the run."""
    return _test_database_url()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def migrated_database(database_url: str) -> AsyncIterator[str]:
    await _drop_database(database_url)
    # Alembic's env runs its own event loop: keep it off the session loop.
    await asyncio.to_thread(migrate, database_url)
    yield database_url
    await _drop_database(database_url)


@pytest.fixture(scope="session")
def signing_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "jwt-ed25519.pem"
    write_private_key(path, Ed25519PrivateKey.generate())
    return path


@pytest.fixture(scope="session")
def transparency_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One transparency key for every server of the run, as replicas share one in production
    (a transcript's manifest and tree heads must verify under the same key)."""
    path = tmp_path_factory.mktemp("keys") / "transparency-ed25519.pem"
    write_private_key(path, Ed25519PrivateKey.generate())
    return path


@pytest.fixture(scope="session")
def local_beacon() -> Iterator[LocalBeacon]:
    """A drand-format beacon of its own chain, one round a second, for every server of the run."""
    with LocalBeacon(period_s=1) as beacon:
        yield beacon


STRIPE_WEBHOOK_SECRET = "whsec_amesa_tests"


@pytest.fixture(scope="session")
def settings(
    database_url: str,
    signing_key_file: Path,
    transparency_key_file: Path,
    local_beacon: LocalBeacon,
    localstripe: LocalStripe,
) -> Settings:
    base = load_settings(
        {
            **env_for(local_beacon),
            "AMESA_STRIPE_SECRET_KEY": localstripe.api_key,
            "AMESA_STRIPE_PUBLISHABLE_KEY": "pk_test_amesa_localstripe",
            "AMESA_STRIPE_API_BASE": localstripe.base_url,
            "AMESA_STRIPE_LOCALSTRIPE": "1",
            "AMESA_STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
            # Tests drive expiry and reconciliation themselves (or start a server that does).
            "AMESA_PAYMENT_RECONCILE_INTERVAL_SECONDS": "0",
            "AMESA_JWT_PRIVATE_KEY_FILE": str(signing_key_file),
            "AMESA_TRANSPARENCY_KEY_FILE": str(transparency_key_file),
            "AMESA_ENV": "test",
            "AMESA_DATABASE_URL": database_url,
            "AMESA_REDIS_URL": os.environ.get("AMESA_REDIS_URL", DEFAULT_REDIS_URL),
            "AMESA_HEALTH_PROBE_INTERVAL_SECONDS": "0.2",
            "AMESA_SHUTDOWN_GRACE_SECONDS": "1",
            # The shared server runs no lottery jobs, so no test's houses change state behind
            # its back; scheduler tests drive a Scheduler or start a server of their own.
            "AMESA_LOTTERY_SCHEDULER_INTERVAL_SECONDS": "0",
            "AMESA_TREE_HEAD_INTERVAL_SECONDS": "0",
            # Target round R = the first round at or after sales close: tests wait seconds.
            "AMESA_DRAW_DELAY_SECONDS": "0",
        }
    )
    assert base.environment is Environment.TEST
    return base


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def app(settings: Settings, migrated_database: str) -> AsyncIterator[App]:
    app = build_server(settings, address="127.0.0.1:0")
    await app.start()
    yield app
    await app.stop(grace=1)


@pytest.fixture(scope="session")
def signing_key(signing_key_file: Path) -> Ed25519PrivateKey:
    """The key the test server signs access tokens with (tests forge tokens with it)."""
    return load_private_key(signing_key_file)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def channel(app: App) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        yield channel


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def owner_engine(migrated_database: str) -> AsyncIterator[AsyncEngine]:
    """A connection as the tables' owner, for arranging rows the RPCs under test read."""
    engine = create_async_engine(async_url(migrated_database))
    yield engine
    await engine.dispose()


LANGUAGES = [
    {
        "language_code": "en",
        "native_name": "English",
        "english_name": "English",
        "is_default": True,
        "right_to_left": False,
        "enabled": True,
    },
    {
        "language_code": "he",
        "native_name": "עברית",
        "english_name": "Hebrew",
        "is_default": False,
        "right_to_left": True,
        "enabled": True,
    },
    {
        "language_code": "fr",
        "native_name": "Français",
        "english_name": "French",
        "is_default": False,
        "right_to_left": False,
        "enabled": True,
    },
    {
        "language_code": "xh",
        "native_name": "isiXhosa",
        "english_name": "Xhosa",
        "is_default": False,
        "right_to_left": False,
        "enabled": False,
    },
]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def languages(owner_engine: AsyncEngine) -> None:
    """English (default), Hebrew (right to left), French, and a disabled Xhosa."""
    async with owner_engine.begin() as connection:
        await connection.execute(
            insert(Language)
            .values(LANGUAGES)
            .on_conflict_do_nothing(index_elements=[Language.language_code])
        )
