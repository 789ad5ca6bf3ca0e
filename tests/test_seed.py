"""The demo data of `make run`: loaded once however often it runs, and every published demo
house has its draw with a manifest signed by the configured transparency key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from server.core.settings import Settings
from server.core.tokens import load_private_key
from server.devbeacon import LocalBeacon, env_for
from server.lottery.draw import protocol
from server.lottery.entrylog import public_key_bytes
from server.lottery.models import Draw, House, HouseState
from server.seed import HOUSES, seed
from server.user.models import User
from tests.databases import engine_url, throwaway_database


async def test_demo_data_loads_once_with_signed_draw_manifests(
    monkeypatch: pytest.MonkeyPatch,
    transparency_key_file: Path,
    local_beacon: LocalBeacon,
    settings: Settings,
) -> None:
    monkeypatch.setenv("AMESA_REDIS_URL", settings.redis_url)
    for name, value in env_for(local_beacon).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AMESA_TRANSPARENCY_KEY_FILE", str(transparency_key_file))
    key = Ed25519PublicKey.from_public_bytes(
        public_key_bytes(load_private_key(transparency_key_file))
    )

    async with throwaway_database("amesa_seed", migrated=True) as url:
        credentials = await seed(url)
        assert await seed(url) == credentials
        engine = create_async_engine(engine_url(url))
        try:
            async with engine.connect() as connection:
                users = await connection.scalar(select(func.count()).select_from(User))
                houses = (await connection.execute(select(House.id, House.state))).all()
                draws = (
                    await connection.execute(
                        select(Draw.house_id, Draw.manifest_json, Draw.manifest_signature)
                    )
                ).all()
        finally:
            await engine.dispose()

    assert users == 2
    assert len(houses) == len(HOUSES)
    published = {house_id for house_id, state in houses if state is not HouseState.DRAFT}
    assert {house_id for house_id, _, _ in draws} == published
    for house_id, manifest_json, signature in draws:
        manifest = json.loads(manifest_json)
        assert manifest["house_id"] == str(house_id)
        assert manifest["beacon_chain_hash"] == local_beacon.chain_hash
        assert protocol.verify_manifest(key, manifest, signature)
